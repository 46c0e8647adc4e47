"""Synthetic spoken digits from espeak-ng: many voices, speeds and pitches, cached on disk.

A voice is an English accent (``en-us``, ``en-gb-scotland``, ...) combined with a voice
variant (``m3``, ``f2``, ``klatt4``, ...), spelled ``en-us+m3`` on the espeak-ng command
line. Only espeak-ng's own formant voices are used (the MBROLA ``mb-*`` voices need extra
packages). The variant carries the timbre (pitch range, formants, voicing), so it plays the
role of a speaker: :func:`split_espeak_voices` holds out whole variants, so no held-out
timbre is heard in training under any accent. (Accents alone would leak: ``en-us`` and
``en-us-nyc`` produce bit-identical audio for 7 of the 10 digit words.)

Every rendition is drawn deterministically from ``(seed, voice, digit, rendition)`` and
cached as a 16 kHz float32 WAV keyed by its parameters, so a re-run reads files instead of
calling espeak-ng. The caching and post-processing (:func:`render_cached`) and the request
checks are shared with the recorded-speaker voices (:mod:`stateport.train.recorded_voices`).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence, TypeVar

import numpy as np
import soundfile as sf

from ..errors import InvalidInputError, MissingDependencyError
from .clips import DIGIT_WORDS, TRAIN_SAMPLE_RATE_HZ, Clip, resample, trim_silence

ESPEAK_SOURCE = "espeak"
ESPEAK_SAMPLE_RATE_HZ = 22_050
CACHE_DIR_ENV = "STATEPORT_CACHE_DIR"

ESPEAK_LANGUAGES = (
    "en-us",
    "en-gb",
    "en-gb-scotland",
    "en-gb-x-gbclan",
    "en-gb-x-rp",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
)
"""espeak-ng's English accents that need no extra data (no MBROLA)."""

ESPEAK_VARIANTS = (
    # Stock male / female variants.
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8",
    "f1", "f2", "f3", "f4", "f5",
    # Klatt synthesiser variants (a different source model). klatt6 is left out: in
    # espeak-ng 1.51 it renders bit-identically to klatt.
    "klatt", "klatt2", "klatt3", "klatt4", "klatt5",
    # Named community variants that still sound like one adult human.
    "Alex", "Alicia", "Andrea", "Andy", "Annie", "AnxiousAndy", "Denis", "Diogo", "Gene",
    "Gene2", "Henrique", "Hugo", "Jacky", "Lee", "Marco", "Mario", "Michael", "Mike",
    "Nguyen", "Storm", "adam", "anika", "antonio", "aunty", "belinda", "benjamin", "boris",
    "croak", "david", "ed", "edward", "edward2", "grandma", "grandpa", "gustave", "iven",
    "iven2", "iven3", "iven4", "john", "kaukovalta", "linda", "marcelo", "max", "michel",
    "miguel", "norbert", "pablo", "paul", "pedro", "quincy", "rob", "robert", "sandro",
    "shelby", "steph", "steph2", "steph3", "travis", "victor",
)
"""Curated variants. Left out on purpose: whispered or unvoiced ones (whisper, whisperf,
caleb), heavy-echo robots (robosoft*, RicishayMax*, UniRobot, anikaRobot, announcer),
novelty voices (Demonic, Tweaky, zac, fast) and "Mr serious" (a space in its name)."""


@dataclass(frozen=True, order=True)
class EspeakVoice:
    """An espeak-ng voice: accent ``language`` plus optional timbre ``variant``."""

    language: str
    variant: str | None = None

    @property
    def name(self) -> str:
        """The ``-v`` argument of espeak-ng, e.g. ``en-us+m3``; also the clip's speaker."""
        return self.language if not self.variant else f"{self.language}+{self.variant}"


