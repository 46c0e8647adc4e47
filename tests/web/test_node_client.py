"""The browser client's module (clients/web/stateport.js) run by Node with onnxruntime-node on files:
the same tokens as the Python runtime on the shipped clips."""

import glob
import json
import os

import numpy as np
import soundfile as sf

from conftest import ASSETS, run_node

CLIPS = sorted(glob.glob(os.path.join(ASSETS, "clips", "*.wav")))


def test_node_unit_tests(node_client, audio_in_builtin):
    out = run_node(["--test", "test/"], env={"STATEPORT_AUDIO_MODEL": audio_in_builtin})
    assert "# fail 0" in out and "# skipped 0" in out, out[-2000:]


def test_node_tokens_equal_python_runtime(node_client, audio_in_builtin, python_tokens):
    """Each clip delivered 1024 samples at a time (as the AudioWorklet does): Node's tokens == Python's."""
    results = json.loads(run_node(["transcribe.mjs", audio_in_builtin, *CLIPS, "--json"]))
    assert [r["file"] for r in results] == CLIPS
    for r in results:
        assert r["tokens"] == python_tokens(r["file"]), r["file"]
    # Not trivially empty or runaway: as many tokens as the clips' transcripts have digits, within a quarter
    with open(os.path.join(ASSETS, "clips", "transcripts.json")) as f:
        spoken = sum(len(t["text"].split()) for t in json.load(f))
    assert abs(sum(len(r["tokens"]) for r in results) - spoken) <= spoken / 4


def test_node_resamples_like_the_python_runtime(node_client, audio_in_builtin, python_tokens, tmp_path):
    """A 44.1 kHz recording (what a microphone delivers): the client's own resampler and the Python
    runtime's soxr give the same tokens."""
    from stateport.runtime.resample import StreamingResampler

    files = []
    for clip in CLIPS:
        x, rate = sf.read(clip, dtype="float32")
        resampler = StreamingResampler(rate, 44100)
        y = np.concatenate([resampler.process(x), resampler.flush()])
        files.append(str(tmp_path / os.path.basename(clip)))
        sf.write(files[-1], y, 44100, subtype="PCM_16")
    results = json.loads(run_node(["transcribe.mjs", audio_in_builtin, *files, "--json"]))
    for r in results:
        assert r["sample_rate_hz"] == 44100
        assert r["tokens"] == python_tokens(r["file"]), r["file"]


def test_node_flushes_trimmed_clips_like_the_python_runtime(node_client, audio_in_builtin, tmp_path):
    """Clips cut at their last sample: the end-of-input flush (the card's tail of silence, then the zeros
    that complete the graph's last step) decides the last word; Node's tokens == the Python Recognizer's
    on the same audio-in file == the features-in model's."""
    from stream_helpers import trimmed_clips

    from stateport.runtime.recognizer import Recognizer

    audio, features = Recognizer.from_file(audio_in_builtin), Recognizer.builtin()
    files, expected = [], []
    for i, (x, rate, _) in enumerate(trimmed_clips()):
        files.append(str(tmp_path / f"trimmed_{i}.wav"))
        sf.write(files[-1], x, rate, subtype="PCM_16")  # the clips are 16-bit: exact
        tokens = list(audio.transcribe(x, rate, read_samples=1024).tokens)
        assert tokens == list(features.transcribe(x, rate, read_samples=1024).tokens)
        expected.append(tokens)
    results = json.loads(run_node(["transcribe.mjs", audio_in_builtin, *files, "--json"]))
    assert [r["tokens"] for r in results] == expected
