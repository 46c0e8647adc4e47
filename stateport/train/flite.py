"""Synthetic spoken digits from flite: four voices built from recordings of real speakers.

espeak-ng's voices are formant synthesis: hundreds of timbres, none of them a recorded human
vocal tract. flite's voices are made from recordings (``kal16``: a diphone voice of a US
male; ``awb``, ``rms``, ``slt``: statistical parametric voices trained on the CMU ARCTIC
recordings of a Scottish male, a US male and a US female), so their spectra — formants,
fricative noise, glottal source — are those of real people. They add four realistic
"speakers" to the four FSDD training speakers. (``kal``, the 8 kHz twin of ``kal16``, and
``awb_time``, a talking clock, are left out.)

Each rendition draws a duration stretch and, where the voice honours it, a target mean
pitch, deterministically from ``(seed, voice, digit, rendition)``; like espeak-ng renditions,
clips are trimmed, resampled to 16 kHz, peak-normalised and cached on disk
(:func:`stateport.train.synth.render_cached`).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..errors import InvalidInputError
from .clips import DIGIT_WORDS, Clip
from .synth import (
    SynthesisConfig, checked_request, default_cache_dir, render_cached, require_executable, run_in_order,
    run_synthesiser,
)

FLITE_SOURCE = "flite"


@dataclass(frozen=True)
class FliteVoice:
    """A flite voice and its own mean pitch in Hz (None: the voice ignores a pitch target).

    The nominal pitches were measured here (median autocorrelation pitch of "seven nine";
    flite 2.2): rms ignores ``int_f0_target_mean``, so its pitch varies only through the
    trainer's speed perturbation.
    """

    name: str
    nominal_f0_hz: float | None


FLITE_VOICES = (
    FliteVoice("kal16", 101.0),
    FliteVoice("awb", 130.0),
    FliteVoice("rms", None),
    FliteVoice("slt", 180.0),
)


@dataclass(frozen=True)
class FliteConfig:
    """How each flite rendition is drawn.

    duration_stretch_range: flite's ``duration_stretch`` (1 = the voice's own tempo; > 1 slower).
    f0_scale_range: the target mean pitch as a multiple of the voice's nominal pitch.
    post: trimming and peak normalisation, shared with espeak-ng (its espeak-only fields
        are unused here).
    """

    duration_stretch_range: tuple[float, float] = (0.8, 1.35)
    f0_scale_range: tuple[float, float] = (0.8, 1.25)
    post: SynthesisConfig = SynthesisConfig()

    def __post_init__(self) -> None:
        lo, hi = self.duration_stretch_range
        if not 0.5 <= lo <= hi <= 2.0:
            raise InvalidInputError(f"duration_stretch_range must lie in 0.5..2.0, got {self.duration_stretch_range}")
        lo, hi = self.f0_scale_range
        if not 0.5 <= lo <= hi <= 2.0:
            raise InvalidInputError(f"f0_scale_range must lie in 0.5..2.0, got {self.f0_scale_range}")


def flite_available() -> bool:
    """Whether the ``flite`` executable is on PATH."""
    return shutil.which("flite") is not None


def _require_flite() -> str:
    return require_executable("flite", "its recorded-speaker voices")


@functools.lru_cache(maxsize=1)
def installed_flite_voices() -> frozenset[str]:
    """The voice names ``flite -lv`` lists."""
    out = subprocess.run([_require_flite(), "-lv"], capture_output=True, text=True, check=False).stdout
    # "Voices available: kal awb_time kal16 awb rms slt"
    return frozenset(out.split(":", 1)[1].split()) if ":" in out else frozenset()


def list_flite_voices(names: Iterable[str] | None = None) -> list[FliteVoice]:
    """The :data:`FLITE_VOICES` this flite has (all of ``names``, or an error, when given)."""
    have = installed_flite_voices()
    known = {v.name: v for v in FLITE_VOICES}
    if names is None:
        return [v for v in FLITE_VOICES if v.name in have]
    names = list(names)
    bad = [n for n in names if n not in known or n not in have]
    if bad:
        raise InvalidInputError(
            f"flite voice(s) {bad} unavailable; known and installed: {sorted(set(known) & have)}"
        )
    return [known[n] for n in names]


def _rendition_params(seed: int, voice: FliteVoice, digit: int, rendition: int,
                      config: FliteConfig) -> tuple[float, int | None]:
    """(duration_stretch, target mean pitch in Hz or None), rounded so cache keys repeat."""
    rng = np.random.default_rng([seed, zlib.crc32(voice.name.encode()), digit, rendition])
    stretch = round(float(rng.uniform(*config.duration_stretch_range)), 2)
    scale = float(rng.uniform(*config.f0_scale_range))
    f0 = None if voice.nominal_f0_hz is None else int(round(voice.nominal_f0_hz * scale))
    return stretch, f0


@functools.lru_cache(maxsize=1)
def _flite_version() -> str:
    out = subprocess.run([_require_flite(), "--version"], capture_output=True, text=True, check=False)
    # "... version: flite-2.2-current Sep 2018 (http://cmuflite.org)": part of the cache key.
    words = (out.stdout + out.stderr).split()
    return next((w for w in words if w.startswith("flite-")), "flite-unknown")


def synthesize_flite_digits(
    voices: Sequence[FliteVoice],
    *,
    digits: Iterable[int] = range(10),
    renditions_per_digit: int = 20,
    seed: int = 0,
    config: FliteConfig = FliteConfig(),
    cache_dir: str | os.PathLike | None = None,
    max_workers: int = 2,
) -> list[Clip]:
    """Every digit word in every flite voice, ``renditions_per_digit`` drawn renditions each.

    Clips are ordered by (voice, digit, rendition); ``speaker`` is ``flite-<voice>``.
    Deterministic given ``seed``. Draws that coincide after rounding share a cache file
    (and are then identical clips), which only happens for many renditions per digit.
    """
    voices = list(voices)
    digit_list = checked_request(voices, digits, renditions_per_digit, "synthesize_flite_digits")
    exe = _require_flite()
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir("flite")
    folder = root / _flite_version() / config.post.cache_tag()
    jobs = [
        (voice, digit, *_rendition_params(seed, voice, digit, k, config))
        for voice in voices for digit in digit_list for k in range(renditions_per_digit)
    ]

    def run(job) -> Clip:
        voice, digit, stretch, f0 = job
        word = DIGIT_WORDS[digit]
        settings = [f"duration_stretch={stretch:g}"] + ([] if f0 is None else [f"int_f0_target_mean={f0}"])

        def write_raw(raw_path: Path) -> None:
            cmd = [exe, "-voice", voice.name]
            for s in settings:
                cmd += ["--setf", s]
            run_synthesiser(cmd + ["-t", word, "-o", str(raw_path)], raw_path,
                            f"flite failed for voice {voice.name!r}")

        path = folder / voice.name / f"{word}_d{stretch:g}_f{f0 or 0}.wav"
        audio = render_cached(path, write_raw, config.post, what=f"flite voice {voice.name!r} saying {word!r}")
        return Clip(waveform=audio, digit=digit, speaker=f"flite-{voice.name}", source=FLITE_SOURCE,
                    name=f"{voice.name}/{path.name}")

    return run_in_order(run, jobs, max_workers)