@dataclass(frozen=True)
class SynthesisConfig:
    """How each digit rendition is drawn and post-processed.

    speed_wpm_range: espeak-ng ``-s`` (words per minute; its default is 175), inclusive.
    pitch_range: espeak-ng ``-p`` (0..99, default 50), inclusive; shifts the variant's range.
    amplitude: espeak-ng ``-a``. Its default 100 clips some variants (Jacky, iven, Gene) at
        full scale; 50 leaves headroom and clips are peak-normalised afterwards anyway.
    peak: every clip is scaled to this peak, so synthetic voices start at one level and
        level variety comes from augmentation (FSDD clips keep their recorded levels).
    trim_threshold_db, trim_margin_ms: see :func:`stateport.train.clips.trim_silence`.
    """

    speed_wpm_range: tuple[int, int] = (130, 210)
    pitch_range: tuple[int, int] = (25, 75)
    amplitude: int = 50
    peak: float = 0.5
    trim_threshold_db: float = -50.0
    trim_margin_ms: float = 10.0

    def __post_init__(self) -> None:
        lo, hi = self.speed_wpm_range
        if not 80 <= lo <= hi <= 450:
            raise InvalidInputError(f"speed_wpm_range must lie in 80..450 wpm, got {self.speed_wpm_range}")
        lo, hi = self.pitch_range
        if not 0 <= lo <= hi <= 99:
            raise InvalidInputError(f"pitch_range must lie in 0..99, got {self.pitch_range}")
        if not 1 <= self.amplitude <= 200:
            raise InvalidInputError(f"amplitude must be in 1..200, got {self.amplitude}")
        if not 0.0 < self.peak <= 1.0:
            raise InvalidInputError(f"peak must be in (0, 1], got {self.peak}")

    def cache_tag(self) -> str:
        """The post-processing part of the cache key (speed and pitch are per file)."""
        return (
            f"a{self.amplitude}_{TRAIN_SAMPLE_RATE_HZ}hz_trim{self.trim_threshold_db:g}db"
            f"{self.trim_margin_ms:g}ms_peak{self.peak:g}"
        )


def espeak_available() -> bool:
    """Whether the ``espeak-ng`` executable is on PATH."""
    return shutil.which("espeak-ng") is not None


def require_executable(name: str, needed_for: str) -> str:
    """The path of synthesiser ``name`` (apt package of the same name), or a typed error."""
    exe = shutil.which(name)
    if exe is None:
        raise MissingDependencyError(
            f"{name} is not installed (needed for {needed_for}); "
            f"install it with your package manager, e.g. 'apt-get install {name}'"
        )
    return exe


def _require_espeak() -> str:
    return require_executable("espeak-ng", "synthetic digits")


@functools.lru_cache(maxsize=1)
def espeak_version() -> str:
    """espeak-ng's version string, e.g. ``1.51`` (part of the cache key: audio may change)."""
    out = subprocess.run([_require_espeak(), "--version"], capture_output=True, text=True, check=False)
    words = out.stdout.split()
    # "eSpeak NG text-to-speech: 1.51  Data at: ..."
    for i, w in enumerate(words):
        if w.endswith("text-to-speech:") and i + 1 < len(words):
            return words[i + 1]
    return "unknown"


def _installed_names(kind: str) -> tuple[set[str], set[str]]:
    """(languages, variants) that ``espeak-ng --voices=<kind>`` lists, MBROLA voices excluded."""
    out = subprocess.run(
        [_require_espeak(), f"--voices={kind}"], capture_output=True, text=True, check=False
    ).stdout
    languages, variants = set(), set()
    for line in out.splitlines()[1:]:
        # Columns: Pty Language Age/Gender VoiceName File [Other Languages]; VoiceName has
        # no spaces, File may ("!v/Mr serious"), so the variant is taken from "!v/" onward.
        cols = line.split()
        if len(cols) < 5:
            continue
        lang, file = cols[1], cols[4]
        if lang == "variant" and "!v/" in line:
            variants.add(line.split("!v/", 1)[1].split("(")[0].strip())
        elif file.startswith("gmw/"):
            languages.add(lang)
    return languages, variants


def list_espeak_voices(
    languages: Iterable[str] | None = None, variants: Iterable[str | None] | None = None
) -> list[EspeakVoice]:
    """Every (language, variant) pair of the given sets that this espeak-ng has installed.

    Defaults are :data:`ESPEAK_LANGUAGES` x :data:`ESPEAK_VARIANTS`. Names the installed
    espeak-ng lacks are dropped from the defaults but are an error when asked for
    explicitly. ``None`` as a variant means the accent's plain default voice.
    """
    have_languages, _ = _installed_names("en")
    _, have_variants = _installed_names("variant")
    explicit_l, explicit_v = languages is not None, variants is not None
    languages = list(ESPEAK_LANGUAGES if languages is None else languages)
    variants = list(ESPEAK_VARIANTS if variants is None else variants)
    missing = [l for l in languages if l not in have_languages]
    missing += [v for v in variants if v is not None and v not in have_variants]
    if missing and (explicit_l or explicit_v):
        raise InvalidInputError(f"espeak-ng {espeak_version()} lacks voice(s) {missing}")
    return [
        EspeakVoice(l, v)
        for l in languages
        if l in have_languages
        for v in variants
        if v is None or v in have_variants
    ]


