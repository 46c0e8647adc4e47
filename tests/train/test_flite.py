"""flite's recorded-speaker voices as a training source: renditions, caching, errors."""

import shutil

import numpy as np
import pytest

from stateport.errors import InvalidInputError
from stateport.train import flite, synth

SR = 16_000
needs_flite = pytest.mark.skipif(shutil.which("flite") is None, reason="flite is not installed")


def test_flite_config_rejects_out_of_range_draws():
    with pytest.raises(InvalidInputError, match="duration_stretch_range"):
        flite.FliteConfig(duration_stretch_range=(0.1, 1.0))
    with pytest.raises(InvalidInputError, match="f0_scale_range"):
        flite.FliteConfig(f0_scale_range=(1.5, 1.2))


def test_rendition_draws_are_deterministic_and_in_range():
    cfg = flite.FliteConfig()
    slt, rms = flite.FliteVoice("slt", 180.0), flite.FliteVoice("rms", None)
    draws = [flite._rendition_params(0, slt, 7, k, cfg) for k in range(50)]
    assert draws == [flite._rendition_params(0, slt, 7, k, cfg) for k in range(50)]
    stretches, pitches = zip(*draws)
    assert 0.8 <= min(stretches) and max(stretches) <= 1.35 and len(set(stretches)) > 20
    assert 0.8 * 180 - 1 <= min(pitches) and max(pitches) <= 1.25 * 180 + 1
    # A voice that ignores a pitch target gets none (so its cache key does not pretend one).
    assert all(f0 is None for _, f0 in (flite._rendition_params(0, rms, 7, k, cfg) for k in range(5)))


@needs_flite
def test_unknown_flite_voice_is_a_clear_error():
    with pytest.raises(InvalidInputError, match="unavailable"):
        flite.list_flite_voices(["nobody"])
    assert [v.name for v in flite.list_flite_voices()] == ["kal16", "awb", "rms", "slt"]


@needs_flite
def test_flite_synthesis_is_16k_trimmed_and_cached(tmp_path, monkeypatch):
    voices = flite.list_flite_voices(["slt", "awb"])
    clips = flite.synthesize_flite_digits(voices, digits=[6, 7], renditions_per_digit=2, seed=1, cache_dir=tmp_path)
    assert [(c.speaker, c.digit) for c in clips[:4]] == [("flite-slt", 6)] * 2 + [("flite-slt", 7)] * 2
    assert len(clips) == 8 and {c.source for c in clips} == {"flite"}
    for c in clips:
        assert c.waveform.dtype == np.float32 and np.all(np.isfinite(c.waveform))
        assert 0.15 * SR < c.num_samples < 1.5 * SR
        assert abs(np.abs(c.waveform).max() - 0.5) < 1e-5
    # Renditions differ: a different stretch gives a different length.
    assert clips[0].num_samples != clips[1].num_samples

    def no_flite(*args, **kwargs):
        raise AssertionError(f"flite called despite the cache: {args}")

    monkeypatch.setattr(synth.subprocess, "run", no_flite)
    monkeypatch.setattr(flite.subprocess, "run", no_flite)
    again = flite.synthesize_flite_digits(voices, digits=[6, 7], renditions_per_digit=2, seed=1, cache_dir=tmp_path)
    for a, b in zip(clips, again):
        np.testing.assert_array_equal(a.waveform, b.waveform)


def test_a_failing_synthesiser_is_a_typed_error_and_leaves_no_partial_file(tmp_path):
    def write_nothing(raw_path):
        raw_path.write_bytes(b"not a wav")

    with pytest.raises(InvalidInputError, match="test voice: the synthesiser wrote no readable WAV"):
        synth.render_cached(tmp_path / "x" / "seven.wav", write_nothing, synth.SynthesisConfig(), what="test voice")
    assert not list(tmp_path.rglob("*.wav"))
