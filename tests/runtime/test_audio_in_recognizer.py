"""The Recognizer runs audio-in files (the frontend inside the graph): no client frontend, the same text.

The audio-in export of the built-in model (tests/conftest.py ``audio_in_builtin``) against the
shipped features-in model, both through ``stateport.Recognizer``, on the shipped clips cut at
their last sample (the end-of-input flush then decides the last word).
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import soundfile as sf

from corpus import FULL_FSDD_DIR, needs_full_fsdd
from stream_helpers import trimmed_clips

from stateport import transcribe_file
from stateport.assets import default_model_path
from stateport.errors import InvalidInputError
from stateport.runtime.features import AudioSamples, receptive_field_tail_ms
from stateport.runtime.model_file import read_card
from stateport.runtime.recognizer import Recognizer, Stream
from stateport.verify.tail import measure_tail_padding, write_tail_padding

TOLERANCE = 1e-4  # the parity proof's, |diff| <= 1e-4 max(1, |ref|)


@pytest.fixture(scope="module")
def recognizers(audio_in_builtin):
    return Recognizer.from_file(audio_in_builtin), Recognizer.builtin()


@pytest.fixture(scope="module")
def clips():
    return [(x, rate) for x, rate, _ in trimmed_clips()]


def output_rows(rec: Recognizer, samples, rate) -> np.ndarray:
    """Every main-output row the recognizer decoded for one recording ``[T_out, V]``, and its result."""
    rows, step = [], Stream._end_step

    def spy(stream, *args):
        y, first = step(stream, *args)  # the rows the step hands to the output decoder
        rows.append(np.array(y, copy=True))
        return y, first

    Stream._end_step = spy
    try:
        result = rec.transcribe(samples, rate)
    finally:
        Stream._end_step = step
    return np.concatenate(rows), result


def test_audio_in_gives_the_features_in_models_tokens_and_times(recognizers, clips):
    audio, features = recognizers
    assert audio.takes_audio and audio.num_features == 1 and audio.tail_padding_ms == features.tail_padding_ms
    worst = 0.0
    for x, rate in clips:
        got, a = output_rows(audio, x, rate)
        ref, f = output_rows(features, x, rate)
        # The flush completes the graph's last model step: as many output steps as the padded last chunk.
        assert got.shape == ref.shape
        worst = max(worst, float((np.abs(got - ref) / np.maximum(1.0, np.abs(ref))).max()))
        assert np.array_equal(got.argmax(-1), ref.argmax(-1))
        assert a.tokens == f.tokens and a.tokens and a.timestamps == f.timestamps
        np.testing.assert_allclose(a.scores, f.scores, atol=TOLERANCE)
    assert worst <= TOLERANCE  # measured 5.6e-6


def test_the_flush_leaves_no_frame_behind(recognizers, clips):
    audio, _ = recognizers
    x, rate = clips[0]
    s = audio.create_stream()
    s.accept_waveform(rate, x)
    s.input_finished()
    while audio.is_ready(s):
        audio.decode_stream(s)
    assert s.is_closed and int(s.state[AudioSamples.FRAME_COUNT][0, 0]) == 0
    tail = int(round(audio.tail_padding_ms * audio.sample_rate_hz / 1000))
    assert tail < s.counters.tail_samples < tail + 8 * 160 + 400  # + the zeros that complete the last step


def test_batched_equals_alone_and_batches_only_streams_in_phase(recognizers, clips):
    """transcribe_many batches streams from their first sample; the staggered run adds a stream per
    step, so streams whose frontends hold different sample counts are ready with chunks of the same
    length: they must run apart (the counts are batch-uniform in the card), or the later stream frames
    its audio at the earlier one's phase (measured: other timestamps, scores off by up to 0.015)."""
    audio, _ = recognizers
    uniform = {st.name for st in audio.card.states if st.batch_uniform}
    assert uniform == {AudioSamples.SAMPLE_COUNT, AudioSamples.FRAME_COUNT}
    alone = [audio.transcribe(x, rate) for x, rate in clips]
    for got, ref in zip(audio.transcribe_many(clips, batch_size=len(clips)), alone):
        assert got.tokens == ref.tokens and got.timestamps == ref.timestamps
        np.testing.assert_allclose(got.scores, ref.scores, atol=1e-5)
    streams = []
    for x, rate in clips:
        s = audio.create_stream()
        s.accept_waveform(rate, x)
        s.input_finished()
        streams.append(s)
    live = []
    for s in streams:
        live.append(s)
        audio.decode_streams(live)
        live = [t for t in live if audio.is_ready(t)]
    while live:
        audio.decode_streams(live)
        live = [t for t in live if audio.is_ready(t)]
    for s, ref in zip(streams, alone):
        got = s.result()
        assert got.tokens == ref.tokens and got.timestamps == ref.timestamps
        np.testing.assert_allclose(got.scores, ref.scores, atol=1e-5)


