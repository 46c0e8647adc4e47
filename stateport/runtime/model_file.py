"""Open a stateport ONNX file and read its card, with typed errors for every way it can be wrong."""

from __future__ import annotations

import os

from ..errors import MissingCardError, ModelFileError
from ..spec import CARD_KEY, ModelCard


def load_onnx_model(path: str | os.PathLike):
    """Load an ONNX ModelProto; ModelFileError if missing, not ONNX, or corrupt."""
    import onnx
    from google.protobuf.message import DecodeError

    path = os.fspath(path)
    if not os.path.exists(path):
        raise ModelFileError(f"model file {path!r} does not exist")
    if os.path.isdir(path):
        raise ModelFileError(f"{path!r} is a directory: expected an .onnx file")
    try:
        model = onnx.load(path, load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, OSError) as e:
        raise ModelFileError(f"{path!r} is not a readable ONNX file ({type(e).__name__}: {e})") from None
    if not model.graph.node and not model.graph.input:
        # Random bytes often decode as an empty protobuf rather than failing.
        raise ModelFileError(f"{path!r} is not an ONNX model: it has no graph")
    return model


def card_from_metadata(metadata: dict, where: str) -> ModelCard:
    """Parse the card from an ONNX ``metadata_props`` mapping."""
    if CARD_KEY not in metadata:
        raise MissingCardError(
            f"{where} has no stateport model card (metadata entry {CARD_KEY!r}); "
            "export it with `stateport export`, or drive it with an explicit port mapping")
    return ModelCard.from_json(metadata[CARD_KEY])


def read_card(path: str | os.PathLike) -> ModelCard:
    """The card stored in the ONNX file at ``path``."""
    model = load_onnx_model(path)
    return card_from_metadata({p.key: p.value for p in model.metadata_props}, repr(os.fspath(path)))


def write_card(model, card: ModelCard) -> None:
    """Store ``card`` in an ONNX ModelProto's ``metadata_props`` (replacing an older one)."""
    kept = [p for p in model.metadata_props if p.key != CARD_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    entry = model.metadata_props.add()
    entry.key, entry.value = CARD_KEY, card.to_json()
