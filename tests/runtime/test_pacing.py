"""Real-time feeding: latency, backlog, lag, underrun detection and the declared policies."""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest
import soundfile as sf

from stream_helpers import tiny_ctc_model

from stateport.errors import InvalidInputError, MissingDependencyError
from stateport.runtime.audio import AudioFileError
from stateport.runtime.pacing import FileSource, MicrophoneSource, PacingOptions, run_paced
from stateport.runtime.recognizer import Recognizer
from stateport.runtime.session import OnnxStepSession
from stateport.runtime.streamer import Streamer

STEP_DELAY_S = 0.040  # injected per step; a step of the 2-frame model holds 20 ms of audio


class SlowSession(OnnxStepSession):
    """The same model, made twice slower than real time by a sleep in every step."""

    def run_prepared(self, feeds):
        time.sleep(STEP_DELAY_S)
        return super().run_prepared(feeds)


@pytest.fixture(scope="module")
def wav_2s(tmp_path_factory):
    path = tmp_path_factory.mktemp("pacing") / "noise_2s.wav"
    audio = (0.1 * np.random.default_rng(0).standard_normal(32000)).astype(np.float32)
    sf.write(path, audio, 16000)
    return str(path)


def test_underrun_drop_oldest_bounds_the_backlog(wav_2s):
    model = tiny_ctc_model(chunk_frames=2)
    streamer = Streamer(SlowSession(model, allow_uncertified=True))
    options = PacingOptions(read_ms=20, realtime=True, max_queue_ms=200, keep_queue_ms=100, policy="drop_oldest")
    t = time.perf_counter()
    report = run_paced(streamer, FileSource(wav_2s, read_ms=20), options)
    wall_s = time.perf_counter() - t
    assert report.underruns >= 2
    assert report.dropped_samples > 0 and report.dropped_samples == streamer.counters.dropped_samples
    # The backlog never grew far past the limit (one step's worth of arrivals at most).
    assert max(report.queue_depth_ms) <= 200 + 2 * 1000 * STEP_DELAY_S
    # Without dropping, 2 s of audio at 40 ms per 20 ms step takes 4 s; with it, little more than 2 s.
    assert wall_s < 3.0
    assert report.audio_seconds == pytest.approx(2.0)
    assert report.rtf > 1.0  # the slow model really is slower than real time
    summary = report.summary()
    assert summary["latency_ms"]["p50"] >= 1000 * STEP_DELAY_S
    assert summary["lag_ms"]["max"] > 100
    assert np.all(np.isfinite(report.step_latency_ms))


def test_underrun_fallback_switches_model_and_keeps_all_audio(wav_2s):
    model = tiny_ctc_model(chunk_frames=2)
    streamer = Streamer(SlowSession(model, allow_uncertified=True))
    options = PacingOptions(read_ms=20, realtime=True, max_queue_ms=200, policy="fallback",
                             fallback_model=Recognizer.from_file(model, allow_uncertified=True))
    report = run_paced(streamer, FileSource(wav_2s, read_ms=20), options)
    assert report.underruns == 1 and report.model_switches == 1 and report.state_carried is True
    assert report.dropped_samples == 0
    assert not isinstance(streamer.session, SlowSession)
    # The fast fallback caught up: the backlog at the end is below what it was at the switch.
    assert report.queue_depth_ms[-1] < 200
    # Same weights and carried state: the text equals an unpaced run of the whole file.
    reference = Streamer(model, allow_uncertified=True)
    samples, _ = sf.read(wav_2s, dtype="float32")
    reference.accept_waveform(samples, 16000)
    reference.input_finished()
    assert streamer.result().tokens == reference.result().tokens


def test_as_fast_as_possible_has_no_underruns(wav_2s):
    streamer = Streamer(tiny_ctc_model(), allow_uncertified=True)
    report = run_paced(streamer, FileSource(wav_2s, read_ms=20, realtime=False), PacingOptions(realtime=False))
    assert report.underruns == 0 and report.lag_ms == [] and report.wall_seconds < 2.0
    assert report.rtf < 1.0 and len(report.step_latency_ms) == streamer.counters.steps
    assert [type(e).__name__ for e in report.events][-1] == "FinalText"


def test_microphone_without_sounddevice_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # import fails as if not installed
    with pytest.raises(MissingDependencyError, match="pip install sounddevice"):
        MicrophoneSource()


def test_file_source_and_options_errors(tmp_path):
    with pytest.raises(AudioFileError, match="does not exist"):
        FileSource(tmp_path / "missing.wav")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not audio at all" * 10)
    with pytest.raises(AudioFileError, match="cannot read audio file"):
        FileSource(junk)
    with pytest.raises(InvalidInputError, match="policy must be one of"):
        PacingOptions(policy="panic")
    with pytest.raises(InvalidInputError, match="needs fallback_model"):
        PacingOptions(policy="fallback")
    with pytest.raises(InvalidInputError, match="read_ms must be a positive number"):
        PacingOptions(read_ms=0)
    with pytest.raises(InvalidInputError, match="must not exceed max_queue_ms"):
        PacingOptions(max_queue_ms=100, keep_queue_ms=200)
