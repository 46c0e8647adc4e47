"""Built-in streaming architectures, registered by name (``stateport list``)."""

# Each import registers its architecture (one module per architecture, one line each).
from . import conformer  # noqa: F401
from . import dscnn_kws  # noqa: F401
from . import embedding_ctc  # noqa: F401
from . import lstm_ctc  # noqa: F401
from . import lstm_transducer  # noqa: F401
from . import quartznet  # noqa: F401
from . import rnnt  # noqa: F401
from .registry import Architecture, architectures, get_architecture, register

__all__ = ["Architecture", "architectures", "get_architecture", "register"]
