"""User-facing errors of stateport.

Every error a user can cause carries a short machine-readable ``code`` and a one-line
message that says what was expected. The CLI prints ``error[CODE]: message`` and exits
non-zero; it never shows a stack trace for these. Anything else that escapes is an
internal bug and is reported as such.
"""

from __future__ import annotations


class StateportError(Exception):
    """Base class of the errors a user can cause (bad input, unsupported model, ...)."""

    code = "ERROR"
    exit_code = 2

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict:
        return {"code": self.code, "type": type(self).__name__, "message": self.message}


class InvalidInputError(StateportError, ValueError):
    """Input data or arguments that do not fit what the model or function expects."""

    code = "INVALID_INPUT"


class StateShapeError(InvalidInputError):
    """A state tensor whose shape or dtype differs from the one the card declares."""

    code = "INVALID_STATE"


class ChunkLengthError(InvalidInputError):
    """A chunk whose number of frames the model cannot take."""

    code = "INVALID_CHUNK"


class NonFiniteInputError(InvalidInputError):
    """NaN or Inf in input audio, features or state."""

    code = "NON_FINITE_INPUT"


class MissingDataError(InvalidInputError):
    """A data set that only some commands need (FSDD: training, accuracy tables) is not on this machine."""

    code = "MISSING_DATA"


class ModelFileError(StateportError):
    """A model file that is missing, not of the expected format, or corrupt."""

    code = "INVALID_MODEL_FILE"


class MissingCardError(ModelFileError):
    """A model file without a stateport model card."""

    code = "MISSING_CARD"


class CardError(ModelFileError):
    """A model card that does not parse or contradicts itself."""

    code = "INVALID_CARD"


class CardGraphMismatchError(ModelFileError):
    """A model card that contradicts the graph it travels with (port names, roles, shapes, dtypes, state pairs)."""

    code = "CARD_GRAPH_MISMATCH"


class UncertifiedModelError(ModelFileError):
    """A model whose parity certificate is absent or FAILED, opened without ``allow_uncertified``."""

    code = "UNCERTIFIED_MODEL"


class PortNameError(InvalidInputError):
    """Port names that clash or break the naming rule."""

    code = "INVALID_PORT_NAME"


class ModuleImportError(InvalidInputError):
    """A user's ``--module FILE.py:OBJ`` that does not import or build (syntax error, exception, wrong object)."""

    code = "MODULE_IMPORT"


class UndeclaredStateError(StateportError):
    """A module that keeps state the export would silently lose."""

    code = "UNDECLARED_STATE"


class UnsupportedError(StateportError):
    """Something stateport (or the chosen backend) does not support."""

    code = "NOT_SUPPORTED"


class MissingDependencyError(UnsupportedError):
    """An optional dependency (an extra) is not installed."""

    code = "MISSING_DEPENDENCY"


class BufferOverflowError(StateportError):
    """Audio pushed into a full ring buffer whose policy is to raise."""

    code = "BUFFER_OVERFLOW"


class OutputPathError(InvalidInputError):
    """An output path stateport cannot write: a missing or read-only folder, an existing folder
    where a file goes, or a folder holding files stateport did not write."""

    code = "INVALID_OUTPUT"


class CalibrationError(InvalidInputError):
    """Calibration data that cannot be read or is too little to calibrate with."""

    code = "INVALID_CALIBRATION"


class PoolFileError(InvalidInputError):
    """A saved pool of training batches (``stateport train --pool-file``) that is unreadable or
    was drawn for other data settings than the run's."""

    code = "INVALID_POOL_FILE"


class ParityError(StateportError):
    """The exported model does not reproduce the reference within tolerance.

    ``report`` holds every failed comparison, collected before raising; ``evidence`` is where the
    file that failed was kept (beside the requested path, never at it), if it was kept.
    """

    code = "PARITY_FAILED"
    exit_code = 1

    def __init__(self, message: str, report=None, evidence: str | None = None):
        super().__init__(message)
        self.report = report
        self.evidence = evidence

    def to_dict(self) -> dict:
        d = super().to_dict()
        if self.report is not None:
            d["report"] = self.report.to_dict()
        if self.evidence is not None:
            d["evidence"] = self.evidence
        return d
