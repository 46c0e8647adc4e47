"""The ONNX backend behind the common backend interface (the export itself is ``onnx_export``)."""

from __future__ import annotations

import os
import tempfile

from ...spec import ModelCard
from .common import Artifact, reject_options


def convert(model, *, chunk_frames=None, static=False, provenance=None, name=None, quantize=None, options=None,
            exporter: str = "torchscript") -> Artifact:
    """``export_onnx`` into memory; ``save`` writes the ModelProto with the given card."""
    reject_options("onnx", options)
    import onnx

    from ...errors import UnsupportedError
    from ...runtime.model_file import write_card
    from ..onnx_export import export_onnx

    if quantize:
        raise UnsupportedError(f"quantize={quantize!r} at export is offered by the tflite backend; quantize an "
                               "ONNX export with `stateport quantize FILE.onnx --recipe ...`")
    with tempfile.TemporaryDirectory(prefix="stateport-onnx-") as tmp:
        path = os.path.join(tmp, "model.onnx")
        card = export_onnx(model, path, chunk_frames=chunk_frames, static=static, exporter=exporter,
                           provenance=dict(provenance or {}, backend="onnx"), name=name)
        proto = onnx.load(path)

    def save(out: str, card_to_write: ModelCard) -> None:
        write_card(proto, card_to_write)
        onnx.save(proto, out)

    return Artifact(card, save)


def read_card(path) -> ModelCard:
    from ...runtime.model_file import read_card as read_onnx_card

    return read_onnx_card(path)


def make_runner(path, card: ModelCard):
    from ...verify.runners import OnnxRunner

    return OnnxRunner(os.fspath(path), card)
