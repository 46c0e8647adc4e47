"""The client loop: streaming == offline, resampling, channel mixing, input errors, endpoint resets."""

from __future__ import annotations

import numpy as np
import pytest

from stream_helpers import AlwaysSpeech, digits_stream, needs_fsdd, reads, tail_samples, tiny_ctc_model, with_tail

from stateport.errors import (BufferOverflowError, InvalidInputError, NonFiniteInputError, UnsupportedError)
from stateport.runtime.decoders import CtcGreedyDecoder
from stateport.runtime.endpoint import EndpointConfig
from stateport.runtime.events import FinalText, PartialText, SpeechEnd, SpeechStart
from stateport.runtime.frontend import FrontendConfig, compute_features
from stateport.runtime.resample import StreamingResampler, resample
from stateport.runtime.session import OnnxStepSession
from stateport.runtime.streamer import Streamer, StreamerOptions

CLIPS = ["3_jackson_0.wav", "7_nicolas_1.wav", "0_lucas_2.wav", "5_george_3.wav"]


def offline_tokens(model_path: str, audio: np.ndarray, *, flush: bool = True) -> tuple[int, ...]:
    """Features of the whole signal (followed by the runtime's end-of-input flush), one session.run
    with no state, greedy CTC."""
    session = OnnxStepSession(model_path, allow_uncertified=True)
    audio = with_tail(model_path, audio) if flush else audio
    feats = compute_features(audio, FrontendConfig.from_dict(session.card.frontend))
    logits = session.offline(feats[None])[session.card.output.port][0]
    decoder = CtcGreedyDecoder(session.card.output.blank_id, session.card.output.vocabulary)
    decoder.accept(logits)
    return decoder.result().token_ids


def stream_tokens(model, audio, read_samples: int, rate_hz: int = 16000, **kw) -> tuple[tuple[int, ...], list]:
    streamer = Streamer(model, **kw, allow_uncertified=True)
    events = []
    for block in reads(audio, read_samples):
        events += streamer.accept_waveform(block, rate_hz)
    events += streamer.input_finished()
    return streamer.result().tokens, events


def noise(seconds: float, rate_hz: int = 16000, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * rate_hz))).astype(np.float32)


@needs_fsdd
def test_streaming_320_sample_reads_equal_offline_token_for_token():
    model = tiny_ctc_model()
    audio = digits_stream(CLIPS[:3], silence_s=0.3)
    expected = offline_tokens(model, audio)
    tokens, events = stream_tokens(model, audio, 320)
    assert len(expected) >= 3, "a test with no tokens would prove nothing"
    assert tokens == expected
    finals = [e for e in events if isinstance(e, FinalText)]
    assert len(finals) == 1 and finals[0].tokens == expected
    assert finals[0].start_sample == 0 and finals[0].end_sample == audio.shape[0]
    # Partials grow by appending only.
    partials = [e.tokens for e in events if isinstance(e, PartialText)]
    assert all(b[:len(a)] == a for a, b in zip(partials, partials[1:])) and partials[-1] == expected


def test_ragged_reads_and_low_level_loop_equal_offline():
    model = tiny_ctc_model()
    audio = noise(2.03)  # not a whole number of steps: the last chunk is shorter
    expected = offline_tokens(model, audio)
    rng = np.random.default_rng(1)
    streamer = Streamer(model, allow_uncertified=True)
    start = 0
    while start < audio.shape[0]:
        size = int(rng.integers(1, 900))
        streamer.accept_waveform(audio[start:start + size], 16000, decode=False)
        start += size
        while streamer.is_ready():
            streamer.decode_step()
    streamer.input_finished(decode=False)
    while streamer.is_ready():
        streamer.decode_step()
    assert streamer.result().tokens == expected and len(expected) > 0
    heard = audio.shape[0] + tail_samples(model)
    assert streamer.counters.tail_samples == tail_samples(model) > 0
    assert streamer.counters.frames == FrontendConfig.from_dict(streamer.card.frontend).num_frames(heard)
    assert streamer.counters.padded_frames == 0  # a dynamic model takes the shorter last chunk as it is


def test_events_generator_equals_accept_calls():
    model = tiny_ctc_model()
    audio = noise(1.0, seed=3)
    tokens, events = stream_tokens(model, audio, 320)
    streamer = Streamer(model, allow_uncertified=True)
    assert list(streamer.events(reads(audio, 320), 16000)) == events


def test_stereo_duplicate_equals_mono_exactly_and_channels_average():
    model = tiny_ctc_model()
    audio = noise(1.5, seed=4)
    mono, _ = stream_tokens(model, audio, 320)
    stereo, _ = stream_tokens(model, np.stack([audio, audio], axis=1), 320)
    assert stereo == mono and len(mono) > 0
    # [N, C] is averaged over C: (x + 3x) / 2 == 2x.
    doubled, _ = stream_tokens(model, 2 * audio, 320)
    mixed, _ = stream_tokens(model, np.stack([audio, 3 * audio], axis=1), 320)
    assert mixed == doubled


