"""Virtual speakers from FSDD recordings (Praat's Change gender): draws, measured effect, errors."""

import numpy as np
import pytest

from stateport.errors import InvalidInputError
from stateport.train import voice_shift as vsh
from stateport.train.clips import Clip

SR = 16_000
parselmouth = pytest.importorskip("parselmouth")


def _median_f0_hz(x: np.ndarray) -> float:
    f = parselmouth.Sound(x.astype(np.float64), sampling_frequency=SR).to_pitch().selected_array["frequency"]
    return float(np.median(f[f > 0]))


def _spectral_centroid_hz(x: np.ndarray) -> float:
    power = np.abs(np.fft.rfft(x)) ** 2
    return float((power * np.fft.rfftfreq(x.size, 1 / SR)).sum() / power.sum())


def _vowel(f0_hz: float = 110.0, seconds: float = 0.6) -> np.ndarray:
    """A crude voiced vowel: a glottal pulse train through three formant resonances."""
    from scipy.signal import lfilter

    n = int(seconds * SR)
    t = np.arange(n) / SR
    pulses = (np.diff(np.floor(t * f0_hz), prepend=-1) > 0).astype(np.float64)
    y = pulses
    for formant_hz, bandwidth_hz in ((700, 80), (1200, 90), (2500, 120)):
        r = np.exp(-np.pi * bandwidth_hz / SR)
        y = lfilter([1.0], [1.0, -2 * r * np.cos(2 * np.pi * formant_hz / SR), r * r], y)
    return (0.5 * y / np.abs(y).max()).astype(np.float32)


def test_config_rejects_out_of_range_draws():
    with pytest.raises(InvalidInputError, match="formant_ratio_range"):
        vsh.VoiceShiftConfig(formant_ratio_range=(0.5, 1.0))
    with pytest.raises(InvalidInputError, match="pitch_median_hz_range"):
        vsh.VoiceShiftConfig(pitch_median_hz_range=(200.0, 100.0))
    with pytest.raises(InvalidInputError, match="speakers_per_speaker"):
        vsh.VoiceShiftConfig(speakers_per_speaker=0)


def test_virtual_speakers_are_deterministic_in_range_and_named_apart():
    cfg = vsh.VoiceShiftConfig(speakers_per_speaker=20)
    a = vsh.draw_virtual_speakers(["jackson", "lucas"], cfg, seed=3)
    assert a == vsh.draw_virtual_speakers(["jackson", "lucas"], cfg, seed=3)
    assert a != vsh.draw_virtual_speakers(["jackson", "lucas"], cfg, seed=4)
    # A speaker's draws do not depend on which other speakers are asked for.
    assert a[20:] == vsh.draw_virtual_speakers(["lucas"], cfg, seed=3)
    assert len({v.name for v in a}) == 40 and all("~v" in v.name for v in a)
    ratios = [v.formant_ratio for v in a]
    pitches = [v.pitch_median_hz for v in a]
    assert 0.88 - 1e-3 <= min(ratios) and max(ratios) <= 1.18 + 1e-3 and np.std(ratios) > 0.03
    assert 85 - 0.1 <= min(pitches) and max(pitches) <= 250 + 0.1


def test_shift_moves_pitch_to_the_target_and_formants_by_the_ratio():
    x = _vowel(110.0)
    assert _median_f0_hz(x) == pytest.approx(110.0, rel=0.03)
    up = vsh.VirtualSpeaker("x", 0, formant_ratio=1.15, pitch_median_hz=200.0, pitch_range_factor=1.0)
    down = vsh.VirtualSpeaker("x", 1, formant_ratio=0.9, pitch_median_hz=90.0, pitch_range_factor=1.0)
    y_up, y_down = vsh.shift_voice(x, up), vsh.shift_voice(x, down)
    for y in (y_up, y_down):
        assert y.dtype == np.float32 and y.shape == x.shape and np.abs(y).max() <= 0.99
    assert _median_f0_hz(y_up) == pytest.approx(200.0, rel=0.05)
    assert _median_f0_hz(y_down) == pytest.approx(90.0, rel=0.05)
    # Formants follow the ratio: the spectral centroid rises by roughly 1.15 and falls by 0.9.
    c0 = _spectral_centroid_hz(x)
    assert 1.08 < _spectral_centroid_hz(y_up) / c0 < 1.25
    assert 0.84 < _spectral_centroid_hz(y_down) / c0 < 0.97


def test_shifted_clips_keep_digits_and_name_virtual_speakers():
    clips = [Clip(_vowel(100.0 + 10 * d), d, spk, "fsdd", f"{d}_{spk}_0.wav")
             for spk in ("jackson", "lucas") for d in (1, 2)]
    out = vsh.voice_shifted_clips(clips, vsh.VoiceShiftConfig(speakers_per_speaker=2), seed=0)
    assert [(c.speaker, c.digit) for c in out] == [
        ("jackson~v0", 1), ("jackson~v0", 2), ("jackson~v1", 1), ("jackson~v1", 2),
        ("lucas~v0", 1), ("lucas~v0", 2), ("lucas~v1", 1), ("lucas~v1", 2),
    ]
    assert all(c.source == vsh.VOICE_SHIFT_SOURCE and c.waveform.shape == clips[0].waveform.shape for c in out)


def test_bad_audio_is_a_typed_error():
    v = vsh.VirtualSpeaker("x", 0, 1.0, 120.0, 1.0)
    with pytest.raises(InvalidInputError, match="NaN"):
        vsh.shift_voice(np.full(1600, np.nan, dtype=np.float32), v)
    with pytest.raises(InvalidInputError, match="mono"):
        vsh.shift_voice(np.zeros((2, 1600), dtype=np.float32), v)
