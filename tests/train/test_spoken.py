"""Whole spoken strings with word timing (espeak-ng library, flite, festival), digit-free word lists, the peer."""

import shutil

import numpy as np
import pytest

from stateport.errors import InvalidInputError
from stateport.train.recorded_voices import engine_available, installed_voices
from stateport.train.speech import EVAL_WORDS, TRAIN_WORDS, is_digit_free, random_sentences
from stateport.train.strings import Delivery, Voice, digit_sequences, speak, spoken_strings

SR = 16_000
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


def _check_spans(wave, spans, words):
    assert spans.shape == (words, 2) and spans.dtype == np.int64
    assert spans[0, 0] >= 0 and spans[-1, 1] <= wave.shape[0]
    assert np.all(spans[:, 1] > spans[:, 0]) and np.all(spans[1:, 0] >= spans[:-1, 0])
    # every word lasts between 60 ms and 1 s at these rates
    assert np.all(np.diff(spans, axis=1) >= 0.06 * SR) and np.all(np.diff(spans, axis=1) <= SR)


@needs_espeak
def test_espeak_speaks_a_string_with_one_span_per_word_and_caches_it(tmp_path):
    voice = Voice("espeak", "en-gb+f2")
    wave, spans = speak(voice, "four one one seven", Delivery(1.0), cache_dir=tmp_path)
    assert wave.dtype == np.float32 and np.isclose(np.abs(wave).max(), 0.5)
    _check_spans(wave, spans, 4)
    assert 0.8 < wave.shape[0] / SR < 1.6  # four digits at 175 words per minute
    fast, fast_spans = speak(voice, "four one one seven", Delivery(1.5), cache_dir=tmp_path)
    assert fast.shape[0] < 0.8 * wave.shape[0]
    again, again_spans = speak(voice, "four one one seven", Delivery(1.0), cache_dir=tmp_path)
    np.testing.assert_array_equal(again, wave)
    np.testing.assert_array_equal(again_spans, spans)
    with pytest.raises(InvalidInputError, match="not all digit words"):
        speak(voice, "four score", cache_dir=tmp_path)


@pytest.mark.skipif(not engine_available("flite") or "rms" not in installed_voices("flite"),
                    reason="flite (with its rms voice) is not installed")
def test_flite_groups_its_phones_into_the_digit_words(tmp_path):
    wave, spans = speak(Voice("flite", "rms"), "seven three three zero eight", Delivery(1.2), cache_dir=tmp_path)
    _check_spans(wave, spans, 5)
    _, none = speak(Voice("flite", "rms"), "quiet harbour lights", digit_words=False, cache_dir=tmp_path)
    assert none.shape == (0, 2)


@pytest.mark.skipif(not engine_available("festival") or "ked" not in installed_voices("festival"),
                    reason="festival (with its ked voice) is not installed")
def test_festival_reports_each_words_start_and_end(tmp_path):
    wave, spans = speak(Voice("festival", "ked"), "two nine nine", Delivery(1.0), cache_dir=tmp_path)
    _check_spans(wave, spans, 3)


@needs_espeak
def test_spoken_strings_are_deterministic_and_repeat_digits(tmp_path):
    voices = [Voice("espeak", "en-us+m3"), Voice("espeak", "en-gb+f2")]
    a = spoken_strings(voices, 6, seed=3, cache_dir=tmp_path)
    b = spoken_strings(voices, 6, seed=3, cache_dir=tmp_path)
    assert [s.text for s in a] == [s.text for s in b] and all(np.array_equal(x.waveform, y.waveform) for x, y in zip(a, b))
    for s in a:
        assert s.token_ids.tolist() == [["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                                         "nine"].index(w) + 1 for w in s.text.split()]
        _check_spans(s.waveform, s.spans_samples, len(s.token_ids))
    runs = digit_sequences(np.random.default_rng(0), 200, (4, 10), repeat_probability=0.5)
    repeats = sum(x == y for d in runs for x, y in zip(d, d[1:])) / sum(len(d) - 1 for d in runs)
    assert 0.5 < repeats < 0.6  # half repeat on purpose, a tenth of the rest by chance


def test_word_lists_hold_no_digit_and_share_no_word():
    assert all(is_digit_free(w) for w in TRAIN_WORDS + EVAL_WORDS)
    assert not set(TRAIN_WORDS) & set(EVAL_WORDS)
    for word in ("four", "for", "someone", "weight", "twenty", "eighteen", "oh", "won"):
        assert not is_digit_free(word)
    sentences = random_sentences(np.random.default_rng(0), EVAL_WORDS, 5, (4, 6))
    assert len(sentences) == 5 and all(4 <= len(s.split()) <= 6 for s in sentences)


@pytest.mark.skipif(not engine_available("festival"), reason="festival is not installed")
def test_pocketsphinx_with_the_digits_grammar_on_a_recorded_voice(tmp_path):
    pytest.importorskip("pocketsphinx", reason="pocketsphinx is not installed (pip install 'stateport[eval]')")
    from stateport.train.peer import PocketSphinxDigits

    peer = PocketSphinxDigits()
    wave, _ = speak(Voice("festival", "ked"), "four one one seven", cache_dir=tmp_path)
    assert peer.transcribe(wave) == [5, 2, 2, 8]
    assert peer.transcribe(np.zeros(SR, np.float32)) == []  # with its dither on, silence is nothing
    with pytest.raises(InvalidInputError):
        peer.transcribe(np.zeros((2, 10), np.float32))
