"""Virtual speakers made from the FSDD training speakers: new vocal-tract length and pitch.

Four recorded training speakers are four vocal tracts; a held-out speaker differs from all
of them. Speed perturbation (:mod:`stateport.train.augment`) moves formants, pitch and
tempo together by the same few per cent. Praat's "Change gender" (through
praat-parselmouth, the Python binding of Praat) moves them independently: it scales the
formants by a ratio (a longer or shorter vocal tract) and re-synthesises the pitch contour
around a new median by PSOLA, keeping the duration. Each training speaker is turned into a
few *virtual speakers*, each with one drawn formant ratio, pitch median and pitch-range
factor applied to all of that speaker's clips, so a composed string stays one consistent
voice — while keeping the real articulation (fricatives, coarticulation, timing) that
synthetic voices lack.

The draws are deterministic from ``(seed, speaker, k)``; every clip is converted once, in
memory (about 7 ms per clip here), when a training run starts.
"""

from __future__ import annotations

import warnings
import zlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import InvalidInputError, MissingDependencyError
from .clips import TRAIN_SAMPLE_RATE_HZ, Clip

VOICE_SHIFT_SOURCE = "fsdd-shifted"


@dataclass(frozen=True)
class VoiceShiftConfig:
    """How the virtual speakers are drawn.

    speakers_per_speaker: virtual speakers made from each real one.
    formant_ratio_range: Praat's formant shift ratio (> 1: a shorter vocal tract, formants
        up), log-uniform. 0.88-1.18 spans roughly adult male to adult female formants
        around a male speaker, without pushing FSDD's 4 kHz band edge far.
    pitch_median_hz_range: the new median pitch, log-uniform (adult male to female).
    pitch_range_factor_range: scales the pitch excursion around the median (flat to lively).
    pitch_floor_hz, pitch_ceiling_hz: Praat's pitch analysis range.
    """

    speakers_per_speaker: int = 6
    formant_ratio_range: tuple[float, float] = (0.88, 1.18)
    pitch_median_hz_range: tuple[float, float] = (85.0, 250.0)
    pitch_range_factor_range: tuple[float, float] = (0.7, 1.4)
    pitch_floor_hz: float = 75.0
    pitch_ceiling_hz: float = 600.0

    def __post_init__(self) -> None:
        if self.speakers_per_speaker < 1:
            raise InvalidInputError(f"speakers_per_speaker must be >= 1, got {self.speakers_per_speaker}")
        for name, (lo_ok, hi_ok) in {
            "formant_ratio_range": (0.7, 1.4),
            "pitch_median_hz_range": (50.0, 500.0),
            "pitch_range_factor_range": (0.0, 3.0),
        }.items():
            lo, hi = getattr(self, name)
            if not lo_ok <= lo <= hi <= hi_ok:
                raise InvalidInputError(f"{name} must be (low, high) within {lo_ok}..{hi_ok}, got {(lo, hi)}")
        if not 0 < self.pitch_floor_hz < self.pitch_ceiling_hz:
            raise InvalidInputError(
                f"need 0 < pitch_floor_hz < pitch_ceiling_hz, got {self.pitch_floor_hz}, {self.pitch_ceiling_hz}"
            )


@dataclass(frozen=True)
class VirtualSpeaker:
    """One drawn voice: ``base`` speaker's clips with these formant and pitch settings."""

    base: str
    index: int
    formant_ratio: float
    pitch_median_hz: float
    pitch_range_factor: float

    @property
    def name(self) -> str:
        """The clips' speaker name, e.g. ``jackson~v3`` (never an FSDD speaker's name)."""
        return f"{self.base}~v{self.index}"


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def draw_virtual_speakers(speakers: Sequence[str], config: VoiceShiftConfig = VoiceShiftConfig(),
                          seed: int = 0) -> list[VirtualSpeaker]:
    """``config.speakers_per_speaker`` virtual speakers per name, each drawn from (seed, name, k)."""
    out = []
    for base in speakers:
        for k in range(config.speakers_per_speaker):
            rng = np.random.default_rng([seed, zlib.crc32(base.encode()), k])
            out.append(VirtualSpeaker(
                base=base,
                index=k,
                formant_ratio=round(_log_uniform(rng, *config.formant_ratio_range), 3),
                pitch_median_hz=round(_log_uniform(rng, *config.pitch_median_hz_range), 1),
                pitch_range_factor=round(float(rng.uniform(*config.pitch_range_factor_range)), 2),
            ))
    return out


def _parselmouth():
    try:
        import parselmouth
        from parselmouth.praat import call
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(
            "voice shifting needs praat-parselmouth: pip install 'stateport[train]'"
        ) from exc
    return parselmouth, call


def shift_voice(waveform: np.ndarray, speaker: VirtualSpeaker, *,
                sample_rate_hz: int = TRAIN_SAMPLE_RATE_HZ,
                config: VoiceShiftConfig = VoiceShiftConfig()) -> np.ndarray:
    """One clip in ``speaker``'s voice: float32, the same length, peak kept below 1.

    A clip Praat finds no voiced frame in keeps its pitch (only the formants move).
    Raises InvalidInputError for non-mono, empty or non-finite audio.
    """
    x = np.asarray(waveform)
    if x.ndim != 1 or x.size == 0:
        raise InvalidInputError(f"shift_voice expects mono audio [N] with N > 0, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise InvalidInputError("shift_voice got NaN or infinite samples")
    parselmouth, call = _parselmouth()
    sound = parselmouth.Sound(x.astype(np.float64), sampling_frequency=float(sample_rate_hz))
    with warnings.catch_warnings():
        # "no voiced segments found": expected for a whispered or clipped recording (see above).
        warnings.simplefilter("ignore", parselmouth.PraatWarning)
        shifted = call(sound, "Change gender", config.pitch_floor_hz, config.pitch_ceiling_hz,
                       speaker.formant_ratio, speaker.pitch_median_hz, speaker.pitch_range_factor, 1.0)
    y = np.asarray(shifted.values[0], dtype=np.float64)
    # PSOLA can return a sample or two more or fewer; the clip's span must stay its length.
    y = np.pad(y, (0, max(0, x.size - y.size)))[: x.size]
    if not np.all(np.isfinite(y)):
        raise InvalidInputError(f"Praat returned non-finite audio for virtual speaker {speaker.name}")
    peak = float(np.max(np.abs(y)))
    if peak > 0.99:  # the resynthesis can overshoot a loud recording; scale, never clip
        y *= 0.99 / peak
    return y.astype(np.float32)


def voice_shifted_clips(clips: Sequence[Clip], config: VoiceShiftConfig = VoiceShiftConfig(),
                        seed: int = 0) -> list[Clip]:
    """Every clip once per virtual speaker of its speaker (speaker ``<base>~v<k>``).

    Ordered by (virtual speaker, input order). Deterministic given ``seed``.
    """
    speakers = sorted({c.speaker for c in clips})
    out = []
    for vs in draw_virtual_speakers(speakers, config, seed):
        for c in clips:
            if c.speaker == vs.base:
                out.append(Clip(shift_voice(c.waveform, vs, config=config), c.digit, vs.name,
                                VOICE_SHIFT_SOURCE, f"{vs.name}/{c.name}"))
    return out
