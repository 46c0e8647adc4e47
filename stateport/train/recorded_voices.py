"""Synthetic spoken digits from voices built from recordings of real speakers (flite, festival).

espeak-ng's voices are formant synthesis: hundreds of timbres, none of them a recorded human
vocal tract. These voices are made from recordings, so their spectra — formants, fricative
noise, glottal source — are those of real people:

- flite (``apt-get install flite``): ``kal16``, a diphone voice of a US male; ``awb``,
  ``rms``, ``slt``, statistical parametric voices trained on the CMU ARCTIC recordings of a
  Scottish male, a US male and a US female. (``kal``, the 8 kHz twin of ``kal16``, and
  ``awb_time``, a talking clock, are left out.)
- festival (``apt-get install festival festvox-kdlpc16k``): ``ked``, a diphone voice of a
  second US male. (festival's other installable English voices are the same people as
  flite's ``kal16`` and ``slt``.)

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

RECORDED_SOURCE = "recorded-voices"


@dataclass(frozen=True)
class RecordedVoice:
    """A voice, the synthesiser (``engine``) that speaks it and its own mean pitch in Hz
    (None: the voice ignores a pitch target).

    The nominal pitches were measured here (median autocorrelation pitch of "seven nine";
    flite 2.2), or, for festival's ked, are its own ``target_f0_mean``: rms ignores
    ``int_f0_target_mean``, so its pitch varies only through the trainer's speed perturbation.
    """

    name: str
    nominal_f0_hz: float | None
    engine: str = "flite"

    @property
    def speaker(self) -> str:
        """The clips' speaker name, e.g. ``flite-slt`` or ``festival-ked``."""
        return f"{self.engine}-{self.name}"


RECORDED_VOICES = (
    RecordedVoice("kal16", 101.0),
    RecordedVoice("awb", 130.0),
    RecordedVoice("rms", None),
    RecordedVoice("slt", 180.0),
    RecordedVoice("ked", 105.0, "festival"),
)
"""Every voice known here; a recipe names the ones it uses (``TrainConfig.recorded_voices``,
the shipped four flite voices by default)."""


@dataclass(frozen=True)
class RenditionConfig:
    """How each rendition is drawn.

    duration_stretch_range: flite's ``duration_stretch``, festival's ``Duration_Stretch``
        (1 = the voice's own tempo; > 1 slower).
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


_EXECUTABLES = {"flite": ("flite",), "festival": ("festival", "text2wave")}  # what each engine runs


def engine_available(engine: str) -> bool:
    """Whether the synthesiser's executable is on PATH (``flite``; ``festival`` and ``text2wave``)."""
    return all(shutil.which(exe) is not None for exe in _EXECUTABLES[engine])


@functools.lru_cache(maxsize=None)
def installed_voices(engine: str) -> frozenset[str]:
    """The voice names the engine lists (festival's ``ked_diphone`` as ``ked``); empty if absent."""
    if not engine_available(engine):
        return frozenset()
    if engine == "flite":
        out = subprocess.run(["flite", "-lv"], capture_output=True, text=True, check=False).stdout
        # "Voices available: kal awb_time kal16 awb rms slt"
        return frozenset(out.split(":", 1)[1].split()) if ":" in out else frozenset()
    out = subprocess.run(["festival", "--pipe"], input="(print (voice.list))", capture_output=True,
                         text=True, check=False).stdout  # "(ked_diphone)"
    return frozenset(n.removesuffix("_diphone") for n in out.strip().strip("()").split())


def list_recorded_voices(names: Iterable[str] | None = None) -> list[RecordedVoice]:
    """The :data:`RECORDED_VOICES` installed here, or all of ``names`` (else a typed error).

    An error names the voices that are known and installed, and the packages that bring
    the missing ones.
    """
    known = {v.name: v for v in RECORDED_VOICES}
    have = {n for n, v in known.items() if n in installed_voices(v.engine)}
    if names is None:
        return [v for v in RECORDED_VOICES if v.name in have]
    names = list(names)
    bad = [n for n in names if n not in have]
    if bad:
        raise InvalidInputError(
            f"recorded voice(s) {bad} unavailable; known: {sorted(known)}, installed: {sorted(have)} "
            "(flite's come with 'apt-get install flite', ked with 'apt-get install festival festvox-kdlpc16k')"
        )
    return [known[n] for n in names]


def _rendition_params(seed: int, voice: RecordedVoice, digit: int, rendition: int,
                      config: RenditionConfig) -> tuple[float, int | None]:
    """(duration_stretch, target mean pitch in Hz or None), rounded so cache keys repeat."""
    rng = np.random.default_rng([seed, zlib.crc32(voice.name.encode()), digit, rendition])
    stretch = round(float(rng.uniform(*config.duration_stretch_range)), 2)
    scale = float(rng.uniform(*config.f0_scale_range))
    f0 = None if voice.nominal_f0_hz is None else int(round(voice.nominal_f0_hz * scale))
    return stretch, f0


