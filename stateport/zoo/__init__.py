"""Built-in streaming architectures, registered by name (``stateport list``)."""

from . import lstm_ctc  # noqa: F401  (registers itself)
from .registry import Architecture, architectures, get_architecture, register

__all__ = ["Architecture", "architectures", "get_architecture", "register"]
