"""Recognizer (one model, shared) and Stream (one conversation): many streams on one session, batched
decoding equal to decoding alone, every output kind, results with times and scores, misuse."""

from __future__ import annotations

import numpy as np
import pytest

from stream_helpers import AlwaysSpeech, digits_stream, needs_fsdd, reads, tiny_ctc_model, with_tail

import stateport
from stateport.errors import InvalidInputError, UnsupportedError
from stateport.runtime.endpoint import EndpointConfig
from stateport.runtime.events import FinalText, KeywordSpotted, RawOutput, SpeechEnd, SpeechStart
from stateport.runtime.recognizer import Recognizer, RecognizerOptions, Stream
from stateport.runtime.session import OnnxStepSession

SCORE_TOLERANCE = 1e-4  # the parity proof's bound; batched GEMMs may round differently from batch 1


def noise(seconds: float, seed: int, rate_hz: int = 16000) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * rate_hz))).astype(np.float32)


class CountingSession(OnnxStepSession):
    """Records the batch size of every step the recognizer runs."""

    def run_prepared(self, feeds):
        self.batches = getattr(self, "batches", [])
        self.batches.append(int(feeds[self.card.inputs[0].name].shape[0]))
        return super().run_prepared(feeds)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """Tiny random-weight exports with different state layouts (batch axis 1 for LSTM h/c, 0 for conv
    buffers and attention caches) and output kinds (CTC, classifier)."""
    from stateport.export import export_model

    out = {"lstm-ctc": tiny_ctc_model()}
    for arch in ("quartznet", "conformer", "dscnn-kws"):
        path = str(tmp_path_factory.mktemp("recognizer") / f"{arch}.onnx")
        export_model(path, arch=arch, size="tiny", verify=False)
        out[arch] = path
    return out


def _assert_same_result(got, expected):
    assert got.tokens == expected.tokens and got.text == expected.text
    assert got.timestamps == expected.timestamps
    assert np.allclose(got.scores, expected.scores, atol=SCORE_TOLERANCE, rtol=0)


@pytest.mark.parametrize("arch", ["lstm-ctc", "quartznet", "conformer", "dscnn-kws"])
def test_decode_streams_equals_each_stream_alone_over_ragged_reads(arch, tiny_models):
    """Streams at different positions, with different read sizes, one reset midway, some finishing
    early: each stream's result equals the same audio decoded alone, and steps really were batched."""
    session = CountingSession(tiny_models[arch], allow_uncertified=True)
    # A keyword threshold a random-weight classifier reaches (CTC models ignore it).
    options = RecognizerOptions(keyword_threshold=0.05, keyword_smoothing_frames=1)
    rec = Recognizer(session, options=options)
    rng = np.random.default_rng(0)
    audios = [noise(float(rng.uniform(0.4, 3.0)), seed=10 + k) for k in range(6)]
    read_sizes = [int(rng.integers(40, 2500)) for _ in audios]
    streams = [rec.create_stream() for _ in audios]
    fed = [0] * len(audios)
    reset_done = False
    rounds = 0
    while any(not s.is_closed for s in streams):
        rounds += 1
        for k, s in enumerate(streams):
            if s.is_finished:
                continue
            if k == 2 and not reset_done and fed[k] > audios[k].shape[0] // 2:
                s.reset()  # a new conversation on the same stream: the audio starts over
                fed[k], reset_done = 0, True
            chunk = audios[k][fed[k]:fed[k] + read_sizes[k]]
            fed[k] += chunk.shape[0]
            if chunk.shape[0]:
                s.accept_waveform(16000, chunk)
            if fed[k] >= audios[k].shape[0] or (k == 4 and rounds == 3):
                s.input_finished()  # stream 4 ends early, on whatever it heard by then
        while any(rec.is_ready(s) for s in streams):
            rec.decode_streams(streams)  # closed and not-ready streams in the list are skipped
    assert reset_done and max(session.batches) >= 3, session.batches
    for k, s in enumerate(streams):
        heard = audios[k][:fed[k]]
        alone = Recognizer(OnnxStepSession(tiny_models[arch], allow_uncertified=True), options=options)
        expected = alone.transcribe(heard, 16000)
        _assert_same_result(rec.get_result(s), expected)
    assert any(rec.get_result(s).tokens for s in streams), "results with no tokens would prove nothing"


def test_many_streams_share_one_session_and_creating_one_is_cheap():
    import time

    rec = Recognizer.from_file(tiny_ctc_model(), allow_uncertified=True)
    t0 = time.perf_counter()
    streams = [rec.create_stream() for _ in range(200)]
    per_stream_s = (time.perf_counter() - t0) / 200
    assert per_stream_s < 0.01  # generous: the benchmark measures it (a few microseconds)
    assert all(s.recognizer is rec for s in streams)
    assert len({id(rec.session)}) == 1
    a, b = streams[:2]
    a.accept_waveform(16000, noise(1.0, seed=1))
    assert b.counters.samples_in == 0  # streams share nothing but the model


