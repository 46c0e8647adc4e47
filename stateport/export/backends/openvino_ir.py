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

from ...errors import MissingCardError, ModelFileError
from ...spec import CARD_KEY, ModelCard
from .common import Artifact, ExportSettings, conversion_error, first_line


def _versions(exporter: str) -> str:
    from importlib.metadata import version

    return f"{exporter} -> onnx -> openvino {version('openvino')}"


def convert(model, settings: ExportSettings) -> Artifact:
    """Export ONNX, drop the state defaults, convert to an ``ov.Model``; ``save`` writes the IR.

    (NNCF quantisation is not wired in: ``quantize`` is refused.)
    """
    settings.refuse("openvino", exporters=("dynamo",), audio_input=True)
    import openvino as ov

    from ...verify.state_defaults import strip_state_defaults
    from .onnx_file import to_onnx

    proto, card = to_onnx(model, settings)
    strip_state_defaults(proto, [s.name for s in card.states])
    data = proto.SerializeToString()
    card.provenance.backend = "openvino"
    card.provenance.exporter = _versions(settings.exporter)
    try:
        ov_model = ov.Core().read_model(data)
    except Exception as e:  # the frontend raises RuntimeError/OpConversionFailure with the op name
        raise conversion_error("openvino", "the OpenVINO ONNX frontend", model, e) from e

    def save(out: str, card_to_write: ModelCard) -> None:
        ov_model.set_rt_info(card_to_write.to_json(), [CARD_KEY])
        ov.save_model(ov_model, out, compress_to_fp16=False)

    return Artifact(card, save)


def write_card(path, card: ModelCard) -> None:
    """Replace the card in the IR at ``path`` (``.xml``, its ``.bin`` beside it; a temporary the caller commits)."""
    import openvino as ov

    path = os.fspath(path)
    model = ov.Core().read_model(path)
    model.set_rt_info(card.to_json(), [CARD_KEY])
    # save_model rewrites the .bin the model was read from: save beside it, then swap both.
    scratch = path[: -len(".xml")] + ".card-update.xml"
    ov.save_model(model, scratch, compress_to_fp16=False)
    os.replace(scratch[: -len(".xml")] + ".bin", path[: -len(".xml")] + ".bin")
    os.replace(scratch, path)


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


def make_runner(path, card: ModelCard, *, optimization: str | None = None):
    from ...verify.backend_runners import OpenVinoRunner

    return OpenVinoRunner(path, card)
