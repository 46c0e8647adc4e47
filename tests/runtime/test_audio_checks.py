"""Audio is checked where it enters a stream, once: implausible rates, unscaled int16 stored as float,
NaN positions counted from the start of the stream — typed errors, and the stream unharmed."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import soundfile as sf

from stream_helpers import tiny_ctc_model

from stateport.cli.main import main
from stateport.errors import InvalidInputError, NonFiniteInputError
from stateport.runtime.audio import AudioFileError, read_audio_file
from stateport.runtime.recognizer import Recognizer, transcribe_file


@pytest.fixture(scope="module")
def rec():
    return Recognizer.from_file(tiny_ctc_model(), allow_uncertified=True)


def speech_like(seconds: float = 0.5, rate: int = 16000, seed: int = 0) -> np.ndarray:
    return (0.2 * np.random.default_rng(seed).standard_normal(int(seconds * rate))).astype(np.float32)


@pytest.mark.parametrize("rate", [1, 100, 3999, 384_001, 10_000_000])
def test_implausible_sample_rates_are_refused(rec, rate):
    s = rec.create_stream()
    with pytest.raises(InvalidInputError, match="not a plausible audio rate: expected 4000 to 384000 Hz"):
        s.accept_waveform(rate, speech_like())
    assert s.counters.samples_in == 0


@pytest.mark.parametrize("rate", [4000, 8000, 44100, 384_000])
def test_plausible_rates_run(rec, rate):
    r = rec.transcribe(speech_like(0.3, rate), rate)
    assert r.utterances


@pytest.mark.parametrize("rate", [100, 1000])
def test_a_wav_header_claiming_a_tiny_rate_is_a_typed_error_at_once(tmp_path, capsys, rate):
    """Before: a header claiming a tiny rate gave hundreds of seconds of confident digits, a misleading
    BUFFER_OVERFLOW hint, or a hang in the Python API."""
    path = tmp_path / f"rate_{rate}.wav"
    sf.write(path, speech_like(2.0, 16000), rate)  # 16 kHz samples, header says `rate`
    t0 = time.perf_counter()
    with pytest.raises(AudioFileError, match=f"header claims {rate} Hz, not a plausible audio rate"):
        read_audio_file(path)
    with pytest.raises(AudioFileError):
        transcribe_file(path, tiny_ctc_model(), allow_uncertified=True)
    code = main(["stream", str(path), "--model", tiny_ctc_model(), "--allow-uncertified", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 2 and doc["error"]["code"] == "INVALID_AUDIO_FILE"
    assert time.perf_counter() - t0 < 30


@pytest.mark.parametrize("scale", [32768.0, 1000.0, 4.5])
def test_float_audio_far_above_one_is_refused_as_unscaled_int16(rec, scale):
    s = rec.create_stream()
    x = speech_like()
    x[100] = 0.99  # the peak is known, whatever the noise
    s.accept_waveform(16000, x)
    with pytest.raises(InvalidInputError, match="looks like unscaled int16 \\(divide by 32768\\)"):
        s.accept_waveform(16000, x / 0.99 * scale)
    assert s.counters.samples_in == x.shape[0]  # the refused read left the stream as it was


def test_audio_a_little_above_one_is_accepted(rec):
    x = speech_like()
    x[10] = 1.3  # a resampler's overshoot, a mix that clips: still audio
    assert rec.transcribe(x, 16000).utterances


def test_nan_position_is_counted_from_the_start_of_the_stream(rec):
    s = rec.create_stream()
    s.accept_waveform(16000, speech_like(0.0625))  # 1000 samples
    bad = speech_like(0.01)
    bad[5] = np.nan
    with pytest.raises(NonFiniteInputError, match="first at sample 1005 of the stream, sample 5 of this read"):
        s.accept_waveform(16000, bad)
    stereo = np.stack([speech_like(0.01), speech_like(0.01)], axis=1)
    stereo[7, 1] = np.inf
    with pytest.raises(NonFiniteInputError, match="sample 1007 of the stream"):
        s.accept_waveform(16000, stereo)
    s.accept_waveform(16000, speech_like(0.01))  # the stream goes on
    assert s.counters.samples_in == 1160
