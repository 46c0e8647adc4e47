"""The export job: build -> export -> prove parity -> write the certificate into the card."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import ParityError
from ..nn.protocol import MultiGraphModule
from ..spec import ModelCard
from ..verify import DEFAULT_SECONDS, DEFAULT_TOLERANCE, ParityReport, prove_parity
from ..verify.runners import OnnxRunner, TorchRunner, one_torch_thread
from .onnx_export import export_onnx, update_card
from .sources import build_model, rebuild_reference


@dataclass
class ExportResult:
    path: str
    card: ModelCard
    report: ParityReport | None

    def to_dict(self) -> dict:
        return {"path": self.path, "card": self.card.to_dict(),
                "parity": self.report.to_dict() if self.report else None}


def certify(model, path: str, card: ModelCard, *, seconds: float = DEFAULT_SECONDS,
            tolerance: float = DEFAULT_TOLERANCE, optimization: str = "all", write: bool = True) -> ParityReport:
    """Prove parity of the file at ``path`` against ``model``; write the certificate; raise if it fails.

    With ``write``, the certificate is written either way (``passed: false`` on failure) so
    ``inspect`` shows what was found.
    """
    with one_torch_thread():
        report = prove_parity(TorchRunner(model, card), OnnxRunner(path, card, optimization=optimization), card,
                              seconds=seconds, tolerance=tolerance)
    if write:
        card.certificate = report.certificate()
        update_card(path, card)
    if not report.passed:
        names = ", ".join(c.name for c in report.failures)
        raise ParityError(f"parity failed for {os.path.basename(path)} ({len(report.failures)} of "
                          f"{len(report.checks)} checks): {names}", report)
    return report


def export_model(out: str | os.PathLike, *, arch: str | None = None, size: str | None = None,
                 module: str | None = None, checkpoint: str | None = None, chunk_frames: int | None = None,
                 static: bool = False, verify: bool = True, seconds: float = DEFAULT_SECONDS,
                 tolerance: float = DEFAULT_TOLERANCE, exporter: str = "torchscript", seed: int = 0,
                 backend: str = "onnx", quantize: str | None = None, backend_options: dict | None = None):
    """``stateport export``: the same argument names as the CLI.

    Returns an :class:`ExportResult`; for a multi-graph architecture (``rnnt``) ``out`` is a
    directory and the result a :class:`~stateport.export.transducer.MultiGraphExportResult`.

    ``backend`` picks the format (``onnx``, ``tflite``, ``coreml``, ``executorch``, ``openvino``;
    see :mod:`stateport.export.backends`); ``quantize`` (``"dynamic-int8"``, tflite) and
    ``backend_options`` (e.g. ``{"state": "coreml"}``) go to that backend. A quantised export is
    proven against the float model at 0.25 unless another tolerance than the default is given.
    """
    model, provenance = build_model(arch=arch, size=size, module=module, checkpoint=checkpoint, seed=seed)
    out = os.fspath(out)
    if backend != "onnx" or quantize or backend_options:
        from .backends.job import export_with_backend

        return export_with_backend(model, out, backend=backend, provenance=provenance, chunk_frames=chunk_frames,
                                   static=static, verify=verify, seconds=seconds, quantize=quantize,
                                   options=backend_options,
                                   tolerance=None if quantize and tolerance == DEFAULT_TOLERANCE else tolerance)
    if isinstance(model, MultiGraphModule):
        from .transducer import export_graphs

        return export_graphs(model, out, provenance=provenance, chunk_frames=chunk_frames, static=static,
                             verify=verify, seconds=seconds, tolerance=tolerance, exporter=exporter)
    card = export_onnx(model, out, chunk_frames=chunk_frames, static=static, exporter=exporter,
                       provenance=provenance)
    report = certify(model, out, card, seconds=seconds, tolerance=tolerance) if verify else None
    return ExportResult(out, card, report)


def verify_file(path: str | os.PathLike, *, module: str | None = None, checkpoint: str | None = None,
                seconds: float = DEFAULT_SECONDS, tolerance: float = DEFAULT_TOLERANCE,
                optimization: str = "all", write_certificate: bool = False) -> ParityReport:
    """``stateport verify``: rebuild the torch reference from the card and re-run the proof."""
    from ..runtime.model_file import read_card

    path = os.fspath(path)
    card = read_card(path)
    if card.provenance.quantization:
        return _verify_quantized(path, card, seconds=seconds, optimization=optimization)
    model = rebuild_reference(card, module=module, checkpoint=checkpoint)
    if card.provenance.graph is not None:
        # One graph of a multi-graph model (e.g. a transducer's joiner): prove that graph.
        model = model.graphs()[card.provenance.graph]
    return certify(model, path, card, seconds=seconds, tolerance=tolerance, optimization=optimization,
                   write=write_certificate)


def _verify_quantized(path: str, card: ModelCard, *, seconds: float, optimization: str) -> ParityReport:
    """A quantized artifact has no float torch twin: prove it streams like itself offline, at its
    recipe's tolerance and at the graph-optimisation level its certificate was proved at."""
    from ..quantize.proof import prove_self
    from ..runtime.session import certified_optimization

    q = card.provenance.quantization
    config = q.get("config") if isinstance(q.get("config"), dict) else {}
    tolerance = float(q.get("stream_tolerance", config.get("stream_tolerance", DEFAULT_TOLERANCE)))
    level = optimization if optimization != "all" else certified_optimization(card)
    report = prove_self(path, card, label=str(q.get("recipe", "quantized")), level=level, seconds=seconds,
                        tolerance=tolerance)
    if not report.passed:
        raise ParityError(f"parity failed for {os.path.basename(path)}: "
                          + ", ".join(c.name for c in report.failures), report)
    return report