@pytest.mark.parametrize("in_rate_hz,out_rate_hz", [(44100, 16000), (8000, 16000), (48000, 16000), (22050, 8000)])
def test_chunked_resampling_equals_one_shot(in_rate_hz, out_rate_hz):
    x = noise(1.3, in_rate_hz, seed=5)
    one_shot = resample(x, in_rate_hz, out_rate_hz)
    rs = StreamingResampler(in_rate_hz, out_rate_hz)
    rng = np.random.default_rng(6)
    pieces, start = [], 0
    while start < x.shape[0]:
        size = int(rng.integers(1, 2000))
        pieces.append(rs.process(x[start:start + size]))
        start += size
    pieces.append(rs.flush())
    chunked = np.concatenate(pieces)
    assert chunked.shape == one_shot.shape
    assert np.abs(chunked - one_shot).max() <= 1e-6  # measured: 0.0 with soxr 1.1 HQ


def test_resampled_input_runs_and_matches_offline_on_the_resampled_signal():
    model = tiny_ctc_model()
    audio_44k = noise(1.2, 44100, seed=7)
    tokens, _ = stream_tokens(model, audio_44k, 882, rate_hz=44100)
    # The stream resamples in chunks; offline resamples once: equal signals, equal tokens.
    assert tokens == offline_tokens(model, resample(audio_44k, 44100, 16000))


@pytest.mark.parametrize("bad,error,match", [
    (np.zeros(0, np.float32), InvalidInputError, "empty"),
    (np.array([0.0, np.nan], np.float32), NonFiniteInputError, "NaN or Inf"),
    (np.array([0.0, np.inf], np.float32), NonFiniteInputError, "first at sample 1"),
    (np.zeros(100, np.int16), InvalidInputError, "divide by 32768"),
    (np.zeros((2, 3, 4), np.float32), InvalidInputError, r"\[N\] or \[N, C\]"),
    (np.zeros((2, 16000), np.float32), InvalidInputError, "channels last"),
    (np.zeros((100, 0), np.float32), InvalidInputError, "at least one channel"),
    ("audio", InvalidInputError, "numpy array"),
])
def test_unusable_audio_gives_typed_errors(bad, error, match):
    streamer = Streamer(tiny_ctc_model(), allow_uncertified=True)
    with pytest.raises(error, match=match):
        streamer.accept_waveform(bad, 16000)
    assert streamer.counters.samples_in == 0


@pytest.mark.parametrize("rate", [0, -16000, 16000.5, True, "16000", float("nan")])
def test_bad_sample_rate(rate):
    with pytest.raises(InvalidInputError, match="sample_rate_hz must be a positive integer"):
        Streamer(tiny_ctc_model(), allow_uncertified=True).accept_waveform(np.zeros(160, np.float32), rate)


def test_stream_misuse_errors():
    streamer = Streamer(tiny_ctc_model(), allow_uncertified=True)
    streamer.accept_waveform(np.zeros(160, np.float32), 16000)
    with pytest.raises(InvalidInputError, match="changed from 16000 to 8000"):
        streamer.accept_waveform(np.zeros(160, np.float32), 8000)
    streamer.input_finished()
    with pytest.raises(InvalidInputError, match="after input_finished"):
        streamer.accept_waveform(np.zeros(160, np.float32), 16000)
    streamer.reset()
    streamer.accept_waveform(np.zeros(160, np.float32), 8000)  # a new stream may use another rate
    with pytest.raises(UnsupportedError, match="computes its features from audio"):
        Streamer(tiny_ctc_model(), allow_uncertified=True).accept_features(np.zeros((4, 80), np.float32))
    with pytest.raises(InvalidInputError, match="decoder must be one of"):
        Streamer(tiny_ctc_model(), decoder="viterbi", allow_uncertified=True)
    small = Streamer(tiny_ctc_model(), options=StreamerOptions(buffer_seconds=0.1), allow_uncertified=True)
    with pytest.raises(BufferOverflowError):
        small.accept_waveform(np.zeros(3200, np.float32), 16000, decode=False)
    # decode=True pushes in pieces that fit.
    small.reset()
    small.accept_waveform(np.zeros(16000, np.float32), 16000)
    assert small.counters.frames > 90