def test_a_live_stream_holds_two_seconds_of_audio_and_a_whole_file_still_fits():
    """Measured before: every stream allocated a 30 s ring (1.9 MB) and, keeping up, cycled through all of
    it: 1.9 MB of RSS per live stream, against 195 KB now (100 streams, 32 s each)."""
    import tracemalloc

    rec = Recognizer.from_file(tiny_ctc_model(), allow_uncertified=True)
    audio = noise(40.0, seed=3)
    alone = rec.transcribe(audio, 16000)
    tracemalloc.start()
    try:
        s = rec.create_stream()
        for a in range(0, audio.shape[0], 320):
            s.accept_waveform(16000, audio[a:a + 320])
            while rec.is_ready(s):
                rec.decode_stream(s)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 400_000  # the ring (2 s: 128 KB) and a step's buffers; a 30 s ring alone is 1.92 MB
    s.input_finished()
    while rec.is_ready(s):
        rec.decode_stream(s)
    assert s.backlog_samples == 0 and rec.get_result(s).tokens == alone.tokens
    whole = rec.create_stream()  # 40 s in one read: the ring grows ("grow"), nothing is lost
    whole.accept_waveform(16000, audio)
    assert whole.backlog_samples == audio.shape[0]
    whole.input_finished()
    while rec.is_ready(whole):
        rec.decode_stream(whole)
    assert rec.get_result(whole).tokens == alone.tokens


def test_transcribe_many_equals_transcribe_and_read_size_does_not_matter():
    rec = Recognizer.from_file(tiny_ctc_model(), allow_uncertified=True)
    recordings = [(noise(0.3 + 0.37 * k, seed=20 + k), 16000) for k in range(5)]
    batched = rec.transcribe_many(recordings, batch_size=3)
    for (audio, rate), got in zip(recordings, batched):
        _assert_same_result(got, rec.transcribe(audio, rate))
        _assert_same_result(rec.transcribe(audio, rate, read_samples=320), got)


def test_result_has_token_strings_times_and_scores():
    rec = Recognizer.from_file(tiny_ctc_model(), allow_uncertified=True)
    r = rec.transcribe(noise(2.0, seed=3), 16000)
    assert len(r.tokens) > 3
    assert len(r.token_texts) == len(r.timestamps) == len(r.scores) == len(r.tokens)
    assert r.text == " ".join(r.token_texts)
    assert list(r.timestamps) == sorted(r.timestamps) and 0 <= r.timestamps[0] and r.timestamps[-1] <= 2.1
    assert all(s <= 0 for s in r.scores)  # log-probabilities
    assert r.utterances and r.utterances[-1].reason == "end_of_input" and r.partial == ""


def test_the_flush_is_exactly_trailing_silence():
    """input_finished() feeds the tail padding as audio: a recording streamed and flushed equals the same
    recording with that much digital silence appended and no flush, token for token and score for score."""
    model = tiny_ctc_model()
    rec = Recognizer.from_file(model, allow_uncertified=True, tail_padding_ms=250)
    plain = Recognizer.from_file(model, allow_uncertified=True, tail_padding_ms=0)
    audio = noise(1.3, seed=4)
    flushed = rec.transcribe(audio, 16000)
    appended = plain.transcribe(np.concatenate([audio, np.zeros(4000, np.float32)]), 16000)
    _assert_same_result(flushed, appended)
    assert rec.tail_padding_basis == "set by the caller"
    default = Recognizer.from_file(model, allow_uncertified=True)
    assert default.tail_padding_ms == 15.0  # no tail in this card: the receptive field (window - hop)
    assert "receptive field" in default.tail_padding_basis
    _assert_same_result(default.transcribe(audio, 16000), plain.transcribe(with_tail(model, audio), 16000))


def test_a_stream_that_heard_nothing_gets_no_flush():
    rec = Recognizer.from_file(tiny_ctc_model(), allow_uncertified=True, tail_padding_ms=500)
    s = rec.create_stream()
    s.input_finished()
    while rec.is_ready(s):
        rec.decode_stream(s)
    assert s.is_closed and s.counters.steps == 0 and s.counters.tail_samples == 0
    assert rec.get_result(s).text == "" and len(rec.get_result(s).utterances) == 1


