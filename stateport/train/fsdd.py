"""Free Spoken Digit Dataset (FSDD): real human digits, loaded as 16 kHz clips, split by speaker.

The recordings are 8 kHz mono 16-bit WAV named ``{digit}_{speaker}_{index}.wav``. The data
is located through the environment variable ``STATEPORT_FSDD_DIR``, else at
``<repo>/../shared/data/fsdd`` next to the checkout.

License: FSDD is CC BY-SA 4.0 (Zohar Jackson and contributors). Anything derived from it that
is redistributed (composed data sets, and arguably models' provenance) must carry
:data:`FSDD_ATTRIBUTION`.

With only five speakers, results depend heavily on which speaker is held out (measured during
development: 4 % .. 50 % WER for a never-heard speaker), so the split helpers produce a
leave-one-speaker-out split for every speaker, each with a separate development speaker for
checkpoint selection: never choose checkpoints on the test speaker.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import soundfile as sf

from ..errors import InvalidInputError, MissingDataError
from .clips import TRAIN_SAMPLE_RATE_HZ, Clip, resample

FSDD_DIR_ENV = "STATEPORT_FSDD_DIR"
FSDD_SAMPLE_RATE_HZ = 8_000
FSDD_SPEAKERS = ("george", "jackson", "lucas", "nicolas", "yweweler")
FSDD_SOURCE = "fsdd"
FSDD_TEST_INDICES = tuple(range(0, 5))
"""The data set's own convention: indices 0-4 of each speaker and digit are its test split."""
FSDD_TRAIN_INDICES = tuple(range(5, 50))
FSDD_URL = "https://github.com/Jakobovski/free-spoken-digit-dataset"
FSDD_ATTRIBUTION = (
    f"Free Spoken Digit Dataset, Zohar Jackson and contributors, {FSDD_URL}, CC BY-SA 4.0"
)

_FILE_RE = re.compile(r"^(\d)_([a-z]+)_(\d+)\.wav$")


def fsdd_dir() -> Path:
    """The FSDD ``recordings`` folder: ``$STATEPORT_FSDD_DIR``, else ``<checkout>/../shared/data/fsdd`` in a checkout.

    Either the data set root (holding ``recordings/``) or the recordings folder itself is
    accepted. Raises MissingDataError (exit 2) naming where it looked, the variable and where FSDD
    comes from: only training, the accuracy table, the drift soak, QAT and quantizing without
    ``--calib`` need it (the demo and the runtime run on what the package ships).
    """
    env = os.environ.get(FSDD_DIR_ENV)
    # stateport/train/fsdd.py -> parents[2] is the checkout's root (an installed package has none).
    checkout = Path(__file__).resolve().parents[2]
    default = checkout.parent / "shared" / "data" / "fsdd" if (checkout / "pyproject.toml").is_file() else None
    root = Path(env) if env else default
    for candidate in () if root is None else (root / "recordings", root):
        if candidate.is_dir() and any(candidate.glob("*_*_*.wav")):
            return candidate
    if env:
        where = f"${FSDD_DIR_ENV}={env!r}"
    else:
        where = f"{default} (next to the checkout), and " if default else ""
        where += f"{FSDD_DIR_ENV} is not set"
    raise MissingDataError(
        f"FSDD recordings not found ({where}): training, `quantize --table`, `drift`, qat-int8 and quantizing "
        f"without --calib read the Free Spoken Digit Dataset (CC BY-SA 4.0): `git clone {FSDD_URL}` and set "
        f"{FSDD_DIR_ENV} to that folder (or its recordings/ of '{{digit}}_{{speaker}}_{{index}}.wav' files)"
    )


def load_fsdd(
    speakers: Iterable[str] | None = None,
    indices: Iterable[int] | None = None,
    *,
    digits: Iterable[int] | None = None,
    data_dir: str | os.PathLike | None = None,
) -> list[Clip]:
    """Load FSDD clips resampled from 8 kHz to 16 kHz, sorted by (speaker, digit, index).

    speakers: names to load (default: every speaker found); an unknown name is an error.
    indices: recording indices 0..49 to load (default all), e.g. ``FSDD_TRAIN_INDICES``.
    digits: digits 0..9 to load (default all).
    data_dir: overrides :func:`fsdd_dir`.
    Returns clips whose waveform is float32 [2 * N_8k] in [-1, 1]; levels are left as
    recorded (they differ ~10x between speakers; augmentation handles level).
    """
    folder = Path(data_dir) if data_dir is not None else fsdd_dir()
    if data_dir is not None and (folder / "recordings").is_dir():
        folder = folder / "recordings"
    entries = []
    for path in folder.glob("*.wav"):
        m = _FILE_RE.match(path.name)
        if m:
            entries.append((m.group(2), int(m.group(1)), int(m.group(3)), path))
    if not entries:
        raise InvalidInputError(f"no FSDD recordings ('{{digit}}_{{speaker}}_{{index}}.wav') in {folder}")
    found = sorted({e[0] for e in entries})
    wanted_speakers = set(found) if speakers is None else _as_name_set(speakers, "speakers")
    unknown = wanted_speakers - set(found)
    if unknown:
        raise InvalidInputError(f"unknown FSDD speaker(s) {sorted(unknown)}; available: {found}")
    wanted_indices = None if indices is None else _int_set(indices, "indices", 0, 49)
    wanted_digits = None if digits is None else _int_set(digits, "digits", 0, 9)

    clips = []
    for speaker, digit, index, path in sorted(entries):
        if speaker not in wanted_speakers:
            continue
        if wanted_indices is not None and index not in wanted_indices:
            continue
        if wanted_digits is not None and digit not in wanted_digits:
            continue
        clips.append(_load_clip(path, speaker, digit))
    if not clips:
        raise InvalidInputError(
            f"no FSDD clip matches speakers={sorted(wanted_speakers)}, "
            f"indices={None if wanted_indices is None else sorted(wanted_indices)}, "
            f"digits={None if wanted_digits is None else sorted(wanted_digits)}"
        )
    return clips


