"""Connected-speech training data: overlaps, flush-ended utterances, repeats, fillers, negatives, spans in pools."""

import dataclasses

import numpy as np
import pytest
import torch

from stateport.errors import InvalidInputError
from stateport.train.augment import NO_AUGMENTATION, AugmentConfig
from stateport.train.data import (
    ClipSource,
    ComposeConfig,
    NegativeSource,
    Piece,
    SpokenString,
    StringSource,
    compose_utterance,
    make_batch,
    make_utterance,
    place_pieces,
)
from stateport.train.trainer import restricted_ctc_loss

from test_data import _fake_clips

SR = 16_000


def test_negative_gaps_overlap_clips_with_an_equal_power_cross_fade():
    a = Piece(np.ones(1000, np.float32), np.array([1]), np.array([[0, 1000]]))
    b = Piece(np.ones(900, np.float32), np.array([2]), np.array([[0, 900]]))
    wave, tokens, spans = place_pieces([a, b], np.ones(2, np.float32), lead=0, gaps=[-200], trail=50)
    assert tokens.tolist() == [1, 2] and spans.tolist() == [[0, 1000], [800, 1700]]
    assert wave.shape == (1750,) and not wave[1700:].any()
    overlap = wave[800:1000]
    # sin/cos ramps: each side's gain squared sums to one, so the sum of two equal signals peaks at sqrt(2)
    assert np.all(overlap >= 1.0 - 1e-6) and np.isclose(overlap.max(), np.sqrt(2.0), atol=0.01)
    np.testing.assert_array_equal(wave[:800], 1.0)
    # an overlap never exceeds a third of the shorter piece
    _, _, spans = place_pieces([a, b], np.ones(2, np.float32), lead=0, gaps=[-800], trail=0)
    assert spans[1, 0] == 1000 - 900 // 3


def test_connected_strings_start_on_their_first_word_and_a_flush_ends_on_their_last():
    clips = _fake_clips(speakers=("alice",))
    config = ComposeConfig(connected_gap_ms_range=(-80.0, -30.0), connected_leading_ms_range=(0.0, 0.0))
    u = compose_utterance(clips[:5], np.random.default_rng(0), config=config, connected=True, flush=True)
    assert u.spans_samples[0, 0] == 0 and u.spans_samples[-1, 1] == u.waveform.shape[0]
    overlaps_ms = (u.spans_samples[:-1, 1] - u.spans_samples[1:, 0]) * 1000 / SR
    assert np.all(overlaps_ms >= 30 - 0.1) and np.all(overlaps_ms <= 80 + 0.1)

    source = [ClipSource("a", clips)]
    compose = ComposeConfig(connected_probability=1.0, flush_probability=1.0, flush_ms_range=(300.0, 300.0))
    augment = dataclasses.replace(NO_AUGMENTATION, noise_probability=1.0, snr_db_range=(10.0, 10.0))
    wave, comp = make_utterance(np.random.default_rng(1), source, compose=compose, augment=augment)
    # noise covers the recording, then 300 ms of digital silence: what the runtime's flush feeds
    assert wave.shape[0] == comp.waveform.shape[0] + int(0.3 * SR)
    assert not wave[comp.waveform.shape[0]:].any() and np.all(wave[:comp.waveform.shape[0]] != 0)
    assert comp.spans_samples[-1, 1] == comp.waveform.shape[0]


def test_new_composition_options_draw_nothing_when_off():
    source = [ClipSource("a", _fake_clips(speakers=("alice",)))]
    old = make_batch(np.random.default_rng(5), 6, source)
    off = make_batch(np.random.default_rng(5), 6, source,
                     compose=ComposeConfig(connected_probability=0.0, flush_probability=0.0, repeat_probability=0.0,
                                           filler_probability=0.0),
                     augment=AugmentConfig(tempo_probability=0.0))
    np.testing.assert_array_equal(old.waveforms, off.waveforms)
    np.testing.assert_array_equal(old.spans_samples, off.spans_samples)


