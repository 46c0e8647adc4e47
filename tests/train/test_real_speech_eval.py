"""The evaluation that mirrors use streams through the path users run: ``Recognizer.transcribe`` with
the end-of-input flush the card declares, and a tail measured without the test speaker."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile as sf

from corpus import TESTS_DIR, needs_full_fsdd
from stream_helpers import tiny_ctc_model

from stateport.assets import default_model_path
from stateport.runtime.model_file import read_card
from stateport.runtime.recognizer import Recognizer
from stateport.train import real_speech as rs

FSDD_CLIPS = sorted((TESTS_DIR / "data" / "fsdd").glob("?_george_*.wav"))


def test_the_evaluation_gives_what_the_runtime_gives_with_the_cards_flush():
    ours = rs.RuntimeDigits(str(default_model_path()))
    card = read_card(default_model_path()).streaming
    assert ours.tail_padding_ms == card.tail_padding_ms and rs.card_tail_is_measured(str(default_model_path()))
    users = Recognizer.builtin()
    unflushed = rs.RuntimeDigits(str(default_model_path()), tail_padding_ms=0)
    assert unflushed.tail_padding_ms == 0
    lost = 0
    for path in FSDD_CLIPS[:6]:
        x, rate = sf.read(path, dtype="float32")  # 8 kHz, trimmed, as FSDD ships it
        assert rate == 8000
        tokens = ours.transcribe(x, rate)
        assert tokens == list(users.transcribe(x, rate).tokens) and tokens, path.name
        lost += len(unflushed.transcribe(x, rate)) < len(tokens)
    assert lost >= 1  # the flush is what makes a trimmed recording whole (a fresh client without it loses words)


def test_a_card_without_a_measured_tail_is_told_apart(tmp_path):
    path = tmp_path / "tiny.onnx"
    shutil.copy(tiny_ctc_model(), path)
    assert not rs.card_tail_is_measured(str(path))
    assert rs.card_tail_is_measured(str(default_model_path()))


@needs_full_fsdd
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_the_tail_is_measured_without_the_test_speaker():
    sets = rs.tail_sets("george")
    assert sets and not any("george" in s.name for s in sets)
    assert sum(len(s.items) for s in sets) == 80 + 4 * 10 * len(rs.TAIL_REAL_INDICES)
    m = rs.measure_tail(str(default_model_path()), test_speaker="george")
    assert m.method == "emission-delay" and m.emitted == m.recordings == 280
    assert "FSDD speakers other than george" in m.basis and m.basis.startswith("emission delay on")
    assert m.tail_padding_ms >= m.max_delay_ms + m.margin_ms - 1e-6 and m.tail_padding_ms % 10 == 0
    assert np.isfinite(m.p99_delay_ms)


@needs_full_fsdd
@pytest.mark.skipif(any(shutil.which(t) is None for t in ("espeak-ng", "text2wave", "flite")),
                    reason="the held-out voices need espeak-ng, festival (text2wave) and flite")
def test_the_accuracy_tables_real_speech_sets_are_valid_eval_sets_and_repeatable():
    from stateport.quantize.evaluate import NEGATIVE, as_eval_sets

    sets = as_eval_sets(rs.accuracy_table_sets("george", strings=3, spoken=2, sentences=2))
    names = [s.name for s in sets]
    assert len(set(names)) == len(names)
    # the table's own sets already hold george's trimmed singles; these are connected, spoken and digit-free
    assert [s.group for s in sets[:4]] == ["connected"] * 3 + ["spoken"] and "trimmed" not in {s.group for s in sets}
    assert all("george" in n for n in names[:3]) and names[3].startswith("espeak-ng") and "default rate" in names[3]
    assert [len(s.items) for s in sets[:5]] == [3, 3, 3, 2, 2] and sets[4].kind == NEGATIVE
    negatives = [s for s in sets if s.kind == NEGATIVE]
    assert len(negatives) >= 4 and sum(s.seconds for s in negatives) > 60  # digit-free speech, noise, silence
    for s in sets:
        assert s.sample_rate_hz == 16000 and s.seconds > 0
        for wave, ref in s.items:
            assert wave.ndim == 1 and len(wave) and np.isfinite(wave).all()
            if s.kind == NEGATIVE:
                assert ref == ()
            else:  # token ids are digit + 1 (0 is the blank); strings of 4-10 digits
                assert 4 <= len(ref) <= 10 and all(1 <= t <= 10 for t in ref), (s.name, ref)
    again = as_eval_sets(rs.accuracy_table_sets("george", strings=3, spoken=2, sentences=2))
    for a, b in zip(sets, again):  # every precision is scored on the same audio
        assert a.name == b.name and all(np.array_equal(x[0], y[0]) and x[1] == y[1] for x, y in zip(a.items, b.items))
