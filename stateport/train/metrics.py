"""Error counts for digit strings: re-exported from :mod:`stateport.metrics`, where they moved so that
layers below ``stateport.train`` (the quantization drift soak and accuracy table) use the same ones."""

from ..metrics import edit_distance, string_accuracy, token_error_counts, word_error_rate

__all__ = ["edit_distance", "string_accuracy", "token_error_counts", "word_error_rate"]
