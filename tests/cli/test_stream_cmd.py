"""``stateport stream``: same text from the same speech at any rate and channel layout; typed errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf

from stream_helpers import digits_stream, needs_fsdd, tiny_ctc_model

from stateport.cli.main import main
from stateport.runtime.resample import resample

CLIPS = ["1_jackson_4.wav", "9_george_2.wav", "4_nicolas_8.wav"]


def run_json(capsys, *argv):
    code = main(["stream", *argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def wavs(tmp_path_factory):
    """The same digits as WAVs at 16 kHz mono, 16 kHz stereo, 8 kHz and 44.1 kHz (float32 files)."""
    folder = tmp_path_factory.mktemp("stream_cli")
    speech = digits_stream(CLIPS, silence_s=0.4)
    files = {
        "16k": (speech, 16000),
        "16k_stereo": (np.stack([speech, speech], axis=1), 16000),
        "8k": (resample(speech, 16000, 8000), 8000),
        "44k": (resample(speech, 16000, 44100), 44100),
    }
    paths = {}
    for name, (samples, rate) in files.items():
        paths[name] = str(folder / f"{name}.wav")
        sf.write(paths[name], samples, rate, subtype="FLOAT")
    return paths


@needs_fsdd
def test_same_text_across_rates_and_channels(wavs, capsys):
    model = tiny_ctc_model()
    docs = {}
    for name, path in wavs.items():
        code, doc = run_json(capsys, path, "--model", model, "--allow-uncertified")
        assert code == 0
        docs[name] = doc
    mono, stereo = docs["16k"], docs["16k_stereo"]
    assert len(mono["tokens"]) >= 3
    assert stereo["tokens"] == mono["tokens"] and stereo["text"] == mono["text"]  # exact: mean of equal channels
    for name, doc in docs.items():
        for key in ("text", "rtf", "latency_ms", "underruns", "resets", "audio_seconds", "sample_rate_hz"):
            assert key in doc, (name, key)
        assert math.isfinite(doc["rtf"]) and doc["rtf"] > 0
        assert math.isfinite(doc["latency_ms"]["p50"]) and doc["latency_ms"]["p95"] >= doc["latency_ms"]["p50"]
        assert doc["underruns"] == 0 and doc["resets"] == 0
        assert doc["audio_seconds"] == pytest.approx(docs["16k"]["audio_seconds"], abs=1e-3)
        assert doc["model_sample_rate_hz"] == 16000
    assert [docs[n]["sample_rate_hz"] for n in ("16k", "16k_stereo", "8k", "44k")] == [16000, 16000, 8000, 44100]
    # Other rates only run and give finite results here: a random-weight model weighs the empty
    # mel bins above 4 kHz (log of ~0 energy, where resampling leaves different traces) as
    # much as speech, so its nonsense tokens differ between rates. Streaming a resampled input
    # equals offline on the resampled signal (tests/runtime/test_streamer.py); the trained
    # model's accuracy tests will compare words across rates.
    for name in ("8k", "44k"):
        assert len(docs[name]["tokens"]) > 0 and isinstance(docs[name]["text"], str)


@needs_fsdd
def test_text_output_prints_partials_and_a_summary(wavs, capsys):
    code = main(["stream", wavs["16k"], "--model", tiny_ctc_model(), "--allow-uncertified", "--vad",
                 "--min-silence-ms", "250"])
    out = capsys.readouterr().out
    assert code == 0
    lines = out.splitlines()
    assert any(line.startswith("partial: ") for line in lines)  # not a TTY: plain lines
    assert any(line.startswith("final: ") for line in lines)
    assert lines[-3].startswith("text: ")
    assert "RTF" in lines[-2] and "p50" in lines[-2] and "p95" in lines[-2]
    assert "underruns 0" in lines[-1] and "resets 3" in lines[-1]  # one endpoint reset per digit


def test_missing_or_unreadable_audio_is_a_typed_error(tmp_path, capsys):
    code, doc = run_json(capsys, str(tmp_path / "nope.wav"), "--model", tiny_ctc_model(), "--allow-uncertified")
    assert code == 2 and doc["error"]["code"] == "INVALID_AUDIO_FILE" and "does not exist" in doc["error"]["message"]
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF....WAVEjunk" * 4)
    code, doc = run_json(capsys, str(junk), "--model", tiny_ctc_model(), "--allow-uncertified")
    assert code == 2 and doc["error"]["code"] == "INVALID_AUDIO_FILE"
    code, doc = run_json(capsys, "--model", tiny_ctc_model(), "--allow-uncertified")
    assert code == 2 and "exactly one" in doc["error"]["message"]


def test_without_model_uses_the_builtin_one_or_says_it_is_missing(tmp_path, capsys, monkeypatch):
    import stateport.assets as assets

    monkeypatch.setattr(assets, "DEFAULT_MODEL_RELPATH", assets.Path("digits") / "not-shipped.onnx")
    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(1600, np.float32), 16000)
    code, doc = run_json(capsys, str(wav))
    assert code == 2 and doc["error"]["code"] == "MISSING_ASSET"
    assert doc["error"]["message"] == "no built-in model is shipped in this install yet; pass --model"