def test_endpoint_reset_clears_only_the_states_the_card_marks():
    """A card whose cell state is kept across endpoints: after a VAD cut, h starts again from its init,
    c carries on."""
    from stateport.runtime.model_file import read_card

    card = read_card(tiny_ctc_model())
    card.state("encoder_c_in").reset_on_end_of_speech = False

    class Spy(OnnxStepSession):
        fed: list

        def run_prepared(self, feeds):
            self.fed = getattr(self, "fed", [])
            self.fed.append({k: v.copy() for k, v in feeds.items() if k.endswith("_in")})
            return super().run_prepared(feeds)

    session = Spy(tiny_ctc_model(), card=card, allow_uncertified=True)
    rec = Recognizer(session)
    s = rec.create_stream(vad=AlwaysSpeech(), endpoint=EndpointConfig(max_utterance_duration_ms=640))
    events = []
    for block in reads(noise(2.0, seed=5), 320):
        s.accept_waveform(16000, block)
        while rec.is_ready(s):
            events += rec.decode_stream(s)
    cuts = [e for e in events if isinstance(e, FinalText) and e.reason == "max_duration"]
    assert cuts and s.counters.resets >= 1
    # The step right after the first cut: h fed as its init (zeros), c not.
    after = next(k for k, fed in enumerate(session.fed) if k and not fed["encoder_h_in"].any())
    assert session.fed[after]["encoder_c_in"].any()


def test_vad_silero_streams_share_the_vad_session():
    pytest.importorskip("silero_vad", reason="silero-vad is not installed")
    rec = Recognizer.from_file(tiny_ctc_model(), allow_uncertified=True)
    a, b = rec.create_stream(vad="silero"), rec.create_stream(vad="silero")
    assert a._gate.vad is not b._gate.vad and a._gate.vad.session is b._gate.vad.session


@needs_fsdd
def test_vad_endpoints_through_recognizer_equal_the_streamer():
    from stateport.runtime.streamer import Streamer

    pytest.importorskip("silero_vad", reason="silero-vad is not installed")
    model = tiny_ctc_model()
    audio = digits_stream(["3_jackson_0.wav", "7_nicolas_1.wav"], silence_s=0.8)
    rec = Recognizer.from_file(model, allow_uncertified=True)
    r = rec.transcribe(audio, 16000, vad="silero", endpoint=EndpointConfig(min_silence_duration_ms=300))
    streamer = Streamer(model, vad="silero", endpoint=EndpointConfig(min_silence_duration_ms=300),
                        allow_uncertified=True)
    list(streamer.events(reads(audio, 320), 16000))
    assert [u.reason for u in r.utterances][:2] == ["end_of_speech"] * 2
    assert r.utterances == streamer.result().utterances


def test_classifier_raw_and_vad_output_kinds():
    from stateport.runtime.model_file import read_card

    class Scripted:
        """The tiny model's card with another output kind; the graph is replaced by a script."""

        def __init__(self, kind: str, width: int):
            self.card = read_card(tiny_ctc_model())
            self.card.output.kind = kind
            self.card.outputs[0].shape = ["batch", "T", width]
            if kind != "ctc":
                self.card.output.blank_id = None
            self.frame = 0
            self.width = width

        def run_prepared(self, feeds):
            x = feeds["features"]
            y = np.zeros((x.shape[0], x.shape[1], self.width), np.float32)
            for k in range(x.shape[1]):
                y[:, k, 0] = 1.0 if 50 <= self.frame + k < 150 else 0.0  # "speech" on frames 50..149
            self.frame += x.shape[1]
            return [y] + [feeds[s.name] for s in self.card.states]

    vad = Recognizer(Scripted("vad", 1))
    s = vad.create_stream(endpoint=EndpointConfig(min_silence_duration_ms=200, speech_pad_ms=0))
    s.accept_waveform(16000, noise(3.0, seed=6))
    s.input_finished()
    events = [e for _ in iter(lambda: vad.is_ready(s), False) for e in vad.decode_stream(s)]
    starts = [e.sample_index for e in events if isinstance(e, SpeechStart)]
    ends = [e.sample_index for e in events if isinstance(e, SpeechEnd)]
    assert starts == [50 * 160] and ends == [150 * 160]  # Silero's rules, one frame = one window

    raw = Recognizer(Scripted("raw", 11))
    s = raw.create_stream()
    s.accept_waveform(16000, noise(0.5, seed=7))
    s.input_finished()
    outs = [e for _ in iter(lambda: raw.is_ready(s), False) for e in raw.decode_stream(s)]
    assert all(isinstance(e, (RawOutput, FinalText)) for e in outs)
    assert sum(e.outputs["logits"].shape[1] for e in outs if isinstance(e, RawOutput)) == s.counters.frames

    with pytest.raises(Exception, match="one speech probability per frame"):
        Recognizer(Scripted("vad", 3))


