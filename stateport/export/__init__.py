"""Export: the export job and the verify job over the backend registry, the card builder, model sources.

``export_model`` (build + :func:`export_torch_model`) writes any backend's file, or a folder for a
multi-graph model, proved and certified, atomically; ``verify_file`` proves any file again.
"""

from .backends.onnx_file import export_onnx
from .pipeline import ExportResult, export_model, export_torch_model, prove, verify_file

__all__ = ["ExportResult", "export_model", "export_onnx", "export_torch_model", "prove", "verify_file"]