def test_stream_cli_and_transcribe_file(audio_in_builtin, recognizers, clips, tmp_path, capsys):
    from stateport.cli.main import main

    x, rate = clips[3]
    path = tmp_path / "trimmed.wav"
    sf.write(path, x, rate)
    assert main(["stream", str(path), "--model", audio_in_builtin, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    expected = recognizers[1].transcribe(x, rate)
    assert doc["text"] == expected.text
    assert doc["tail_padding_ms"] == read_card(default_model_path()).streaming.tail_padding_ms
    assert transcribe_file(path, audio_in_builtin).tokens == expected.tokens


def test_vad_endpoints_on_audio_in(recognizers):
    """Two clips a second apart, Silero VAD: two utterances with the features-in model's texts."""
    from stateport.demo import demo_clips

    audio, features = recognizers
    (a, _), (b, _) = demo_clips()[:2]
    xa, rate = sf.read(a, dtype="float32")
    xb, _ = sf.read(b, dtype="float32")
    x = np.concatenate([xa, np.zeros(rate, np.float32), xb])
    got = audio.transcribe(x, rate, vad="silero", read_samples=320)
    ref = features.transcribe(x, rate, vad="silero", read_samples=320)
    assert [u.text for u in got.utterances] == [u.text for u in ref.utterances] and len(got.utterances) == 2
    assert got.timestamps == ref.timestamps
    # The graph's outputs lag its input (its frontend holds samples and frames back), so the second
    # utterance's first output step starts up to one output step before the endpoint's boundary.
    assert 0 <= ref.utterances[1].start_sample - got.utterances[1].start_sample <= audio.card.streaming.subsampling


def test_the_audio_in_card_carries_the_measured_tail(audio_in_builtin, tmp_path):
    card, shipped = read_card(audio_in_builtin), read_card(default_model_path())
    st = card.streaming
    assert st.tail_padding_ms == shipped.streaming.tail_padding_ms and shipped.streaming.tail_padding_ms > 85.0
    assert st.tail_padding_basis.startswith(shipped.streaming.tail_padding_basis)
    assert "the same checkpoint" in st.tail_padding_basis and "in-graph frontend" in st.tail_padding_basis
    # The receptive field (a card without a measured tail) is the features-in model's: the same frames.
    assert receptive_field_tail_ms(card) == receptive_field_tail_ms(shipped) == 85.0
    m = measure_tail_padding(audio_in_builtin, None)
    assert m.method == "receptive-field" and m.tail_padding_ms == 85.0
    copy = tmp_path / "a.onnx"
    copy.write_bytes(open(audio_in_builtin, "rb").read())
    write_tail_padding(copy, m)
    assert read_card(copy).streaming.tail_padding_ms == 85.0 and Recognizer.from_file(copy).tail_padding_ms == 85.0


def test_a_tail_belongs_to_its_weights():
    from stateport.export.sources import measured_tail

    shipped = read_card(default_model_path()).provenance
    weights = {"architecture": shipped.architecture, "checkpoint_sha256": shipped.checkpoint_sha256}
    assert measured_tail(weights)[0] == read_card(default_model_path()).streaming.tail_padding_ms  # the built-in model's tail
    assert measured_tail({"architecture": "lstm-ctc", "checkpoint_sha256": None}) is None
    with pytest.raises(InvalidInputError, match="belongs to the weights"):
        measured_tail({"architecture": "lstm-ctc", "checkpoint_sha256": "0" * 64}, default_model_path())


@needs_full_fsdd
def test_audio_in_emission_delays_equal_the_features_in_ones(recognizers):
    """Why the features-in model's measured tail holds for the audio-in file: on held-out recordings
    (not the 25-49 the shipped value was measured on) the delays are the same, recording by recording
    (benchmarks/end_of_input.py --model AUDIO_IN.onnx measures all 250)."""
    audio, features = recognizers
    recordings = [sf.read(os.path.join(FULL_FSDD_DIR, f"{d}_george_{i}.wav"), dtype="float32")
                  for d in range(10) for i in (5, 20)]
    got = measure_tail_padding(audio, recordings, source="FSDD george 5, 20")
    ref = measure_tail_padding(features, recordings, source="FSDD george 5, 20")
    assert got.delays_ms == ref.delays_ms and got.emitted == 20
    assert got.tail_padding_ms == ref.tail_padding_ms <= features.tail_padding_ms
