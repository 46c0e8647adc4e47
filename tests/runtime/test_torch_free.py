"""The client runtime never imports torch: ``import stateport``, its Recognizer and every module of
stateport.runtime, in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from stream_helpers import tiny_ctc_model

PROBE = r"""
import importlib, json, pkgutil, sys
import numpy as np
import stateport
lazy = "stateport.runtime" not in sys.modules and "onnxruntime" not in sys.modules
vad = sys.argv[2] if sys.argv[2] != "-" else None
rec = stateport.Recognizer.from_file(sys.argv[1], allow_uncertified=True)   # the top-level API
stream = rec.create_stream(vad=vad)
stream.accept_waveform(8000, np.zeros(4000, np.float32))   # resampler, frontend, session, VAD
stream.input_finished()
while rec.is_ready(stream):
    rec.decode_streams([stream])
text = rec.get_result(stream).text
import stateport.runtime as runtime
names = sorted(m.name for m in pkgutil.walk_packages(runtime.__path__, "stateport.runtime."))
for name in names:
    importlib.import_module(name)
import stateport.assets
from stateport.runtime.streamer import Streamer
streamer = Streamer(sys.argv[1], vad=vad, allow_uncertified=True)
streamer.accept_waveform(np.zeros(4000, np.float32), 8000)
streamer.input_finished()
print(json.dumps({"modules": names, "torch": "torch" in sys.modules, "lazy": lazy,
                  "silero_vad": "silero_vad" in sys.modules, "text": text}))
"""


def _has_silero() -> bool:
    from importlib import metadata

    try:
        metadata.distribution("silero-vad")
        return True
    except metadata.PackageNotFoundError:
        return False


def test_runtime_imports_and_runs_without_torch():
    vad = "silero" if _has_silero() else "-"
    out = subprocess.run([sys.executable, "-c", PROBE, tiny_ctc_model(), vad], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    for module in ("streamer", "vad", "pacing", "resample", "endpoint", "audio", "events", "port_mapping",
                   "session", "frontend", "decoders", "ring_buffer", "recognizer", "features", "outputs", "trust"):
        assert f"stateport.runtime.{module}" in doc["modules"]
    assert doc["torch"] is False
    assert doc["lazy"] is True  # `import stateport` alone loads neither the runtime nor onnxruntime
    # Finding and running Silero's ONNX file must not import its (torch-importing) package.
    assert doc["silero_vad"] is False


@pytest.mark.skipif(_has_silero(), reason="silero-vad is installed; this checks the error without it")
def test_silero_missing_is_a_clear_error():
    from stateport.errors import MissingDependencyError
    from stateport.runtime.vad import silero_model_path

    with pytest.raises(MissingDependencyError, match="pip install silero-vad"):
        silero_model_path()
