"""Progress of long work on stderr (never stdout), and other libraries' log noise kept off the terminal.

Library code reports what it is doing with :func:`step` (one line), :func:`task` (one line now,
the elapsed time ticking on a terminal, "done" with the seconds after) and :func:`bar` (a tqdm
bar on a terminal). All of it goes to the ``stateport`` logger at INFO, which by Python's rules
shows nothing until a handler is installed: a library user sees no output unless they ask for it
(``logging.basicConfig(level=logging.INFO)``, or :func:`enable`). The CLI calls :func:`enable`
unless ``--quiet``; ``--json`` keeps stdout one JSON document because all of this is on stderr.

Third-party noise: ONNX Runtime's quantizer calls ``logging.warning(...)`` on the *root* logger,
which, with no handler there, makes Python install a stderr handler that prints every later
root-level warning ("Please consider to run pre-processing before quantization"). :func:`enable`
puts one handler on the root logger that shows other libraries' records at ERROR and above only,
so real errors still reach the user and advice does not; ``STATEPORT_LOG_LEVEL=WARNING`` (or
INFO, DEBUG) shows more of them when diagnosing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from typing import Iterable, Iterator, TextIO

__all__ = ["LOGGER", "bar", "disable", "enable", "enabled", "step", "task"]

LOGGER = logging.getLogger("stateport")
LOG_LEVEL_ENV = "STATEPORT_LOG_LEVEL"
_TICK_S = 0.5


class _State:
    handler: logging.Handler | None = None
    root_handler: logging.Handler | None = None
    stream: TextIO | None = None
    t0: float = 0.0


_state = _State()


class _StepFormatter(logging.Formatter):
    """``[  12.3 s] message``: seconds since :func:`enable`, so a slow step shows where time goes."""

    def format(self, record: logging.LogRecord) -> str:
        return f"[{record.created - _state.t0:6.1f} s] {record.getMessage()}"


class _ThirdPartyFilter(logging.Filter):
    """Other libraries' records only (stateport's own have their own handler)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == "stateport" or record.name.startswith("stateport."))


def _stream() -> TextIO:
    # Resolved at call time: tests and callers may have replaced sys.stderr since enable().
    return _state.stream or sys.stderr


class _Handler(logging.Handler):
    """Writes to the stream of :func:`enable`, or to whatever ``sys.stderr`` is at the time."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = _stream()
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:  # a closed pipe or file must not turn progress into a crash
            self.handleError(record)


def enable(stream: TextIO | None = None) -> None:
    """Show step messages on ``stream`` (default: the current stderr) and route third-party log records.

    Idempotent: a second call replaces the first one's handlers.
    """
    disable()
    _state.stream, _state.t0 = stream, time.time()
    handler = _Handler()
    handler.setFormatter(_StepFormatter())
    LOGGER.addHandler(handler)
    LOGGER.setLevel(logging.INFO)
    LOGGER.propagate = False
    _state.handler = handler

    level_name = os.environ.get(LOG_LEVEL_ENV, "ERROR").upper()
    level = logging.getLevelName(level_name)
    root_handler = _Handler()
    root_handler.setLevel(level if isinstance(level, int) else logging.ERROR)
    root_handler.addFilter(_ThirdPartyFilter())
    root_handler.setFormatter(logging.Formatter("%(name)s: %(levelname)s: %(message)s"))
    # A handler on the root logger also stops logging.warning() from calling basicConfig(),
    # which is how ONNX Runtime's advice reached the terminal.
    logging.getLogger().addHandler(root_handler)
    _state.root_handler = root_handler


def disable() -> None:
    """Undo :func:`enable`: step messages go nowhere again (the library default)."""
    if _state.handler is not None:
        LOGGER.removeHandler(_state.handler)
        LOGGER.propagate = True
        LOGGER.setLevel(logging.NOTSET)
        _state.handler = None
    if _state.root_handler is not None:
        logging.getLogger().removeHandler(_state.root_handler)
        _state.root_handler = None
    _state.stream = None


def enabled() -> bool:
    """True when step messages are shown somewhere (by :func:`enable` or a caller's own logging setup)."""
    return LOGGER.isEnabledFor(logging.INFO) and LOGGER.hasHandlers()


def step(message: str) -> None:
    """One line of progress: what starts now."""
    LOGGER.info(message)


def _on_terminal() -> bool:
    stream = _stream()
    return _state.handler is not None and hasattr(stream, "isatty") and stream.isatty()


@contextlib.contextmanager
def task(message: str) -> Iterator[None]:
    """A step whose work reports nothing by itself (an export, a proof): say it, tick, say when it ends.

    On a terminal the line shows the seconds elapsed while it runs; elsewhere (a log file, CI) only
    the start line and ``... done (S s)`` are written. An exception ends the ticker and propagates.
    """
    if not enabled():
        yield
        return
    t0 = time.perf_counter()
    step(message)
    stop = threading.Event()
    ticker = None
    if _on_terminal():
        stream = _stream()

        def tick():
            while not stop.wait(_TICK_S):
                stream.write(f"\r\033[K  ... {time.perf_counter() - t0:.0f} s")
                stream.flush()
            stream.write("\r\033[K")
            stream.flush()

        ticker = threading.Thread(target=tick, name="stateport-progress", daemon=True)
        ticker.start()
    try:
        yield
    finally:
        if ticker is not None:
            stop.set()
            ticker.join()
    step(f"{message} done ({time.perf_counter() - t0:.1f} s)")


def bar(iterable: Iterable, *, total: int | None = None, desc: str = "", unit: str = "it") -> Iterable:
    """``iterable`` with a tqdm bar on a terminal; a start line elsewhere; unchanged when silent."""
    if not enabled():
        return iterable
    if not _on_terminal():
        if desc:
            step(desc + (f" ({total} {unit})" if total else ""))
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, file=_stream(), leave=False, dynamic_ncols=True)