def split_espeak_voices(
    voices: Sequence[EspeakVoice],
    *,
    held_out_variants: Iterable[str | None] | None = None,
    held_out_fraction: float = 0.2,
    seed: int = 0,
) -> tuple[list[EspeakVoice], list[EspeakVoice]]:
    """Split voices into (train, held_out) by variant, so no held-out timbre is trained on.

    held_out_variants: the variants to hold out; default: a seeded random
    ``held_out_fraction`` of the variants present (at least one).
    """
    present = sorted({v.variant for v in voices}, key=lambda x: "" if x is None else x)
    if held_out_variants is None:
        if not 0.0 < held_out_fraction < 1.0:
            raise InvalidInputError(f"held_out_fraction must be in (0, 1), got {held_out_fraction}")
        if len(present) < 2:
            raise InvalidInputError(f"need at least two variants to split, got {present}")
        count = min(len(present) - 1, max(1, int(round(held_out_fraction * len(present)))))
        order = np.random.default_rng(seed).permutation(len(present))
        held = {present[i] for i in order[:count]}
    else:
        held = set(held_out_variants)
        unknown = held - set(present)
        if unknown:
            raise InvalidInputError(f"held-out variant(s) {sorted(map(str, unknown))} are not among the voices")
    train = [v for v in voices if v.variant not in held]
    held_out = [v for v in voices if v.variant in held]
    return train, held_out


def default_cache_dir(engine: str = "espeak") -> Path:
    """``$STATEPORT_CACHE_DIR/<engine>`` or ``~/.cache/stateport/<engine>``."""
    root = os.environ.get(CACHE_DIR_ENV)
    base = Path(root) if root else Path.home() / ".cache" / "stateport"
    return base / engine


def _rendition_params(
    seed: int, voice: EspeakVoice, digit: int, rendition: int, config: SynthesisConfig
) -> tuple[int, int]:
    """(speed_wpm, pitch) of one rendition, independent of which other voices are requested."""
    # crc32 rather than hash(): Python salts str hashes per process.
    key = [seed, zlib.crc32(voice.name.encode()), digit, rendition]
    rng = np.random.default_rng(key)
    speed = int(rng.integers(config.speed_wpm_range[0], config.speed_wpm_range[1] + 1))
    pitch = int(rng.integers(config.pitch_range[0], config.pitch_range[1] + 1))
    return speed, pitch


def synthesize_word(
    voice: EspeakVoice,
    word: str,
    *,
    speed_wpm: int,
    pitch: int,
    config: SynthesisConfig = SynthesisConfig(),
    cache_dir: str | os.PathLike | None = None,
) -> tuple[np.ndarray, Path]:
    """One word from espeak-ng, trimmed and resampled: (float32 [N] at 16 kHz, cache path).

    Runs ``espeak-ng -v VOICE -s SPEED -p PITCH -a AMP -w out.wav WORD`` (22.05 kHz), trims
    silence at the native rate, resamples to 16 kHz, scales to ``config.peak`` and stores
    the result as a float32 WAV; a later call with the same parameters reads that file.
    Writes go through a temporary file and an atomic rename, so concurrent runs sharing
    the cache never see a half-written file.
    """
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder = root / f"espeak-ng-{espeak_version()}" / config.cache_tag() / voice.name

    def write_raw(raw_path: Path) -> None:
        run_synthesiser([
            _require_espeak(), "-v", voice.name, "-s", str(speed_wpm), "-p", str(pitch),
            "-a", str(config.amplitude), "-w", str(raw_path), word,
        ], raw_path, f"espeak-ng failed for voice {voice.name!r}")

    path = folder / f"{word}_s{speed_wpm}_p{pitch}.wav"
    return render_cached(path, write_raw, config, what=f"espeak-ng voice {voice.name!r} saying {word!r}"), path


def run_synthesiser(cmd: list, raw_path: Path, failure: str) -> None:
    """Run a synthesiser command that must write ``raw_path``; a typed error with its stderr if not."""
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not raw_path.is_file():
        raise InvalidInputError(f"{failure} (exit {proc.returncode}): {proc.stderr.strip()}")


def render_cached(
    path: Path, write_raw: Callable[[Path], None], config: SynthesisConfig, *, what: str
) -> np.ndarray:
    """A synthesiser's word as a trimmed, peak-normalised 16 kHz float32 clip, cached at ``path``.

    ``write_raw(tmp)`` makes the synthesiser write its native-rate WAV to ``tmp``. Silence is
    trimmed at the native rate, the rest is resampled to 16 kHz, scaled to ``config.peak``
    and stored as a float32 WAV through a temporary file and an atomic rename, so
    concurrent runs sharing the cache never see a half-written file. Shared by every
    synthesiser (espeak-ng here, flite and festival in :mod:`stateport.train.recorded_voices`).
    """
    if path.is_file():
        data, rate_hz = sf.read(str(path), dtype="float32")
        if rate_hz == TRAIN_SAMPLE_RATE_HZ and data.ndim == 1 and data.size:
            return data
    path.parent.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}_{threading.get_ident()}"
    raw_path = path.parent / f".{path.stem}.{tag}.raw.wav"
    tmp_path = path.parent / f".{path.stem}.{tag}.tmp.wav"
    try:
        write_raw(raw_path)
        try:
            raw, rate_hz = sf.read(str(raw_path), dtype="float32")
        except (sf.LibsndfileError, RuntimeError) as e:
            raise InvalidInputError(f"{what}: the synthesiser wrote no readable WAV ({e})") from e
        if raw.ndim != 1:
            raise InvalidInputError(f"{what}: expected mono audio, got shape {raw.shape}")
        trimmed = trim_silence(
            raw, rate_hz, threshold_db=config.trim_threshold_db, margin_ms=config.trim_margin_ms
        )
        if trimmed.size == 0:
            raise InvalidInputError(f"{what}: the synthesiser produced silence")
        audio = resample(trimmed, rate_hz, TRAIN_SAMPLE_RATE_HZ)
        audio *= np.float32(config.peak / float(np.abs(audio).max()))
        sf.write(str(tmp_path), audio, TRAIN_SAMPLE_RATE_HZ, subtype="FLOAT")
        os.replace(tmp_path, path)
    finally:
        for p in (raw_path, tmp_path):
            p.unlink(missing_ok=True)
    return audio.astype(np.float32, copy=False)