def test_feature_input_card_without_frontend(tmp_path):
    import onnx

    from stateport.runtime.model_file import read_card, write_card

    card = read_card(tiny_ctc_model())
    card.frontend = None
    model = onnx.load(tiny_ctc_model())
    write_card(model, card)
    path = str(tmp_path / "features_only.onnx")
    onnx.save(model, path)
    feats = compute_features(noise(1.0, seed=8), FrontendConfig())
    streamer = Streamer(path, allow_uncertified=True)
    for a in range(0, feats.shape[0], 7):
        streamer.accept_features(feats[a:a + 7])
    events = streamer.input_finished()
    expected = offline_tokens(tiny_ctc_model(), noise(1.0, seed=8), flush=False)  # no audio: no flush
    assert streamer.result().tokens == expected and isinstance(events[-1], FinalText)
    with pytest.raises(UnsupportedError, match="use accept_features"):
        streamer.accept_waveform(np.zeros(10, np.float32), 16000)
    with pytest.raises(UnsupportedError, match="VAD needs audio"):
        Streamer(path, vad=object(), allow_uncertified=True)
    with pytest.raises(InvalidInputError, match=r"float \[T, 80\]"):
        Streamer(path, allow_uncertified=True).accept_features(np.zeros((3, 40), np.float32))


def test_static_model_pads_the_last_chunk_with_silence_frames():
    static = tiny_ctc_model(static=True)
    audio = noise(1.05, seed=9)  # with the 15 ms flush, 105 frames: 6 full chunks of 16 and 9 left over
    streamer = Streamer(static, allow_uncertified=True)
    for block in reads(audio, 320):
        streamer.accept_waveform(block, 16000)
    streamer.input_finished()
    assert streamer.counters.padded_frames == 16 - 105 % 16
    # Same weights, dynamic export: offline over the same frames plus the same silence frames.
    config = FrontendConfig()
    feats = compute_features(with_tail(static, audio), config)
    assert feats.shape[0] == 105
    silence = compute_features(np.zeros(config.frame_length_samples, np.float32), config)[0]
    padded = np.concatenate([feats, np.repeat(silence[None], 16 - 105 % 16, axis=0)])
    session = OnnxStepSession(tiny_ctc_model(), allow_uncertified=True)
    logits = session.offline(padded[None])["logits"][0][:feats.shape[0]]  # outputs of padding dropped
    decoder = CtcGreedyDecoder(0, session.card.output.vocabulary)
    decoder.accept(logits)
    assert streamer.result().tokens == decoder.result().token_ids


def test_beam_decoder_finalizes_with_prefix_beam_search():
    model = tiny_ctc_model()
    audio = noise(1.5, seed=10)
    greedy, _ = stream_tokens(model, audio, 320)
    beam_tokens, events = stream_tokens(model, audio, 320, decoder="beam")
    final = [e for e in events if isinstance(e, FinalText)][0]
    assert final.tokens == beam_tokens and all(0 < t < 11 for t in beam_tokens)
    # Partials stay greedy.
    assert [e for e in events if isinstance(e, PartialText)][-1].tokens == greedy


@needs_fsdd
def test_endpoint_reset_equals_fresh_state_and_never_deletes_words():
    """Several utterances with silence between: each FinalText equals that stretch run alone from a fresh state."""
    from stateport.runtime.vad import SileroVad

    pytest.importorskip("soxr")
    model = tiny_ctc_model()
    audio = digits_stream(CLIPS, silence_s=1.0)
    streamer = Streamer(model, vad=SileroVad(), endpoint=EndpointConfig(min_silence_duration_ms=300),
                        allow_uncertified=True)
    events = []
    for block in reads(audio, 320):
        events += streamer.accept_waveform(block, 16000)
    events += streamer.input_finished()

    finals = [e for e in events if isinstance(e, FinalText)]
    assert streamer.counters.resets == len(CLIPS) == len([e for e in events if isinstance(e, SpeechEnd)])
    assert len([e for e in events if isinstance(e, SpeechStart)]) == len(CLIPS)
    assert [f.reason for f in finals[:len(CLIPS)]] == ["end_of_speech"] * len(CLIPS)
    # Utterances tile the stream.
    assert finals[0].start_sample == 0
    assert all(a.end_sample == b.start_sample for a, b in zip(finals, finals[1:]))

    # A reset never deletes words: every partial is a prefix of the FinalText that closes it,
    # and the finals together hold every token the stream produced.
    current: tuple = ()
    for e in events:
        if isinstance(e, PartialText):
            current = e.tokens
        elif isinstance(e, FinalText):
            assert e.tokens[:len(current)] == current
            current = ()
    assert sum((f.tokens for f in finals), ()) == streamer.result().tokens

    # Each utterance alone, from a fresh state: the samples of its frames (a reset falls on a
    # frame boundary; the last frame's window reaches frame_length - hop samples further).
    tail = FrontendConfig().frame_length_samples - FrontendConfig().frame_shift_samples
    checked = 0
    for final in finals:
        end = final.end_sample + (tail if final.reason != "end_of_input" else 0)
        alone, _ = stream_tokens(model, audio[final.start_sample:end], 320)
        assert alone == final.tokens, (final, alone)
        checked += bool(alone)
    assert checked >= 3


