"""Our torch-free SileroVad equals Silero's own wrapper; endpoint rules equal its VADIterator."""

from __future__ import annotations

import numpy as np
import pytest

from stream_helpers import digits_stream, needs_fsdd, reads, tiny_ctc_model

from stateport.errors import CardError, InvalidInputError
from stateport.runtime.endpoint import EndpointConfig, EndpointDetector
from stateport.runtime.events import SpeechEnd, SpeechStart
from stateport.runtime.port_mapping import PortMapping, open_mapped_session
from stateport.runtime.streamer import Streamer
from stateport.runtime.vad import SileroVad, silero_card, silero_model_path, silero_port_mapping

pytest.importorskip("silero_vad", reason="the Silero reference needs the silero-vad package (test extra)")

CLIPS = ["2_jackson_5.wav", "8_yweweler_1.wav", "4_george_9.wav", "6_lucas_3.wav", "9_nicolas_7.wav"]


@pytest.fixture(scope="module")
def audio():
    """Real speech: FSDD digits (8 kHz, resampled to 16 kHz) with 0.7 s of silence around each."""
    return digits_stream(CLIPS, silence_s=0.7)


@pytest.fixture(scope="module")
def silero_reference():
    torch = pytest.importorskip("torch")
    from silero_vad.utils_vad import OnnxWrapper

    torch.set_num_threads(1)
    return OnnxWrapper(str(silero_model_path()), force_onnx_cpu=True)


