"""Quantization with proofs: dynamic/static int8 (state-loop calibration), fp16, QAT int8; drift soak.

Public API::

    from stateport.quantize import quantize_model, get_recipe, PRESETS
    result = quantize_model("model.onnx", "model.int8.onnx", recipe="static-int8")

Recipes are typed configs with named presets (:mod:`.recipes`); every artifact carries its
recipe, precision, sizes, float deviation and certificate in its card (:mod:`.api`).
"""

from .api import QuantizeResult, quantize_model
from .recipes import (PRESETS, CalibrationConfig, DynamicInt8Config, Fp16Config, QatInt8Config, StaticInt8Config,
                      get_recipe)

__all__ = ["PRESETS", "CalibrationConfig", "DynamicInt8Config", "Fp16Config", "QatInt8Config", "QuantizeResult",
           "StaticInt8Config", "get_recipe", "quantize_model"]
