"""Export: the flat step wrapper, one module per backend, the card builder and the export job."""

from .pipeline import ExportResult, certify, export_model, verify_file

__all__ = ["ExportResult", "certify", "export_model", "verify_file"]