@functools.lru_cache(maxsize=None)
def _engine_version(engine: str) -> str:
    """``flite-2.2`` / ``festival-2.5.0``: part of the cache key (audio may change with it)."""
    if engine == "flite":
        out = subprocess.run(["flite", "--version"], capture_output=True, text=True, check=False)
        # "... version: flite-2.2-current Sep 2018 (http://cmuflite.org)"
        words = (out.stdout + out.stderr).split()
        return next((w for w in words if w.startswith("flite-")), "flite-unknown")
    out = subprocess.run(["festival", "--version"], capture_output=True, text=True, check=False)
    # "festival: Festival Speech Synthesis System: 2.5.0:release December 2017"
    parts = out.stdout.split(": ")
    return "festival-" + (parts[2].split(":")[0] if len(parts) > 2 else "unknown")


def _flite_command(voice: RecordedVoice, word: str, stretch: float, f0: int | None, raw_path: Path) -> list:
    cmd = ["flite", "-voice", voice.name, "--setf", f"duration_stretch={stretch:g}"]
    if f0 is not None:
        cmd += ["--setf", f"int_f0_target_mean={f0}"]
    return cmd + ["-t", word, "-o", str(raw_path)]


def _festival_command(voice: RecordedVoice, word: str, stretch: float, f0: int | None, raw_path: Path) -> list:
    # text2wave reads the text from a file; the word goes next to the output and is removed
    # with it. The diphone voices take their pitch from int_lr_params (model 170 +- 34 Hz is
    # festival's own setting, the target is what is drawn).
    text_path = raw_path.with_suffix(".txt")
    text_path.write_text(word + "\n")
    evals = [f"(voice_{voice.name}_diphone)", f"(Parameter.set 'Duration_Stretch {stretch:g})"]
    if f0 is not None:
        evals.append(f"(set! int_lr_params '((target_f0_mean {f0}) (target_f0_std 15) "
                     "(model_f0_mean 170) (model_f0_std 34)))")
    cmd = ["text2wave", "-o", str(raw_path)]
    for e in evals:
        cmd += ["-eval", e]
    return cmd + [str(text_path)]


_COMMANDS = {"flite": _flite_command, "festival": _festival_command}


def synthesize_recorded_digits(
    voices: Sequence[RecordedVoice],
    *,
    digits: Iterable[int] = range(10),
    renditions_per_digit: int = 20,
    seed: int = 0,
    config: RenditionConfig = RenditionConfig(),
    cache_dir: str | os.PathLike | None = None,
    max_workers: int = 2,
) -> list[Clip]:
    """Every digit word in every voice, ``renditions_per_digit`` drawn renditions each.

    Clips are ordered by (voice, digit, rendition); ``speaker`` is the voice's
    :attr:`RecordedVoice.speaker`. Deterministic given ``seed``. Draws that coincide after
    rounding share a cache file (and are then identical clips), which only happens for many
    renditions per digit.
    """
    voices = list(voices)
    digit_list = checked_request(voices, digits, renditions_per_digit, "synthesize_recorded_digits")
    for engine in sorted({v.engine for v in voices}):
        for exe in _EXECUTABLES[engine]:
            require_executable(exe, f"the {engine} voices")
    jobs = [
        (voice, digit, *_rendition_params(seed, voice, digit, k, config))
        for voice in voices for digit in digit_list for k in range(renditions_per_digit)
    ]

    def run(job) -> Clip:
        voice, digit, stretch, f0 = job
        word = DIGIT_WORDS[digit]
        root = Path(cache_dir) if cache_dir is not None else default_cache_dir(voice.engine)
        path = (root / _engine_version(voice.engine) / config.post.cache_tag() / voice.name
                / f"{word}_d{stretch:g}_f{f0 or 0}.wav")

        def write_raw(raw_path: Path) -> None:
            try:
                run_synthesiser(_COMMANDS[voice.engine](voice, word, stretch, f0, raw_path), raw_path,
                                f"{voice.engine} failed for voice {voice.name!r}")
            finally:
                raw_path.with_suffix(".txt").unlink(missing_ok=True)

        audio = render_cached(path, write_raw, config.post, what=f"{voice.engine} voice {voice.name!r} saying {word!r}")
        return Clip(waveform=audio, digit=digit, speaker=voice.speaker, source=RECORDED_SOURCE,
                    name=f"{voice.name}/{path.name}")

    return run_in_order(run, jobs, max_workers)