def test_repeats_and_fillers():
    clips = _fake_clips(speakers=("alice",), per_digit=3)
    filler = np.full(3000, 0.25, np.float32)
    source = [ClipSource("a", clips, fillers={"alice": [filler]})]
    compose = ComposeConfig(repeat_probability=1.0, filler_probability=1.0)
    rng = np.random.default_rng(2)
    for _ in range(10):
        _, u = make_utterance(rng, source, num_digits_range=(3, 5), compose=compose, augment=NO_AUGMENTATION)
        assert len(set(u.token_ids.tolist())) == 1  # every digit repeats the first
        spoken = np.zeros(u.waveform.shape[0], bool)
        for s, e in u.spans_samples:
            spoken[s:e] = True
        assert np.isclose(u.waveform[~spoken], 0.25 * u.clip_gains[0], atol=1e-6).sum() >= 3000  # a filler, no token


def test_spoken_strings_keep_their_spans_under_a_speed_change():
    wave = np.random.default_rng(0).uniform(-0.3, 0.3, 16000).astype(np.float32)
    spans = np.array([[0, 4000], [4000, 9000], [9000, 16000]])
    s = SpokenString(wave, np.array([5, 2, 2]), spans, "voice", "espeak", "four one one")
    source = [StringSource("s", [s])]
    augment = dataclasses.replace(NO_AUGMENTATION, speed_range=(1.25, 1.25))
    compose = ComposeConfig(connected_leading_ms_range=(100.0, 100.0), trailing_silence_ms_range=(0.0, 0.0))
    _, u = make_utterance(np.random.default_rng(0), source, compose=compose, augment=augment)
    assert u.token_ids.tolist() == [5, 2, 2]
    lead = int(0.1 * SR)
    np.testing.assert_allclose(u.spans_samples - lead, np.round(spans / 1.25), atol=2)
    assert u.waveform.shape[0] == lead + round(16000 / 1.25)


def test_negatives_have_empty_targets_and_every_kind_comes_up():
    speech = {"v": [np.full(8000, 0.1, np.float32)]}
    source = NegativeSource("n", speech, kind_weights=(1, 1, 1))
    batch = make_batch(np.random.default_rng(0), 30, [source], augment=NO_AUGMENTATION)
    assert batch.targets.shape == (30, 1) and not batch.target_lengths.any()
    assert set(batch.speakers) == {"v", "noise", "silence"}
    silent = [b for b in range(30) if batch.speakers[b] == "silence"]
    assert not batch.waveforms[silent].any()
    with pytest.raises(InvalidInputError):
        NegativeSource("n", {}, kind_weights=(1, 0, 0))


def test_the_restricted_loss_of_an_utterance_without_digits_rewards_blank():
    T, V = 6, 11
    logits = torch.zeros(1, T, V, requires_grad=True)
    loss = restricted_ctc_loss(logits.log_softmax(-1), torch.tensor([T]), torch.zeros(1, 1, dtype=torch.long),
                               torch.tensor([0]), torch.zeros(1, 1, T, dtype=torch.bool))
    assert torch.isclose(loss, torch.tensor(T * np.log(V), dtype=torch.float32))  # -log P(all blank)
    loss.backward()
    assert (logits.grad[0, :, 0] < 0).all() and (logits.grad[0, :, 1:] > 0).all()


def test_an_utterance_may_start_on_its_first_word():
    source = [ClipSource("a", _fake_clips(speakers=("alice",)))]
    compose = ComposeConfig(start_on_word_probability=1.0)
    for seed in range(3):
        _, u = make_utterance(np.random.default_rng(seed), source, compose=compose, augment=NO_AUGMENTATION)
        assert u.spans_samples[0, 0] == 0
    half = ComposeConfig(start_on_word_probability=0.5)
    starts = [make_utterance(np.random.default_rng(s), source, compose=half, augment=NO_AUGMENTATION)[1]
              .spans_samples[0, 0] for s in range(40)]
    assert 10 <= sum(s == 0 for s in starts) <= 30 and min(s for s in starts if s) >= int(0.1 * SR)