def test_keyword_model_spots_through_decode_streams(tiny_models):
    rec = Recognizer.from_file(tiny_models["dscnn-kws"], allow_uncertified=True,
                               options=RecognizerOptions(keyword_threshold=0.05, keyword_smoothing_frames=1))
    streams = [rec.create_stream() for _ in range(3)]
    for k, s in enumerate(streams):
        s.accept_waveform(16000, noise(1.5, seed=30 + k))
        s.input_finished()
    events = [[] for _ in streams]
    while any(rec.is_ready(s) for s in streams):
        for k, e in enumerate(rec.decode_streams(streams)):
            events[k] += e
    with pytest.raises(UnsupportedError, match="beam' needs a CTC"):
        Recognizer(rec.session, decoder="beam")
    hits = [[e for e in ev if isinstance(e, KeywordSpotted)] for ev in events]
    assert any(hits)
    for s, h in zip(streams, hits):
        assert rec.get_result(s).tokens == tuple(e.class_id for e in h)


def test_transducer_directory_streams_and_batches(tmp_path, capsys):
    """``stateport export --arch rnnt -o DIR``: the recognizer opens the directory; each stream's transcript
    equals the offline greedy transcript of the same features (audio + flush), batched or alone."""
    from stateport.export import export_model
    from stateport.runtime.frontend import FrontendConfig, compute_features
    from stateport.runtime.transducer import TransducerGraphs, transcribe

    out = tmp_path / "rnnt"
    export_model(out, arch="rnnt", size="tiny", verify=False)
    with pytest.raises(Exception, match="no parity certificate"):
        Recognizer.from_file(out)
    rec = Recognizer.from_file(out, allow_uncertified=True)
    graphs = TransducerGraphs.from_directory(out, allow_uncertified=True)
    config = FrontendConfig.from_dict(rec.card.frontend)
    audios = [noise(1.0 + 0.6 * k, seed=40 + k) for k in range(3)]
    batched = rec.transcribe_many([(a, 16000) for a in audios])
    for audio, got in zip(audios, batched):
        feats = compute_features(with_tail(str(out), audio), config)
        if feats.shape[0] % 2:  # the last stack of the encoder's 2 frames is completed with a silence frame
            feats = np.concatenate([feats, compute_features(np.zeros(400, np.float32), config)])
        offline = transcribe(graphs, feats)
        assert got.tokens == offline.token_ids and got == rec.transcribe(audio, 16000)
    assert sum(len(r.tokens) for r in batched) > 3

    # The CLI takes the directory as a model too; inspect shows each graph's card and verdict.
    import json

    import soundfile as sf

    from stateport.cli.main import main

    wav = tmp_path / "a.wav"
    sf.write(wav, audios[1], 16000)
    assert main(["stream", str(wav), "--model", str(out), "--allow-uncertified", "--json"]) == 0
    assert tuple(json.loads(capsys.readouterr().out)["tokens"]) == batched[1].tokens
    assert main(["inspect", str(out), "--json"]) == 0
    graphs = json.loads(capsys.readouterr().out)["graphs"]
    assert list(graphs) == ["encoder", "predictor", "joiner"]
    assert all(g["trust"]["card_matches_graph"] and g["trust"]["certificate"] == "absent" for g in graphs.values())


def test_misuse_gives_typed_errors():
    rec = Recognizer.from_file(tiny_ctc_model(), allow_uncertified=True)
    other = Recognizer.from_file(tiny_ctc_model(), allow_uncertified=True)
    s = rec.create_stream()
    with pytest.raises(InvalidInputError, match="sample rate comes first"):
        s.accept_waveform(noise(0.1, seed=0), 16000)
    with pytest.raises(InvalidInputError, match="another recognizer"):
        other.decode_stream(s)
    with pytest.raises(InvalidInputError, match="appears twice"):
        rec.decode_streams([s, s])
    with pytest.raises(InvalidInputError, match="takes a list"):
        rec.decode_streams(s)
    with pytest.raises(InvalidInputError, match="expected a Stream"):
        rec.is_ready("stream")
    with pytest.raises(InvalidInputError, match="decoder must be one of"):
        Recognizer(rec.session, decoder="viterbi")
    with pytest.raises(InvalidInputError, match="tail_padding_ms"):
        Recognizer.from_file(tiny_ctc_model(), allow_uncertified=True, tail_padding_ms=-1)
    s.input_finished()
    with pytest.raises(InvalidInputError, match="after input_finished"):
        s.accept_waveform(16000, noise(0.1, seed=0))
    assert isinstance(s, Stream)


def test_top_level_api_and_transcribe_file(tmp_path):
    import soundfile as sf

    from stateport.demo import demo_clips

    path, reference = demo_clips()[3]
    assert stateport.transcribe_file(path).text == reference
    rec = stateport.Recognizer.builtin()
    assert rec.trust.certified and rec.tail_padding_ms >= 300
    x, rate = sf.read(path, dtype="float32")
    stereo = tmp_path / "stereo_44k.wav"
    from stateport.runtime.resample import resample

    sf.write(stereo, np.stack([resample(x, rate, 44100)] * 2, axis=1), 44100)
    assert stateport.transcribe_file(stereo, rec).text == reference
