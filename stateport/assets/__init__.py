"""Built-in assets: the pretrained default model (and demo audio) shipped inside the package.

torch-free: the client runtime and ``stateport stream`` use it.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import StateportError

__all__ = ["DEFAULT_MODEL_RELPATH", "MissingAssetError", "builtin_dir", "calibration_dir", "default_model_path"]

DEFAULT_MODEL_RELPATH = Path("digits") / "model.onnx"
"""The built-in digit recogniser, relative to this package."""


class MissingAssetError(StateportError):
    """A built-in asset this install does not ship."""

    code = "MISSING_ASSET"


def builtin_dir() -> Path:
    """The folder of the built-in digit recogniser: model.onnx, checkpoint.pt, metrics.json, clips/."""
    return Path(__file__).resolve().parent / "digits"


def calibration_dir() -> Path:
    """The shipped calibration set: 40 FSDD recordings (8 kHz) of the built-in model's training speakers.

    Named ``{digit}_{speaker}_{index}.wav`` like the data set, so ``stateport quantize --calib`` reads
    it as FSDD; the held-out test speaker is absent (see ATTRIBUTION.md there). MissingAssetError if absent.
    """
    path = Path(__file__).resolve().parent / "calibration"
    if not any(path.glob("*.wav")):
        raise MissingAssetError(f"the calibration set is missing ({path}); reinstall stateport")
    return path


def default_model_path() -> Path:
    """Path of the built-in model (``stateport/assets/digits/model.onnx``); MissingAssetError if absent."""
    path = Path(__file__).resolve().parent / DEFAULT_MODEL_RELPATH
    if not path.is_file():
        raise MissingAssetError("no built-in model is shipped in this install yet; pass --model")
    return path
