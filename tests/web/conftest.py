"""Fixtures of the web-client tests: the tools they need (skipped with the reason when absent) and the
Python runtime's tokens to compare with (the audio-in export is tests/conftest.py's ``audio_in_builtin``)."""

import os
import shutil
import subprocess

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CLIENT = os.path.join(REPO, "clients", "web")
ASSETS = os.path.join(REPO, "stateport", "assets", "digits")
CHROMIUM = os.environ.get("STATEPORT_CHROMIUM", "/usr/bin/chromium")


def _node_modules(*packages):
    missing = [p for p in packages if not os.path.isdir(os.path.join(CLIENT, "node_modules", p))]
    if shutil.which("node") is None:
        pytest.skip("node is not installed (apt install nodejs npm; .ci/run does)")
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed in clients/web/node_modules: run `npm ci` in clients/web "
                    "(.ci/run does)")


@pytest.fixture(scope="session")
def node_client():
    _node_modules("onnxruntime-node", "onnxruntime-web")  # the unit tests also pin onnxruntime-web's behaviour
    return CLIENT


def _node_major() -> int:
    out = subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=60).stdout.strip()
    return int(out.lstrip("v").split(".")[0])


@pytest.fixture(scope="session")
def browser():
    _node_modules("onnxruntime-web", "playwright-core")
    if _node_major() < 20:  # Debian bookworm's nodejs is 18
        pytest.skip(f"node {_node_major()}: playwright-core (drives Chromium) needs Node >= 20")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt install chromium; .ci/run does)")
    return CHROMIUM


@pytest.fixture(scope="session")
def python_tokens():
    """Token ids of the Python runtime (``stateport.Recognizer``: the shipped features-in model, knf) for a
    recording, read 1024 samples at a time as the AudioWorklet delivers them."""
    import soundfile as sf

    from stateport.runtime.recognizer import Recognizer

    rec = Recognizer.builtin()

    def tokens(path):
        x, rate = sf.read(path, dtype="float32")
        return list(rec.transcribe(x, rate, read_samples=1024).tokens)

    return tokens


def run_node(args, *, env=None, timeout=600):
    done = subprocess.run(["node", *args], cwd=CLIENT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout
