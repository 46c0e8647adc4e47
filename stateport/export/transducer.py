"""Export a multi-graph model (a transducer's encoder, predictor and joiner) into one directory.

Each graph is an ordinary stateport export: ``<graph>.onnx`` with its own card (port list,
states, output kind, vocabulary and blank id) and its own parity certificate, proven against
its own torch module (the encoder streaming vs offline over audio, the predictor over token
sequences with its state carried, the joiner pair by pair). Each card's provenance names its
graph, so ``stateport verify DIR/joiner.onnx`` rebuilds the joiner of the same model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..errors import InvalidInputError, ParityError
from ..nn.protocol import MultiGraphModule
from ..spec import TIME_DIM
from ..verify import DEFAULT_SECONDS, DEFAULT_TOLERANCE
from .onnx_export import export_onnx
from .pipeline import ExportResult, certify

TRANSDUCER_GRAPHS = {"encoder": "transducer_encoder", "predictor": "transducer_predictor",
                     "joiner": "transducer_joiner"}


@dataclass
class MultiGraphExportResult:
    """One directory of graphs: ``graphs`` maps each graph name to its :class:`ExportResult`."""

    path: str
    graphs: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool | None:
        """All graphs certified (None when the proof was skipped)."""
        reports = [r.report for r in self.graphs.values()]
        return None if any(r is None for r in reports) else all(r.passed for r in reports)

    def to_dict(self) -> dict:
        return {"path": self.path, "graphs": {name: r.to_dict() for name, r in self.graphs.items()}}


def _takes_audio(graph) -> bool:
    return any(spec.time_dim == TIME_DIM for spec in graph.input_specs())


def export_graphs(model: MultiGraphModule, out_dir: str | os.PathLike, *, provenance: dict,
                  chunk_frames: int | None = None, static: bool = False, verify: bool = True,
                  seconds: float = DEFAULT_SECONDS, tolerance: float = DEFAULT_TOLERANCE,
                  exporter: str = "torchscript") -> MultiGraphExportResult:
    """Export and certify every graph of ``model`` as ``out_dir/<graph>.onnx``.

    ``chunk_frames`` applies to the graphs that take audio frames (the encoder); the others keep
    their own step (one token, one frame pair). Every graph is proven before anything raises;
    then a :class:`ParityError` names every graph that failed (its report: the first failure's).
    """
    out_dir = os.fspath(out_dir)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise InvalidInputError(f"{out_dir!r} is a file: a multi-graph model is exported into a directory "
                                "(one .onnx file per graph)")
    os.makedirs(out_dir, exist_ok=True)
    arch = provenance.get("architecture", type(model).__name__)
    result = MultiGraphExportResult(out_dir)
    failed: list[tuple[str, ParityError]] = []
    for name, graph in model.graphs().items():
        path = os.path.join(out_dir, f"{name}.onnx")
        card = export_onnx(graph.eval(), path, chunk_frames=chunk_frames if _takes_audio(graph) else None,
                           static=static, exporter=exporter, provenance={**provenance, "graph": name},
                           name=f"{arch}-{name}")
        report = None
        if verify:
            try:
                report = certify(graph, path, card, seconds=seconds, tolerance=tolerance)
            except ParityError as e:
                failed.append((name, e))
                report = e.report
        result.graphs[name] = ExportResult(path, card, report)
    if failed:
        raise ParityError(f"parity failed for {', '.join(n for n, _ in failed)} of {os.path.basename(out_dir)}: "
                          + "; ".join(e.message for _, e in failed), failed[0][1].report)
    return result


def export_transducer(out_dir: str | os.PathLike, *, arch: str = "rnnt", size: str | None = None,
                      checkpoint: str | None = None, chunk_frames: int | None = None, static: bool = False,
                      verify: bool = True, seconds: float = DEFAULT_SECONDS, tolerance: float = DEFAULT_TOLERANCE,
                      exporter: str = "torchscript", seed: int = 0) -> MultiGraphExportResult:
    """Write ``encoder.onnx``, ``predictor.onnx`` and ``joiner.onnx`` of a transducer into ``out_dir``."""
    from .sources import build_model

    model, provenance = build_model(arch=arch, size=size, checkpoint=checkpoint, seed=seed)
    graphs = model.graphs() if isinstance(model, MultiGraphModule) else {}
    kinds = {name: g.streaming.output_kind for name, g in graphs.items()}
    if kinds != TRANSDUCER_GRAPHS:
        raise InvalidInputError(f"architecture {arch!r} is not a transducer: expected graphs "
                                f"{TRANSDUCER_GRAPHS}, got {kinds or type(model).__name__}")
    return export_graphs(model, out_dir, provenance=provenance, chunk_frames=chunk_frames, static=static,
                         verify=verify, seconds=seconds, tolerance=tolerance, exporter=exporter)
