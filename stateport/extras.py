"""Which optional extra provides a module: a verb run without it says what to install.

``pip install stateport`` is the client (runtime, ``stream``, ``inspect``); the rest comes with
extras declared in ``pyproject.toml``. The CLI turns a ModuleNotFoundError of one of these
modules into ``error[MISSING_DEPENDENCY]`` naming the extra, instead of a traceback.
"""

from __future__ import annotations

from .errors import MissingDependencyError

# Top-level module -> the extra that installs it (keep in step with pyproject.toml).
EXTRA_OF_MODULE = {
    "torch": "export", "onnxscript": "export", "scipy": "export",
    "parselmouth": "train",
    "torchao": "quantize", "onnxconverter_common": "quantize", "matplotlib": "quantize",
    "litert_torch": "tflite", "ai_edge_litert": "tflite", "ai_edge_quantizer": "tflite",
    "coremltools": "coreml", "executorch": "executorch", "openvino": "openvino",
    "pytest": "test", "jiwer": "test", "speechbrain": "gallery",
}


def missing_dependency(error: ModuleNotFoundError, what: str = "this") -> Exception:
    """A MissingDependencyError naming the extra for ``error``'s module, or ``error`` itself when the
    module is not one an extra provides (a real bug, reported as such)."""
    top = (error.name or "").split(".")[0]
    extra = EXTRA_OF_MODULE.get(top)
    if extra is None:
        return error
    return MissingDependencyError(f"{what} needs the '{extra}' extra ({top} is not installed): "
                                  f"pip install \"stateport[{extra}]\"")
