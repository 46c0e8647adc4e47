"""Single spoken-digit clips: the unit every training source (FSDD, espeak-ng) produces.

A :class:`Clip` is one isolated digit word as a mono float32 waveform at
:data:`TRAIN_SAMPLE_RATE_HZ`. The helpers here (resampling, energy trimming) are shared by
the sources; composition into digit strings lives in :mod:`stateport.train.data`.
Pure numpy/scipy: no torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.signal import resample_poly

from ..errors import InvalidInputError
from ..vocabulary import DIGIT_WORDS  # noqa: F401  (re-exported: the spoken word of digit d)

TRAIN_SAMPLE_RATE_HZ = 16_000
"""Sample rate of every clip and composed utterance of the training pipeline."""


@dataclass(frozen=True, eq=False)
class Clip:
    """One spoken digit.

    waveform: float32 [N] in [-1, 1] at ``TRAIN_SAMPLE_RATE_HZ``.
    digit: 0..9.
    speaker: who spoke it; unique across sources ("george", "en-us+m3", ...). Splits into
        train/dev/test are made on this field.
    source: the corpus ("fsdd" or "espeak").
    name: where it came from (file name or cache key), for debugging.
    """

    waveform: np.ndarray
    digit: int
    speaker: str
    source: str
    name: str

    @property
    def num_samples(self) -> int:
        return int(self.waveform.shape[0])


def resample(waveform: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
    """Polyphase resampling of a mono waveform [N] -> float32 [round(N * to_hz / from_hz)].

    scipy's ``resample_poly`` with the reduced ratio: exact rational resampling with a
    Kaiser-windowed anti-aliasing filter, no wrap-around artefacts (unlike FFT resampling).
    """
    if from_hz <= 0 or to_hz <= 0:
        raise InvalidInputError(f"sample rates must be positive, got {from_hz} -> {to_hz} Hz")
    x = np.asarray(waveform, dtype=np.float32)
    if x.ndim != 1:
        raise InvalidInputError(f"expected a mono waveform [N], got shape {x.shape}")
    if from_hz == to_hz:
        return x.copy()
    g = math.gcd(int(from_hz), int(to_hz))
    return resample_poly(x, int(to_hz) // g, int(from_hz) // g).astype(np.float32)


def trim_silence(
    waveform: np.ndarray,
    sample_rate_hz: int,
    *,
    threshold_db: float = -50.0,
    frame_ms: float = 10.0,
    margin_ms: float = 10.0,
) -> np.ndarray:
    """Cut leading and trailing silence by frame energy: float32 [N] -> float32 [M <= N].

    A frame is speech when its energy is within ``threshold_db`` of the loudest frame. The
    threshold is relative (not absolute) so quiet voices are trimmed like loud ones, and low
    (-50 dB) because word-initial fricatives ("six", "seven") sit 20-30 dB below the vowel.
    ``margin_ms`` of audio is kept on each side so onsets and releases are not clipped.
    An all-silent input comes back empty. The cut points: :func:`trim_bounds`.
    """
    x = np.asarray(waveform, dtype=np.float32)
    start, end = trim_bounds(x, sample_rate_hz, threshold_db=threshold_db, frame_ms=frame_ms, margin_ms=margin_ms)
    return x[start:end].copy()


def trim_bounds(
    waveform: np.ndarray,
    sample_rate_hz: int,
    *,
    threshold_db: float = -50.0,
    frame_ms: float = 10.0,
    margin_ms: float = 10.0,
) -> tuple[int, int]:
    """``(start, end)`` sample indices that :func:`trim_silence` keeps (``(0, 0)`` if all silent).

    Callers that carry sample positions inside the waveform (word spans of a spoken string)
    shift them by ``start``.
    """
    x = np.asarray(waveform, dtype=np.float32)
    frame = max(1, int(round(sample_rate_hz * frame_ms / 1000.0)))
    num_frames = -(-x.shape[0] // frame)
    if num_frames == 0:
        return 0, 0
    padded = np.zeros(num_frames * frame, dtype=np.float64)
    padded[: x.shape[0]] = x
    energy = (padded.reshape(num_frames, frame) ** 2).mean(axis=1)
    peak = float(energy.max())
    if peak <= 0.0:
        return 0, 0
    active = np.flatnonzero(energy >= peak * 10.0 ** (threshold_db / 10.0))
    margin = int(round(sample_rate_hz * margin_ms / 1000.0))
    start = max(0, int(active[0]) * frame - margin)
    end = min(x.shape[0], (int(active[-1]) + 1) * frame + margin)
    return start, end
