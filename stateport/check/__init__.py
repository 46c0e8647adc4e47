"""Readiness checks for toolchains we cannot run here (vendor SDKs): everything up to the SDK's wall.

``stateport check FILE --target snpe|qnn`` (:func:`check_qualcomm`): static shapes, opset, ops
outside Qualcomm's documented ONNX allow-list (``data/qualcomm_onnx_ops.json``, with its source
and compile date), LSTM attributes, state defaults a converter would fold, and the exact
conversion commands with every port's dimensions.
"""

from .qualcomm import TARGETS, Finding, ReadinessReport, check_qualcomm, load_allow_list, write_without_state_defaults

__all__ = ["TARGETS", "Finding", "ReadinessReport", "check_qualcomm", "load_allow_list",
           "write_without_state_defaults"]
