"""The export job for any backend: convert -> save -> prove parity against torch -> save with the certificate."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ...errors import InvalidInputError, ParityError, UnsupportedError
from ...nn.protocol import MultiGraphModule
from ...spec import ModelCard
from ...verify import DEFAULT_SECONDS, DEFAULT_TOLERANCE, ParityReport, prove_parity
from ...verify.runners import TorchRunner
from ..pipeline import ExportResult
from .registry import get_backend

# A quantised artifact is proven against the *float* torch model, at this tolerance unless the caller
# gives one. Measured over 60 s (TFLite dynamic_wi8_afp32, nominal chunks), max |diff| of logits / h / c:
# lstm-ctc tiny (random weights) 5.2e-3 / 1.9e-2 / 0.13, lstm-ctc default 1.6e-3 / 4.8e-3 / 1.3e-2, argmax
# agreement >= 99.2%. The LSTM cell state c is unbounded and accumulates the int8 weight error, so it
# sets the bound; the ONNX dynamic-int8 recipe (stateport.quantize) holds its streaming proof to 0.5.
QUANTIZED_TOLERANCE = 0.25


@dataclass
class BackendExportResult(ExportResult):
    """An :class:`ExportResult` plus the backend and what it changed (``notes``)."""

    backend: str = "onnx"
    notes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {**super().to_dict(), "backend": self.backend, "notes": list(self.notes)}


def default_tolerance(quantize: str | None) -> float:
    return QUANTIZED_TOLERANCE if quantize else DEFAULT_TOLERANCE


def certify_backend(model, path: str, card: ModelCard, backend: str, *, seconds: float = DEFAULT_SECONDS,
                    tolerance: float = DEFAULT_TOLERANCE) -> ParityReport:
    """Prove ``path`` (a file of ``backend``) equals ``model``, streaming and offline; no writing.

    A backend that cannot run here (Core ML on Linux) gets its ``check_file`` report instead.
    """
    impl = get_backend(backend).impl("run")
    if not get_backend(backend).runs_here:
        return impl.check_file(path, card, tolerance=tolerance)
    report = prove_parity(TorchRunner(model, card), impl.make_runner(path, card), card, seconds=seconds,
                          tolerance=tolerance)
    return report


def _raise_if_failed(path: str, report: ParityReport) -> None:
    if not report.passed:
        names = ", ".join(c.name for c in report.failures)
        raise ParityError(f"parity failed for {os.path.basename(path)} ({len(report.failures)} of "
                          f"{len(report.checks)} checks): {names}", report)


def export_with_backend(model, out: str | os.PathLike, *, backend: str, provenance: dict | None = None,
                        chunk_frames: int | None = None, static: bool = False, verify: bool = True,
                        seconds: float = DEFAULT_SECONDS, tolerance: float | None = None,
                        quantize: str | None = None, options: dict | None = None, name: str | None = None):
    """Convert ``model`` with ``backend``, write ``out`` with the card, prove parity, write the certificate.

    Returns a :class:`BackendExportResult` whose ``notes`` say what the backend changed (e.g.
    static shapes). Raises :class:`ParityError` after writing the file (with ``passed: false`` in
    its certificate) when the proof fails.
    """
    if isinstance(model, MultiGraphModule):
        raise UnsupportedError(f"--backend {backend}: multi-graph models ({type(model).__name__}) are exported "
                               "per graph to ONNX only for now (stateport export --backend onnx)")
    spec = get_backend(backend)
    out = os.fspath(out)
    if not out.endswith(spec.suffix):
        raise InvalidInputError(f"--backend {backend} writes a {spec.suffix} file; got output path {out!r}")
    impl = spec.impl("export")
    tolerance = default_tolerance(quantize) if tolerance is None else tolerance
    artifact = impl.convert(model, chunk_frames=chunk_frames, static=static, provenance=provenance, name=name,
                            quantize=quantize, options=options)
    card = artifact.card
    artifact.save(out, card)
    report = None
    if verify:
        report = certify_backend(model, out, card, backend, seconds=seconds, tolerance=tolerance)
        report.notes.extend(artifact.notes)
        card.certificate = report.certificate()
        artifact.save(out, card)
    result = BackendExportResult(out, card, report, backend=backend, notes=list(artifact.notes))
    if report is not None:
        _raise_if_failed(out, report)
    return result


def verify_backend_file(path: str | os.PathLike, *, module: str | None = None, checkpoint: str | None = None,
                        seconds: float = DEFAULT_SECONDS, tolerance: float | None = None) -> ParityReport:
    """``stateport verify`` for any format: read the card, rebuild the torch reference, re-run the proof."""
    from ..sources import rebuild_reference
    from .registry import backend_for_path, read_backend_card

    path = os.fspath(path)
    backend = backend_for_path(path)
    card = read_backend_card(path)
    model = rebuild_reference(card, module=module, checkpoint=checkpoint)
    if card.provenance.graph is not None:
        model = model.graphs()[card.provenance.graph]
    if tolerance is None:
        tolerance = default_tolerance((card.provenance.quantization or {}).get("recipe"))
    report = certify_backend(model, path, card, backend.name, seconds=seconds, tolerance=tolerance)
    _raise_if_failed(path, report)
    return report
