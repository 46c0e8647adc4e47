"""Edge backends: the same flat step, the same state ports, the same card, in each target format.

One module per backend, loaded lazily (importing this package imports no converter):

==========  ===================  =====================================  ==========================
backend     file                 card stored in                          runs here (parity proof)
==========  ===================  =====================================  ==========================
onnx        ``.onnx``            ``metadata_props["stateport"]``          ONNX Runtime
tflite      ``.tflite``          flatbuffer ``metadata`` entry            LiteRT interpreter
                                 ``"stateport"``
coreml      ``.mlpackage``       ``user_defined_metadata["stateport"]``   no (macOS only): the spec
                                                                          is read back and checked
executorch  ``.pte``             constant method ``get_stateport_card``   ExecuTorch runtime (XNNPACK)
openvino    ``.xml`` + ``.bin``  ``rt_info["stateport"]``                 OpenVINO CPU
==========  ===================  =====================================  ==========================

Each backend needs an optional extra (``pip install 'stateport[tflite]'`` ...); a missing one
raises :class:`~stateport.errors.MissingDependencyError` naming it.
"""

from .registry import BACKENDS, Backend, backend_names, get_backend, read_backend_card

__all__ = ["BACKENDS", "Backend", "backend_names", "get_backend", "read_backend_card"]