def reference_probabilities(wrapper, audio: np.ndarray) -> np.ndarray:
    import torch

    wrapper.reset_states()
    padded = np.zeros(-(-audio.shape[0] // 512) * 512, np.float32)
    padded[:audio.shape[0]] = audio
    return np.array([wrapper(torch.from_numpy(w), 16000).item() for w in padded.reshape(-1, 512)], np.float32)


@needs_fsdd
def test_probabilities_match_silero_wrapper(audio, silero_reference):
    ours = SileroVad().probabilities(audio)
    theirs = reference_probabilities(silero_reference, audio)
    assert ours.shape == theirs.shape == (-(-audio.shape[0] // 512),)
    assert np.abs(ours - theirs).max() <= 1e-4  # measured: 0.0 (the same graph, the same inputs)
    # Real speech and real silence are both there, or the comparison would be weak.
    assert (ours > 0.9).sum() > 20 and (ours < 0.1).sum() > 20


@needs_fsdd
def test_speech_segments_match_vad_iterator(audio, silero_reference):
    import torch
    from silero_vad import VADIterator

    params = dict(threshold=0.5, min_silence_duration_ms=100, speech_pad_ms=30)
    iterator = VADIterator(silero_reference, sampling_rate=16000, **params)
    expected = []
    for window in audio[:audio.shape[0] // 512 * 512].reshape(-1, 512):
        out = iterator(torch.from_numpy(window))
        if out:
            expected += [("start", out["start"])] if "start" in out else [("end", out["end"])]
    assert len(expected) >= 2 * len(CLIPS)

    config = EndpointConfig(speech_threshold=0.5, min_silence_duration_ms=100, speech_pad_ms=30)
    vad = SileroVad()
    detector = vad.endpoint_detector(config)
    ours = []
    for window in audio[:audio.shape[0] // 512 * 512].reshape(-1, 512):
        ours += [(d.kind, d.sample_index) for d in detector.accept(vad.probability(window))]
    assert ours == expected

    # Through the whole client loop, read 320 samples at a time: the same boundaries as events.
    streamer = Streamer(tiny_ctc_model(), vad=SileroVad(), endpoint=config, allow_uncertified=True)
    events = []
    for block in reads(audio[:audio.shape[0] // 512 * 512], 320):
        events += streamer.accept_waveform(block, 16000)
    events += streamer.input_finished()
    boundaries = [("start" if isinstance(e, SpeechStart) else "end", e.sample_index)
                  for e in events if isinstance(e, (SpeechStart, SpeechEnd))]
    assert boundaries == expected


def test_vad_reset_and_window_checks():
    vad = SileroVad()
    x = (0.05 * np.random.default_rng(0).standard_normal(512 * 6)).astype(np.float32)
    first = vad.probabilities(x)
    again = vad.probabilities(x)  # probabilities() starts from a fresh state
    assert np.array_equal(first, again)
    vad.reset()
    stepwise = np.array([vad.probability(w) for w in x.reshape(-1, 512)], np.float32)
    assert np.array_equal(stepwise, first)
    with pytest.raises(InvalidInputError, match=r"float samples \[512\]"):
        vad.probability(np.zeros(320, np.float32))
    with pytest.raises(InvalidInputError, match="float samples"):
        vad.probability(np.zeros(512, np.int16))
    with pytest.raises(InvalidInputError, match="Silero VAD runs at"):
        SileroVad(sample_rate_hz=44100)


def test_8khz_vad_uses_256_sample_windows():
    vad = SileroVad(sample_rate_hz=8000)
    assert (vad.window_samples, vad.context_samples) == (256, 32)
    p = vad.probabilities(np.zeros(8000, np.float32))
    assert p.shape == (32,) and np.all((p >= 0) & (p <= 1))


def test_port_mapping_is_checked_against_the_graph():
    path = silero_model_path()
    card = silero_card()
    good = silero_port_mapping()
    session = open_mapped_session(path, card, good)
    assert session.card.input_names == ["audio", "state_in"]
    missing = PortMapping(names={k: v for k, v in good.names.items() if k != "state_out"}, constants=good.constants)
    with pytest.raises(CardError, match="lacks the card port"):
        open_mapped_session(path, card, missing)
    wrong = PortMapping(names={**good.names, "audio": "samples"}, constants=good.constants)
    with pytest.raises(CardError, match="audio->samples"):
        open_mapped_session(path, card, wrong)
    unbound = PortMapping(names=good.names)
    with pytest.raises(CardError, match=r"\['sr'\] are neither mapped"):
        open_mapped_session(path, card, unbound)
    extra = PortMapping(names=good.names, constants={**good.constants, "rate": np.array(1)})
    with pytest.raises(CardError, match="unknown graph inputs"):
        open_mapped_session(path, card, extra)


def test_endpoint_config_validation():
    with pytest.raises(InvalidInputError, match=r"speech_threshold must be in \(0, 1\]"):
        EndpointConfig(speech_threshold=1.5)
    with pytest.raises(InvalidInputError, match="min_silence_duration_ms must be in"):
        EndpointConfig(min_silence_duration_ms=-1)
    with pytest.raises(InvalidInputError, match="max_utterance_duration_ms must be a number"):
        EndpointConfig(max_utterance_duration_ms="long")
    with pytest.raises(InvalidInputError, match="exit_threshold must be in"):
        EndpointConfig(speech_threshold=0.4, exit_threshold=0.6)
    with pytest.raises(InvalidInputError, match="must be an EndpointConfig"):
        EndpointDetector({"speech_threshold": 0.5}, sample_rate_hz=16000, window_samples=512)


def test_endpoint_rules_on_synthetic_probabilities():
    det = EndpointDetector(EndpointConfig(min_silence_duration_ms=64, speech_pad_ms=0,
                                          max_utterance_duration_ms=320),
                           sample_rate_hz=16000, window_samples=512)
    probs = [0.1, 0.9, 0.9, 0.4, 0.2, 0.2, 0.2] + [0.9] * 12
    decisions = [(d.kind, d.sample_index, d.reason) for p in probs for d in det.accept(p)]
    # start at window 1; 0.4 is above the exit threshold (0.35): still speech; silence from
    # window 4 (ends at 2560); 64 ms = 1024 samples later the end is decided; then a new
    # utterance at window 7, cut every 320 ms (5120 samples) while speech goes on.
    assert decisions == [("start", 512, ""), ("end", 2048, "end_of_speech"), ("start", 3584, ""),
                         ("end", 8704, "max_duration"), ("start", 8704, "")]
    assert [(d.kind, d.reason) for d in det.finish()] == [("end", "end_of_input")]


def test_vad_rejects_non_finite_windows_and_keeps_its_state():
    from stateport.errors import NonFiniteInputError

    vad = SileroVad()
    x = (0.05 * np.random.default_rng(1).standard_normal(512 * 4)).astype(np.float32)
    expected = vad.probabilities(x)
    vad.reset()
    got = [vad.probability(x[:512]), vad.probability(x[512:1024])]
    bad = x[1024:1536].copy()
    bad[7] = np.nan
    with pytest.raises(NonFiniteInputError):
        vad.probability(bad)
    got += [vad.probability(x[1024:1536]), vad.probability(x[1536:])]
    assert np.array_equal(np.array(got, np.float32), expected)
