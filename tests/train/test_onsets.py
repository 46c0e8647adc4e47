"""The onset diagnosis: lead measurement, and what cutting word onsets does to the shipped model."""

import numpy as np

from corpus import needs_full_fsdd

from stateport.assets import builtin_dir
from stateport.train.onsets import lead_ms, onset_report


def test_lead_is_the_silence_before_the_speech_onset():
    quiet = np.full(1600, 1e-4, np.float32)  # 100 ms at 16 kHz
    tone = (0.5 * np.sin(np.arange(4800) * 0.3)).astype(np.float32)
    assert 90.0 <= lead_ms(np.concatenate([quiet, tone])) <= 100.0
    assert lead_ms(tone) == 0.0


@needs_full_fsdd
def test_cutting_word_onsets_costs_the_shipped_model_accuracy():
    r = onset_report(str(builtin_dir() / "checkpoint.pt"), "george", indices=range(0, 50, 5))
    assert r["recordings"] == 100 and r["without_lead"] + r["with_lead"] == 100
    assert 0 < r["without_lead"] < 100
    cuts = r["wer_with_lead_cut_past_onset"]
    assert list(cuts) == ["0", "10", "20", "40"]
    # Measured on all 325 of george's recordings with a lead (the shipped embedding-ctc model):
    # 1.8 % whole, 3.4 % cut 40 ms past the onset, 27.7 % cut at their loudest 10 ms.
    assert r["wer_with_lead"] < 0.15 and cuts["40"] >= r["wer_with_lead"]
    # Measured on all 500: 37 start within 2 dB of their loudest 10 ms (35.1 % WER).
    assert 0 < r["starting_at_peak"] <= r["without_lead"]
    assert list(r["wer_with_lead_cut_at_level_db"]) == ["-10", "0"]
    assert r["wer_with_lead_cut_at_level_db"]["0"] > r["wer_with_lead"] + 0.1  # a word cut mid-way is often lost
