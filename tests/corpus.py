"""Real speech for the tests: the whole FSDD corpus where this machine has it, else the clips we ship.

CI has the corpus in ``../shared`` (or ``$STATEPORT_FSDD_DIR``) and runs every test on it. A bare
clone has only the FSDD recordings the repository carries with their attribution: the 40 of the
package's calibration set (``stateport/assets/calibration``, four training speakers) and the 21 of
``tests/data/fsdd`` (with george, the built-in model's held-out speaker). :func:`install` (called
by ``conftest.py`` before any test module is imported) then points ``STATEPORT_FSDD_DIR`` at a
folder of those 61, so the tests that compose speech (quantization, drift, training mechanics) run
anywhere, subprocesses included. Tests whose figures need the whole corpus (accuracy over many
held-out recordings) carry :data:`needs_full_fsdd` and skip, saying so.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from stateport.errors import MissingDataError
from stateport.train.fsdd import FSDD_DIR_ENV, fsdd_dir

TESTS_DIR = Path(__file__).resolve().parent
SHIPPED_DIRS = (TESTS_DIR.parent / "stateport" / "assets" / "calibration", TESTS_DIR / "data" / "fsdd")


def _find_full_corpus() -> Path | None:
    try:
        return fsdd_dir()
    except MissingDataError:
        return None


FULL_FSDD_DIR = _find_full_corpus()  # evaluated once, before install() can point the variable elsewhere
needs_full_fsdd = pytest.mark.skipif(
    FULL_FSDD_DIR is None,
    reason=f"needs the whole FSDD corpus (2,500 recordings; CI has it in ../shared): set {FSDD_DIR_ENV}")


def install() -> str:
    """Use the whole corpus if found, else point ``STATEPORT_FSDD_DIR`` at the shipped clips; says which."""
    if FULL_FSDD_DIR is not None:
        return f"FSDD: the whole corpus at {FULL_FSDD_DIR}"
    folder = tempfile.mkdtemp(prefix="stateport-test-fsdd-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    count = 0
    for source in SHIPPED_DIRS:
        for wav in sorted(source.glob("*_*_*.wav")):
            shutil.copyfile(wav, os.path.join(folder, wav.name))
            count += 1
    os.environ[FSDD_DIR_ENV] = folder
    return (f"FSDD: not on this machine; the tests compose speech from the {count} recordings the repository "
            f"ships ({FSDD_DIR_ENV}={folder}); tests that need the whole corpus skip")
