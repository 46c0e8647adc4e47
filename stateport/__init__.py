"""stateport: streaming speech models from PyTorch to edge devices, with explicit state.

Importing the package imports neither torch nor onnxruntime; the torch side lives in
``stateport.nn``, ``stateport.zoo`` and ``stateport.export``, the client side in
``stateport.runtime`` (numpy + onnxruntime only).
"""

__version__ = "0.1.0"
