"""Progress of long work on stderr (never stdout), and other libraries' log noise kept off the terminal.

Library code reports what it is doing with :func:`step` (one line), :func:`task` (one line now,
the elapsed time ticking on a terminal, "done" with the seconds after) and :func:`meter` (a tqdm
bar over a quantity the caller counts, on a terminal). All of it goes to the ``stateport`` logger
at INFO, which by Python's rules shows nothing until a handler is installed: a library user sees
no output unless they ask for it (``logging.basicConfig(level=logging.INFO)``, or :func:`enable`).
The CLI calls :func:`enable` (``--quiet``: without the steps); ``--json`` keeps stdout one JSON
document because all of this is on stderr.

Third-party noise: ONNX Runtime's quantizer calls ``logging.warning(...)`` on the *root* logger,
which, with no handler there, makes Python install a stderr handler that prints every later
root-level warning ("Please consider to run pre-processing before quantization"). :func:`enable`
puts one handler on the root logger that shows other libraries' records at ERROR and above only,
so real errors still reach the user and advice does not; torch's own logger (which has a handler of
its own) gets the same threshold. ``STATEPORT_LOG_LEVEL=WARNING`` (or INFO, DEBUG) shows more of
them when diagnosing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, TextIO

__all__ = ["LOGGER", "disable", "enable", "enabled", "meter", "step", "task"]

LOGGER = logging.getLogger("stateport")
LOG_LEVEL_ENV = "STATEPORT_LOG_LEVEL"
_TICK_S = 0.5
_QUIET_START_S = 1.0  # task(): work shorter than this says nothing
TORCH_LOGS_ENV = "TORCH_LOGS"


@dataclass
class _State:
    handler: logging.Handler | None = None
    root_handler: logging.Handler | None = None
    stream: TextIO | None = None
    t0: float = 0.0
    saved_levels: dict = field(default_factory=dict)
    set_torch_logs: bool = False


_state = _State()


class _StepFormatter(logging.Formatter):
    """``[  12.3 s] message``: seconds since :func:`enable`, so a slow step shows where time goes."""

    def format(self, record: logging.LogRecord) -> str:
        at = getattr(record, "started_at", record.created)
        return f"[{at - _state.t0:6.1f} s] {record.getMessage()}"


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
            # On a terminal a task's ticker may hold the line: clear it first.
            clear = "\r\033[K" if hasattr(stream, "isatty") and stream.isatty() else ""
            stream.write(clear + self.format(record) + "\n")
            stream.flush()
        except Exception:  # a closed pipe or file must not turn progress into a crash
            self.handleError(record)


def enable(stream: TextIO | None = None, *, steps: bool = True) -> None:
    """Route third-party log records and, with ``steps``, show step messages on ``stream`` (default: stderr).

    ``steps=False`` (``--quiet``) keeps stateport's own messages silent but still keeps other
    libraries' advice off the terminal. Idempotent: a second call replaces the first one's handlers.
    """
    disable()
    _state.stream, _state.t0 = stream, time.time()
    if steps:
        handler = _Handler()
        handler.setFormatter(_StepFormatter())
        LOGGER.addHandler(handler)
        LOGGER.setLevel(logging.INFO)
        LOGGER.propagate = False
        _state.handler = handler

    level = logging.getLevelName(os.environ.get(LOG_LEVEL_ENV, "ERROR").upper())
    level = level if isinstance(level, int) else logging.ERROR
    root_handler = _Handler()
    root_handler.setLevel(level)
    root_handler.addFilter(_ThirdPartyFilter())
    root_handler.setFormatter(logging.Formatter("%(name)s: %(levelname)s: %(message)s"))
    # A handler on the root logger also stops logging.warning() from calling basicConfig(),
    # which is how ONNX Runtime's advice reached the terminal.
    logging.getLogger().addHandler(root_handler)
    _state.root_handler = root_handler
    # torch's logger writes through a handler of its own (e.g. the deprecation advice torchao's import
    # triggers): the same threshold applies to it. torch sets that logger's level when it is imported,
    # from $TORCH_LOGS ("-all": errors only), so before the import the variable says it, after it the level.
    if "torch" not in sys.modules and TORCH_LOGS_ENV not in os.environ and level >= logging.ERROR:
        os.environ[TORCH_LOGS_ENV] = "-all"
        _state.set_torch_logs = True
    torch_logger = logging.getLogger("torch")
    _state.saved_levels["torch"] = torch_logger.level
    torch_logger.setLevel(max(torch_logger.getEffectiveLevel(), level))


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
    for name, level in _state.saved_levels.items():
        logging.getLogger(name).setLevel(level)
    _state.saved_levels = {}
    if _state.set_torch_logs:
        os.environ.pop(TORCH_LOGS_ENV, None)
        _state.set_torch_logs = False
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

    The start line comes once the work has run for ``_QUIET_START_S`` (stamped with when it
    started): work that ends sooner, like a refusal of bad input, prints nothing, so its error
    stays the one line on stderr. Then, on a terminal, the seconds elapsed tick; elsewhere (a log
    file, CI) only ``... done (S s)`` follows. An exception ends the ticker and propagates.
    """
    if not enabled():
        yield
        return
    t0, started_at = time.perf_counter(), time.time()
    stop, said = threading.Event(), threading.Event()
    terminal = _on_terminal()

    def watch():
        if stop.wait(_QUIET_START_S):
            return
        LOGGER.info(message, extra={"started_at": started_at})
        said.set()
        if terminal:
            stream = _stream()
            while not stop.wait(_TICK_S):
                stream.write(f"\r\033[K  ... {time.perf_counter() - t0:.0f} s")
                stream.flush()
            stream.write("\r\033[K")
            stream.flush()

    watcher = threading.Thread(target=watch, name="stateport-progress", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join()
    if said.is_set():
        step(f"{message} done ({time.perf_counter() - t0:.1f} s)")


@contextlib.contextmanager
def meter(total: float, *, desc: str, unit: str = "s") -> Iterator[Callable[[float], None]]:
    """Progress through ``total`` units that the caller counts: yields ``advance(n)``.

    A tqdm bar on a terminal; elsewhere the start line only (``desc (total unit)``); nothing when silent.
    """
    if not enabled():
        yield lambda n: None
        return
    if not _on_terminal():
        step(f"{desc} ({round(total, 1):g} {unit})")
        yield lambda n: None
        return
    from tqdm import tqdm

    with tqdm(total=total, desc=desc, unit=unit, file=_stream(), leave=False, dynamic_ncols=True,
              bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} {unit} [{elapsed}<{remaining}]") as progress_bar:
        yield progress_bar.update
