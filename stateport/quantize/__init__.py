"""Quantization with proofs: dynamic/static int8 (state-loop calibration), fp16, QAT int8; drift soak.

Public API::

    from stateport.quantize import quantize_model, get_recipe, PRESETS
    result = quantize_model("model.onnx", "model.int8.onnx", recipe="static-int8", calib="my_recordings/")
    result = quantize_model("model.onnx", "model.qat.onnx", recipe="qat-int8", qat=my_task, reference=my_model)

Recipes are typed configs with named presets (:mod:`.recipes`); the data is the caller's: ``calib``
(recordings, features, or a :class:`CalibrationSet`) and ``qat`` (a :class:`QatTask`: your training
step). Every artifact carries its recipe, what it saw, precision, sizes, float deviation and
certificate in its card (:mod:`.api`).
"""

from .api import QuantizeResult, quantize_model
from .calibration import CalibrationSet
from .recipes import (PRESETS, CalibrationConfig, DynamicInt8Config, Fp16Config, QatInt8Config, StaticInt8Config,
                      get_recipe)

__all__ = ["PRESETS", "CalibrationConfig", "CalibrationSet", "DynamicInt8Config", "Fp16Config", "QatInt8Config",
           "QatTask", "QuantizeResult", "StaticInt8Config", "get_recipe", "quantize_model"]


def __getattr__(name):
    if name == "QatTask":  # the QAT module imports torch: only when asked for
        from .qat import QatTask

        return QatTask
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