@needs_fsdd
def test_endpoint_reset_is_independent_of_read_size():
    from stateport.runtime.vad import SileroVad

    model = tiny_ctc_model()
    audio = digits_stream(CLIPS[:3], silence_s=0.8)
    results = []
    for read in (160, 320, 4000, 48000):
        _, events = stream_tokens(model, audio, read, vad=SileroVad(),
                                  endpoint=EndpointConfig(min_silence_duration_ms=300))
        results.append([(f.tokens, f.start_sample, f.end_sample) for f in events if isinstance(f, FinalText)])
    assert all(r == results[0] for r in results[1:]) and len(results[0]) >= 3


def test_max_utterance_duration_cuts_and_resets():
    streamer = Streamer(tiny_ctc_model(), vad=AlwaysSpeech(),
                        endpoint=EndpointConfig(max_utterance_duration_ms=1000), allow_uncertified=True)
    events = list(streamer.events(reads(noise(3.5, seed=11), 320), 16000))
    finals = [e for e in events if isinstance(e, FinalText)]
    assert [f.reason for f in finals] == ["max_duration"] * 3 + ["end_of_input"]
    assert streamer.counters.resets == 4  # three cuts and the end of speech at the end of input
    assert sum((f.tokens for f in finals), ()) == streamer.result().tokens


def test_drop_backlog_keeps_absolute_indices():
    streamer = Streamer(tiny_ctc_model(), allow_uncertified=True)
    audio = noise(2.0, seed=12)
    streamer.accept_waveform(audio, 16000, decode=False)
    assert streamer.backlog_samples == audio.shape[0]
    dropped = streamer.drop_backlog(8000)
    assert dropped == audio.shape[0] - 8000
    events = streamer.input_finished()
    final = [e for e in events if isinstance(e, FinalText)][-1]
    assert streamer.counters.dropped_samples == dropped
    assert final.end_sample == audio.shape[0]  # dropped audio keeps its place in the timeline
    # Only the kept half-second was processed.
    assert streamer.counters.frames == FrontendConfig().num_frames(8000 + tail_samples(tiny_ctc_model()))


def test_switch_model_carries_state_between_identical_state_ports():
    model = tiny_ctc_model()
    audio = noise(2.0, seed=13)
    reference, _ = stream_tokens(model, audio, 320)
    streamer = Streamer(model, allow_uncertified=True)
    half = audio.shape[0] // 2
    for block in reads(audio[:half], 320):
        streamer.accept_waveform(block, 16000)
    assert streamer.switch_model(OnnxStepSession(model, allow_uncertified=True)) is True
    for block in reads(audio[half:], 320):
        streamer.accept_waveform(block, 16000)
    streamer.input_finished()
    assert streamer.result().tokens == reference and streamer.counters.model_switches == 1


class _ScriptedClassifier:
    """A duck-typed session: the tiny model's card turned classifier, whose logits favour
    class ``keyword`` on frames [40, 70) and the background elsewhere."""

    def __init__(self, keyword: int):
        from stateport.runtime.model_file import read_card

        self.card = read_card(tiny_ctc_model())
        self.card.output.kind = "classifier"
        self.card.output.vocabulary = ["_background_", "_unknown_", *[f"kw{i}" for i in range(9)]]
        self.card.output.blank_id = None
        self.keyword, self.frame, self.state = keyword, 0, None

    def run_prepared(self, feeds):
        frames = feeds["features"].shape[1]
        logits = np.zeros((1, frames, 11), np.float32)
        for k in range(frames):
            hot = self.keyword if 40 <= self.frame + k < 70 else 0
            logits[0, k, hot] = 8.0
        self.frame += frames
        return [logits] + [feeds[s.name] for s in self.card.states]


def test_classifier_card_drives_the_keyword_spotter():
    streamer = Streamer(_ScriptedClassifier(keyword=5),
                        options=StreamerOptions(keyword_threshold=0.5, keyword_smoothing_frames=3))
    events = list(streamer.events(reads(noise(1.2, seed=14), 320), 16000))
    hits = [e for e in events if type(e).__name__ == "KeywordSpotted"]
    assert [(h.keyword, h.class_id) for h in hits] == [("kw3", 5)]  # once per occurrence; background never
    # Logits were turned into posteriors; with 3-frame smoothing the score crosses 0.5 on frame 41.
    assert hits[0].sample_index == 41 * 160 and 0.5 <= hits[0].score <= 1.0
    final = [e for e in events if isinstance(e, FinalText)][-1]
    assert final.text == "kw3" and final.tokens == (5,)