def synthesize_digits(
    voices: Sequence[EspeakVoice],
    *,
    digits: Iterable[int] = range(10),
    renditions_per_digit: int = 2,
    seed: int = 0,
    config: SynthesisConfig = SynthesisConfig(),
    cache_dir: str | os.PathLike | None = None,
    max_workers: int = 2,
) -> list[Clip]:
    """Every digit word in every voice, ``renditions_per_digit`` times with drawn speed/pitch.

    Returns clips ordered by (voice, digit, rendition); each clip's ``speaker`` is the
    voice name (``en-us+m3``) and its ``name`` the cache file's relative path. Deterministic
    given ``seed`` (a rendition's speed and pitch depend only on seed, voice, digit and
    rendition index). ``max_workers`` espeak-ng processes run at once.
    """
    voices = list(voices)
    digit_list = checked_request(voices, digits, renditions_per_digit, "synthesize_digits")
    _require_espeak()
    jobs = []
    for voice in voices:
        for digit in digit_list:
            for k in range(renditions_per_digit):
                speed, pitch = _rendition_params(seed, voice, digit, k, config)
                jobs.append((voice, digit, speed, pitch))

    def run(job):
        voice, digit, speed, pitch = job
        audio, path = synthesize_word(
            voice, DIGIT_WORDS[digit], speed_wpm=speed, pitch=pitch, config=config, cache_dir=cache_dir
        )
        return Clip(
            waveform=audio,
            digit=digit,
            speaker=voice.name,
            source=ESPEAK_SOURCE,
            name=f"{voice.name}/{path.name}",
        )

    return run_in_order(run, jobs, max_workers)


def checked_request(voices: Sequence, digits: Iterable[int], renditions_per_digit: int, caller: str) -> list[int]:
    """The sorted digits of a synthesis request, after checking voices and renditions."""
    if not voices:
        raise InvalidInputError(f"{caller} needs at least one voice")
    if renditions_per_digit < 1:
        raise InvalidInputError(f"renditions_per_digit must be >= 1, got {renditions_per_digit}")
    digit_list = sorted({int(d) for d in digits})
    if not digit_list or digit_list[0] < 0 or digit_list[-1] > 9:
        raise InvalidInputError(f"digits must be a non-empty subset of 0..9, got {digit_list}")
    return digit_list


_Job = TypeVar("_Job")


def run_in_order(run: Callable[[_Job], Clip], jobs: Sequence[_Job], max_workers: int) -> list[Clip]:
    """``[run(j) for j in jobs]`` on ``max_workers`` threads (synthesisers are subprocesses)."""
    if max_workers <= 1:
        return [run(j) for j in jobs]
    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        # map keeps job order, so the result does not depend on thread timing.
        return list(pool.map(run, jobs))


def espeak_voice_roles(voices: Sequence[EspeakVoice] | None = None) -> dict[str, list[EspeakVoice]]:
    """espeak-ng voices by role: ``train``, ``dev`` (choose checkpoints) and ``test`` (report).

    ``train`` is :func:`split_espeak_voices`' training part (unchanged, so older recipes
    replay); its held-out variants are dealt alternately, in sorted order, to ``dev`` and
    ``test``, so the voices a checkpoint is chosen on are never the ones it is reported on.
    """
    voices = list_espeak_voices() if voices is None else list(voices)
    train, held_out = split_espeak_voices(voices, seed=0)
    variants = sorted({v.variant for v in held_out}, key=lambda x: "" if x is None else x)
    dev_variants = set(variants[0::2])
    return {"train": train, "dev": [v for v in held_out if v.variant in dev_variants],
            "test": [v for v in held_out if v.variant not in dev_variants]}
