"""OpenVINO: the ONNX export converted to OpenVINO IR (``.xml`` + ``.bin``), the card in ``rt_info``.

OpenVINO reads stateport ``.onnx`` files too (see :class:`~stateport.verify.backend_runners.OpenVinoRunner`),
with one catch measured on OpenVINO 2026.4: its ONNX frontend turns a graph input that also has an
initializer into a constant, so the state inputs (whose initializers hold the initial state for
ONNX Runtime's offline mode) disappear. The IR is converted from the ONNX graph with those
initializers removed: every state is a required input, batch and time stay dynamic, and weights
stay fp32 (``compress_to_fp16=False``) so the parity proof compares like with like.
"""

from __future__ import annotations

import os
import tempfile

from ...errors import MissingCardError, ModelFileError
from ...spec import CARD_KEY, ModelCard
from .common import Artifact, conversion_error, first_line, reject_options


def _versions() -> str:
    from importlib.metadata import version

    return f"torchscript -> onnx -> openvino {version('openvino')}"


def convert(model, *, chunk_frames=None, static=False, provenance=None, name=None, quantize=None,
            options=None, exporter: str = "torchscript") -> Artifact:
    """Export ONNX, drop the state defaults, convert to an ``ov.Model``; ``save`` writes the IR."""
    reject_options("openvino", options)
    import openvino as ov

    from ...errors import UnsupportedError
    from ...verify.backend_runners import onnx_without_state_defaults
    from ..onnx_export import export_onnx

    if quantize:
        raise UnsupportedError(f"openvino: quantize={quantize!r} is not offered here (NNCF is not wired in); "
                               "use --backend tflite --quantize dynamic-int8")
    with tempfile.TemporaryDirectory(prefix="stateport-ov-") as tmp:
        path = os.path.join(tmp, "model.onnx")
        card = export_onnx(model, path, chunk_frames=chunk_frames, static=static, exporter=exporter,
                           provenance=dict(provenance or {}, backend="openvino"), name=name)
        data = onnx_without_state_defaults(path)
    card.provenance.backend = "openvino"
    card.provenance.exporter = _versions()
    try:
        ov_model = ov.Core().read_model(data)
    except Exception as e:  # the frontend raises RuntimeError/OpConversionFailure with the op name
        raise conversion_error("openvino", "the OpenVINO ONNX frontend", model, e) from e

    def save(out: str, card_to_write: ModelCard) -> None:
        ov_model.set_rt_info(card_to_write.to_json(), [CARD_KEY])
        ov.save_model(ov_model, out, compress_to_fp16=False)

    return Artifact(card, save)


def read_card(path) -> ModelCard:
    import openvino as ov

    path = os.fspath(path)
    try:
        model = ov.Core().read_model(path)
    except Exception as e:  # RuntimeError for unreadable IR
        raise ModelFileError(f"{path!r} is not a readable OpenVINO model ({first_line(e)})") from None
    if not model.has_rt_info([CARD_KEY]):
        raise MissingCardError(f"{path!r} has no stateport model card (rt_info entry {CARD_KEY!r})")
    return ModelCard.from_json(model.get_rt_info([CARD_KEY]).astype(str))


def make_runner(path, card: ModelCard):
    from ...verify.backend_runners import OpenVinoRunner

    return OpenVinoRunner(path, card)