def _load_clip(path: Path, speaker: str, digit: int) -> Clip:
    data, rate_hz = sf.read(str(path), dtype="float32", always_2d=True)
    # A few public FSDD files are stereo-tagged; average channels rather than drop one.
    waveform = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    waveform = resample(waveform, rate_hz, TRAIN_SAMPLE_RATE_HZ)
    # Resampling can overshoot by a hair on full-scale transients; keep the [-1, 1] promise.
    np.clip(waveform, -1.0, 1.0, out=waveform)
    return Clip(waveform=waveform, digit=digit, speaker=speaker, source=FSDD_SOURCE, name=path.name)


def _as_name_set(names: Iterable[str], what: str) -> set[str]:
    if isinstance(names, str):
        # A bare string would iterate into letters; accept it as one name.
        return {names}
    out = set(names)
    if not all(isinstance(n, str) for n in out):
        raise InvalidInputError(f"{what} must be strings, got {sorted(map(repr, out))}")
    return out


def _int_set(values: Iterable[int], what: str, low: int, high: int) -> set[int]:
    """``values`` as a set of integers in [low, high], or InvalidInputError saying what was expected."""
    try:
        out = {int(v) for v in values}
    except (TypeError, ValueError):
        raise InvalidInputError(f"{what} must be integers {low}..{high}, got {values!r}") from None
    bad = sorted(v for v in out if not low <= v <= high)
    if bad:
        raise InvalidInputError(f"{what} must be in {low}..{high}, got {bad}")
    return out


@dataclass(frozen=True)
class SpeakerSplit:
    """Disjoint speaker sets: train on ``train``, pick checkpoints on ``dev``, report ``test``."""

    train: tuple[str, ...]
    dev: tuple[str, ...]
    test: tuple[str, ...]

    def __post_init__(self) -> None:
        for a, b in (("train", "dev"), ("train", "test"), ("dev", "test")):
            shared = set(getattr(self, a)) & set(getattr(self, b))
            if shared:
                raise InvalidInputError(f"speaker split leaks {sorted(shared)} between {a} and {b}")
        if not self.train:
            raise InvalidInputError("a speaker split needs at least one training speaker")


def leave_one_speaker_out(
    test_speaker: str,
    *,
    dev_speaker: str | None = "next",
    speakers: Sequence[str] = FSDD_SPEAKERS,
) -> SpeakerSplit:
    """Hold out ``test_speaker``; train on the rest except an optional development speaker.

    dev_speaker: a speaker name, ``"next"`` (default: the speaker after the test one in
    ``speakers``, cyclically, so every speaker is dev exactly once over all splits), or None
    for no development speaker.
    """
    speakers = tuple(speakers)
    if test_speaker not in speakers:
        raise InvalidInputError(f"unknown test speaker {test_speaker!r}; available: {list(speakers)}")
    if dev_speaker == "next":
        dev_speaker = speakers[(speakers.index(test_speaker) + 1) % len(speakers)]
    if dev_speaker is not None and dev_speaker not in speakers:
        raise InvalidInputError(f"unknown dev speaker {dev_speaker!r}; available: {list(speakers)}")
    if dev_speaker == test_speaker:
        raise InvalidInputError(f"the dev speaker must differ from the test speaker {test_speaker!r}")
    dev = () if dev_speaker is None else (dev_speaker,)
    train = tuple(s for s in speakers if s != test_speaker and s not in dev)
    return SpeakerSplit(train=train, dev=dev, test=(test_speaker,))


def leave_one_speaker_out_splits(
    speakers: Sequence[str] = FSDD_SPEAKERS, *, with_dev: bool = True
) -> list[SpeakerSplit]:
    """One :func:`leave_one_speaker_out` split per speaker, in the order of ``speakers``."""
    return [
        leave_one_speaker_out(s, dev_speaker="next" if with_dev else None, speakers=speakers)
        for s in speakers
    ]


def select_speakers(clips: Iterable[Clip], speakers: Iterable[str]) -> list[Clip]:
    """The clips spoken by one of ``speakers`` (order kept)."""
    wanted = _as_name_set(speakers, "speakers")
    return [c for c in clips if c.speaker in wanted]
