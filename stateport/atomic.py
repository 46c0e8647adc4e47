"""Atomic artifacts: every file stateport writes appears at its path complete and proved, or not at all.

The writer gets a temporary path in the target's own folder (the same filesystem, so the final
``os.replace`` is atomic), writes the file there, proves it there, and only then commits it. An
exception, a failed proof, SIGTERM or SIGHUP removes the temporary and leaves whatever was at the
path before untouched. A failed proof keeps its evidence *beside* the path
(``target.keep_as(failed_path(path))``), never at it::

    with atomic_output("model.onnx") as target:
        write(target.tmp)
        if not prove(target.tmp):
            target.keep_as(failed_path("model.onnx"))
            raise ...
        target.commit()

Concurrent writers of one path never mix: each writes its own temporary and ``os.replace`` swaps
whole files. A target that takes more than one rename (a folder such as a multi-graph export or a
``.mlpackage``; OpenVINO's ``.xml`` + ``.bin`` pair) commits under an exclusive lock on its folder,
so two commits never interleave; a reader may see the path absent for the instant between renames.

Standard library only: the torch-free runtime may use it too.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
from typing import Callable, Iterator

from .errors import OutputPathError

try:  # POSIX; elsewhere multi-rename commits go without the folder lock
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

_TERMINATING = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s)
TMP_MARK = ".stateport-tmp"


def failed_path(path: str | os.PathLike, suffix: str | None = None) -> str:
    """Where a failed proof keeps its file: ``m.onnx`` -> ``m.failed.onnx``, a folder ``out`` -> ``out.failed``.

    ``suffix``: the format's suffix (``.onnx``, ``.mlpackage``, ...); the file's own extension by default.
    """
    path = os.fspath(path).rstrip("/" + os.sep) or os.fspath(path)
    if suffix is None:
        suffix = "" if os.path.isdir(path) else os.path.splitext(path)[1]
    if suffix and path.endswith(suffix) and len(path) > len(suffix):
        return path[: -len(suffix)] + ".failed" + suffix
    return path + ".failed"


def companion(path: str, suffix: str) -> str:
    """The file that travels with ``path`` (``m.xml`` -> ``m.bin``): same stem, other suffix."""
    return os.path.splitext(path)[0] + suffix


def check_output_folder(path: str | os.PathLike) -> str:
    """The folder ``path`` goes into exists and is writable (the first check of an output, before
    anything else is known about it); returns the folder."""
    path = os.fspath(path)
    if not path.strip():
        raise OutputPathError("the output path is empty")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise OutputPathError(f"cannot write {path!r}: the folder {folder!r} does not exist (create it first)")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputPathError(f"cannot write {path!r}: the folder {folder!r} is not writable")
    return folder


def check_output_path(path: str | os.PathLike, *, directory: bool = False,
                      replaceable: Callable[[str], bool] | None = None) -> str:
    """Refuse, before any work, an output path that cannot be written; returns it as a string.

    ``directory``: the output is a folder (a multi-graph export). An existing folder there is
    replaced only when ``replaceable(path)`` says it holds nothing but a previous output of the
    same kind; a file output never replaces a folder.
    """
    path = os.fspath(path)
    check_output_folder(path)
    if os.path.isdir(path) and not os.path.islink(path):
        if not directory:
            raise OutputPathError(f"{path!r} is a folder: give the path of the file to write")
        if replaceable is None or not replaceable(path):
            raise OutputPathError(f"{path!r} is a folder holding files stateport did not write there: choose a new "
                                  "folder, or remove it first")
    elif directory and os.path.lexists(path):
        raise OutputPathError(f"{path!r} is a file: this output is a folder (one file per graph)")
    return path


class AtomicOutput:
    """A temporary beside ``path``: write ``tmp``, then :meth:`commit` (or :meth:`keep_as` elsewhere)."""

    def __init__(self, path: str, tmp: str, *, directory: bool, companions: tuple):
        self.path = path
        self.tmp = tmp
        self.directory = directory
        self.companions = tuple(companions)
        self.done_at: str | None = None

    def commit(self) -> str:
        """Move the temporary onto ``path`` (replacing what was there); returns ``path``."""
        return self._move(self.path)

    def keep_as(self, other: str | os.PathLike) -> str:
        """Move the temporary to ``other`` instead (e.g. a failed proof's evidence); returns ``other``."""
        return self._move(os.fspath(other))

    def _move(self, dest: str) -> str:
        if self.done_at is not None:
            raise RuntimeError(f"{self.tmp} was already moved to {self.done_at}")
        if not self.directory and not self.companions:
            os.replace(self.tmp, dest)
        else:
            with _folder_lock(os.path.dirname(os.path.abspath(dest))):
                if self.directory:
                    _swap_folder(self.tmp, dest)
                else:
                    # The main file goes last, after its old copy is gone: a reader finds the old pair,
                    # no file, or the new pair (OpenVINO reads the .bin named after the .xml).
                    if os.path.lexists(dest):
                        os.unlink(dest)
                    for suffix in self.companions:
                        os.replace(companion(self.tmp, suffix), companion(dest, suffix))
                    os.replace(self.tmp, dest)
        self.done_at = dest
        return dest

    def cleanup(self) -> None:
        """Remove what is left of the temporary (nothing after a commit)."""
        if self.done_at is not None:
            return
        _remove(self.tmp)
        for suffix in self.companions:
            _remove(companion(self.tmp, suffix))


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, directory: bool = False, companions: tuple = (),
                  suffix: str | None = None, replaceable: Callable[[str], bool] | None = None
                  ) -> Iterator[AtomicOutput]:
    """A temporary file (or folder, ``directory``) beside ``path``, removed unless committed.

    The path is checked first (:func:`check_output_path`), then the temporary is created, which
    proves the folder writable before any work. ``suffix``: the temporary's extension (writers
    that pick the format from it need the real one; default: ``path``'s own). ``companions``:
    suffixes of files written next to the main one (OpenVINO's ``.bin``), moved with it.
    SIGTERM and SIGHUP end the process through the cleanup (exit status 128 + signal).
    """
    path = check_output_path(path, directory=directory, replaceable=replaceable)
    folder = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path.rstrip("/" + os.sep))
    stem, ext = os.path.splitext(base)
    ext = ext if suffix is None else suffix
    prefix = f".{stem if not directory else base}."
    try:
        # mkstemp/mkdtemp create private (0600/0700) entries; an artifact gets what any new file gets.
        if directory:
            tmp = tempfile.mkdtemp(prefix=prefix, suffix=TMP_MARK + (suffix or ""), dir=folder)
            os.chmod(tmp, 0o777 & ~_umask())
        else:
            fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=TMP_MARK + ext, dir=folder)
            os.close(fd)
            os.chmod(tmp, 0o666 & ~_umask())
    except OSError as e:
        raise OutputPathError(f"cannot write {path!r}: {e.strerror or e}") from None
    target = AtomicOutput(path, tmp, directory=directory, companions=companions)
    try:
        with _terminate_through_cleanup():
            yield target
    finally:
        target.cleanup()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> str:
    """Write ``data`` to ``path`` atomically (a small file: a report, a card, a JSON document)."""
    with atomic_output(path) as target:
        with open(target.tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return target.commit()


def atomic_write_text(path: str | os.PathLike, text: str) -> str:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_copy(src: str | os.PathLike, dest: str | os.PathLike) -> str:
    """Copy the file ``src`` to ``dest`` atomically."""
    with atomic_output(dest) as target:
        shutil.copyfile(os.fspath(src), target.tmp)
        return target.commit()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _remove(path: str) -> None:
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.lexists(path):
            os.unlink(path)
    except OSError:
        pass  # cleanup is best effort: a leftover temporary is hidden (dot-name) and never at the path


def _swap_folder(new: str, dest: str) -> None:
    """Put folder ``new`` at ``dest``; an old ``dest`` is moved aside, then deleted."""
    aside = None
    if os.path.lexists(dest):
        aside = tempfile.mkdtemp(prefix=f".{os.path.basename(dest)}.", suffix=".stateport-old",
                                 dir=os.path.dirname(os.path.abspath(dest)))
        os.rmdir(aside)
        os.replace(dest, aside)
    try:
        os.replace(new, dest)
    except BaseException:
        if aside is not None and not os.path.lexists(dest):
            os.replace(aside, dest)  # put the previous one back
            aside = None
        raise
    finally:
        if aside is not None:
            _remove(aside)


@contextlib.contextmanager
def _folder_lock(folder: str):
    """An exclusive advisory lock on ``folder`` (flock on its descriptor) for multi-rename commits."""
    if fcntl is None:
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


class _Terminated(SystemExit):
    """SIGTERM/SIGHUP as an exception, so ``finally`` blocks remove temporaries on the way out."""


@contextlib.contextmanager
def _terminate_through_cleanup():
    """Turn SIGTERM/SIGHUP into :class:`_Terminated` while a temporary exists (main thread only;
    a signal that is ignored or handled by someone else keeps its handler)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise _Terminated(128 + signum)

    previous = {}
    for sig in _TERMINATING:
        if signal.getsignal(sig) is signal.SIG_DFL:
            previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
