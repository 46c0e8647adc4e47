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


def replace_card(path: str | os.PathLike, card: ModelCard) -> None:
    """Store ``card`` in the ONNX file at ``path`` atomically, leaving its graph byte for byte as it was.

    The file is rewritten to a temporary file in the same folder, read back and checked (the
    graph and every other field unchanged, the card the one given), then moved into place with
    ``os.replace``; on any failure the original file is untouched and the temporary removed. The
    certificate inside the card stays valid because the graph it proved is the same bytes.
    """
    import tempfile

    import onnx

    path = os.fspath(path)
    model = load_onnx_model(path)
    before = model.graph.SerializeToString()
    write_card(model, card)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".stateport-", suffix=".onnx.tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(model.SerializeToString())
            f.flush()
            os.fsync(f.fileno())
        check = onnx.load(tmp, load_external_data=False)
        if check.graph.SerializeToString() != before:
            raise ModelFileError(f"rewriting the card of {path!r} changed its graph; the file was left as it was")
        written = card_from_metadata({p.key: p.value for p in check.metadata_props}, repr(tmp))
        if written.to_dict() != card.to_dict():
            raise ModelFileError(f"the card written to {path!r} does not read back; the file was left as it was")
        os.chmod(tmp, os.stat(path).st_mode & 0o7777)  # mkstemp makes 0600; keep the file's own mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
