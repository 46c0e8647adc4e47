"""Recorded-speaker voices (flite, festival) as a training source: renditions, caching, errors."""

import shutil

import numpy as np
import pytest

from stateport.errors import InvalidInputError
from stateport.train import recorded_voices as rv, synth

SR = 16_000
needs_flite = pytest.mark.skipif(shutil.which("flite") is None, reason="flite is not installed")
needs_festival = pytest.mark.skipif(not rv.engine_available("festival") or "ked" not in rv.installed_voices("festival"),
                                    reason="festival with festvox-kdlpc16k is not installed")


def test_flite_config_rejects_out_of_range_draws():
    with pytest.raises(InvalidInputError, match="duration_stretch_range"):
        rv.RenditionConfig(duration_stretch_range=(0.1, 1.0))
    with pytest.raises(InvalidInputError, match="f0_scale_range"):
        rv.RenditionConfig(f0_scale_range=(1.5, 1.2))


def test_rendition_draws_are_deterministic_and_in_range():
    cfg = rv.RenditionConfig()
    slt, rms = rv.RecordedVoice("slt", 180.0), rv.RecordedVoice("rms", None)
    draws = [rv._rendition_params(0, slt, 7, k, cfg) for k in range(50)]
    assert draws == [rv._rendition_params(0, slt, 7, k, cfg) for k in range(50)]
    stretches, pitches = zip(*draws)
    assert 0.8 <= min(stretches) and max(stretches) <= 1.35 and len(set(stretches)) > 20
    assert 0.8 * 180 - 1 <= min(pitches) and max(pitches) <= 1.25 * 180 + 1
    # A voice that ignores a pitch target gets none (so its cache key does not pretend one).
    assert all(f0 is None for _, f0 in (rv._rendition_params(0, rms, 7, k, cfg) for k in range(5)))


@needs_flite
def test_unknown_voice_is_a_clear_error():
    with pytest.raises(InvalidInputError, match="unavailable.*apt-get install"):
        rv.list_recorded_voices(["nobody"])
    assert [v.name for v in rv.list_recorded_voices()][:4] == ["kal16", "awb", "rms", "slt"]
    assert [v.speaker for v in rv.list_recorded_voices(["slt", "kal16"])] == ["flite-slt", "flite-kal16"]


@needs_flite
def test_flite_synthesis_is_16k_trimmed_and_cached(tmp_path, monkeypatch):
    voices = rv.list_recorded_voices(["slt", "awb"])
    clips = rv.synthesize_recorded_digits(voices, digits=[6, 7], renditions_per_digit=2, seed=1, cache_dir=tmp_path)
    assert [(c.speaker, c.digit) for c in clips[:4]] == [("flite-slt", 6)] * 2 + [("flite-slt", 7)] * 2
    assert len(clips) == 8 and {c.source for c in clips} == {rv.RECORDED_SOURCE}
    for c in clips:
        assert c.waveform.dtype == np.float32 and np.all(np.isfinite(c.waveform))
        assert 0.15 * SR < c.num_samples < 1.5 * SR
        assert abs(np.abs(c.waveform).max() - 0.5) < 1e-5
    # Renditions differ: a different stretch gives a different length.
    assert clips[0].num_samples != clips[1].num_samples

    def no_flite(*args, **kwargs):
        raise AssertionError(f"flite called despite the cache: {args}")

    monkeypatch.setattr(synth.subprocess, "run", no_flite)
    monkeypatch.setattr(rv.subprocess, "run", no_flite)
    again = rv.synthesize_recorded_digits(voices, digits=[6, 7], renditions_per_digit=2, seed=1, cache_dir=tmp_path)
    for a, b in zip(clips, again):
        np.testing.assert_array_equal(a.waveform, b.waveform)


def test_a_failing_synthesiser_is_a_typed_error_and_leaves_no_partial_file(tmp_path):
    def write_nothing(raw_path):
        raw_path.write_bytes(b"not a wav")

    with pytest.raises(InvalidInputError, match="test voice: the synthesiser wrote no readable WAV"):
        synth.render_cached(tmp_path / "x" / "seven.wav", write_nothing, synth.SynthesisConfig(), what="test voice")
    assert not list(tmp_path.rglob("*.wav"))


@needs_festival
def test_festival_voice_follows_its_drawn_tempo_and_pitch(tmp_path):
    parselmouth = pytest.importorskip("parselmouth")
    (ked,) = rv.list_recorded_voices(["ked"])
    clips = rv.synthesize_recorded_digits([ked], digits=[3], renditions_per_digit=6, seed=0, cache_dir=tmp_path)
    assert {c.speaker for c in clips} == {"festival-ked"} and not list(tmp_path.rglob("*.txt"))
    draws = [rv._rendition_params(0, ked, 3, k, rv.RenditionConfig()) for k in range(6)]
    stretch = np.array([d[0] for d in draws])
    target_f0 = np.array([d[1] for d in draws], dtype=float)
    lengths = np.array([c.num_samples for c in clips], dtype=float)
    pitch = []
    for c in clips:
        f = parselmouth.Sound(c.waveform.astype(np.float64), sampling_frequency=SR).to_pitch().selected_array["frequency"]
        pitch.append(np.median(f[f > 0]))
    # Both drawn settings reach the audio: length follows the stretch, pitch the target.
    assert np.corrcoef(stretch, lengths)[0, 1] > 0.9
    assert np.corrcoef(target_f0, pitch)[0, 1] > 0.8
    assert np.all(np.abs(np.array(pitch) / target_f0 - 1) < 0.15)
