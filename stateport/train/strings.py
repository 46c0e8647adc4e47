"""Whole utterances spoken by a synthesiser in one go, with where each word lies.

Isolated digit words composed with pauses are not how people say digits: at a natural rate
the words run into each other, each shaped by its neighbours, and a repeated digit ("four one
one seven") has no pause to separate its copies. Measured on the previous built-in model,
espeak-ng's default rate lost a repeated digit and ten digits came back as seven (issue 21).
Here a synthesiser speaks the whole string, and its own timing gives each word's sample span,
which the emission-restricted CTC needs:

- espeak-ng: through its C library (``libespeak-ng.so.1``, ctypes), whose synthesis
  callback reports each word's first sample (a word ends where the next begins; the last
  ends with the audio). The command-line tool has no way to print word timing.
- flite: ``-psdur`` prints every segment's end time; the digit words' phones (flite's own
  lexicon, :data:`FLITE_DIGIT_PHONES`) group them into words.
- festival: a Scheme script prints each word's start and end from its ``SylStructure``.

Every utterance is trimmed at the native rate (word spans shifted with it), resampled to
16 kHz, peak-normalised and cached on disk with its spans (a JSON file written after the WAV,
both through atomic renames, so a cached entry is whole or absent).
The same functions speak sentences without digits (:mod:`stateport.train.speech`).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import subprocess
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf

from ..errors import InvalidInputError, MissingDependencyError
from .clips import DIGIT_WORDS, TRAIN_SAMPLE_RATE_HZ, resample, trim_bounds
from .data import SpokenString, digits_to_token_ids
from .recorded_voices import RecordedVoice, _engine_version, list_recorded_voices
from .synth import EspeakVoice, SynthesisConfig, default_cache_dir, espeak_version, require_executable

ENGINES = ("espeak", "flite", "festival")

FLITE_DIGIT_PHONES = {"zero": 4, "one": 3, "two": 2, "three": 3, "four": 3, "five": 3, "six": 4, "seven": 5,
                      "eight": 2, "nine": 3}
"""Phones per digit word in flite 2.2's lexicon (z ih r ow, w ah n, t uw, th r iy, f ao r, f ay v,
s ih k s, s eh v ax n, ey t, n ay n): how ``-psdur`` segments group into words."""


@dataclass(frozen=True)
class Voice:
    """A synthesiser voice: ``engine`` in :data:`ENGINES` and its name there (``en-us+m3``, ``slt``, ``ked``)."""

    engine: str
    name: str

    def __post_init__(self):
        if self.engine not in ENGINES:
            raise InvalidInputError(f"engine must be one of {ENGINES}, got {self.engine!r}")

    @property
    def speaker(self) -> str:
        """The speaker name of its audio, as the clip sources spell it (``en-us+m3``, ``flite-slt``)."""
        return self.name if self.engine == "espeak" else f"{self.engine}-{self.name}"

    @classmethod
    def of(cls, voice) -> "Voice":
        """From an :class:`EspeakVoice` or a :class:`RecordedVoice`."""
        if isinstance(voice, EspeakVoice):
            return cls("espeak", voice.name)
        if isinstance(voice, RecordedVoice):
            return cls(voice.engine, voice.name)
        if isinstance(voice, Voice):
            return voice
        raise InvalidInputError(f"expected an espeak-ng or recorded voice, got {voice!r}")


@dataclass(frozen=True)
class Delivery:
    """How fast (and where the engine allows, how high) a voice speaks one utterance.

    tempo: relative speaking rate, 1 = the engine's default (espeak-ng 175 words per minute;
    flite's and festival's own durations), 1.5 = half as fast again. pitch: espeak-ng's ``-p``
    (0-99, default 50); the recorded voices keep their own pitch.
    """

    tempo: float = 1.0
    pitch: int = 50

    def __post_init__(self):
        if not 0.4 <= self.tempo <= 2.5:
            raise InvalidInputError(f"tempo must be in 0.4..2.5, got {self.tempo}")
        if not 0 <= self.pitch <= 99:
            raise InvalidInputError(f"pitch must be in 0..99, got {self.pitch}")

    def tag(self) -> str:
        return f"t{self.tempo:.3f}_p{self.pitch}"


ESPEAK_DEFAULT_WPM = 175


class _EspeakLibrary:
    """espeak-ng's C library in synchronous mode, one synthesis at a time (it keeps global state)."""

    _lock = threading.Lock()
    _lib = None
    _rate_hz = 0

    class _Event(ctypes.Structure):
        _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                    ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                    ("user_data", ctypes.c_void_p), ("id", ctypes.c_char * 8)]

    class _VoiceSelector(ctypes.Structure):  # espeak_VOICE
        _fields_ = [("name", ctypes.c_char_p), ("languages", ctypes.c_char_p), ("identifier", ctypes.c_char_p),
                    ("gender", ctypes.c_ubyte), ("age", ctypes.c_ubyte), ("variant", ctypes.c_ubyte),
                    ("xx1", ctypes.c_ubyte), ("score", ctypes.c_int), ("spare", ctypes.c_void_p)]

    _CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                 ctypes.POINTER(_Event))
    _WORD_EVENT, _LIST_TERMINATOR = 1, 0
    _RATE, _VOLUME, _PITCH = 1, 2, 3  # espeak_PARAMETER
    _SYNCHRONOUS, _POS_CHARACTER = 2, 1

    @classmethod
    def speak(cls, voice: str, text: str, *, wpm: int, pitch: int, amplitude: int) -> tuple[np.ndarray, list, int]:
        """(int16 samples [N], [(1-based character position, first sample)] of each word event, sample rate)."""
        with cls._lock:
            lib = cls._load()
            chunks, starts = [], []

            def callback(wav, count, events):
                if count > 0:
                    chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
                i = 0
                while events[i].type != cls._LIST_TERMINATOR:
                    if events[i].type == cls._WORD_EVENT:
                        starts.append((int(events[i].text_position), int(events[i].sample)))
                    i += 1
                return 0

            keep = cls._CALLBACK(callback)  # referenced until synthesis ends
            lib.espeak_SetSynthCallback(keep)
            # As the espeak-ng command line does: a voice name, else a language (en-gb+f2).
            if lib.espeak_SetVoiceByName(voice.encode()) != 0:
                selector = cls._VoiceSelector(languages=voice.encode())
                if lib.espeak_SetVoiceByProperties(ctypes.byref(selector)) != 0:
                    raise InvalidInputError(f"espeak-ng has no voice {voice!r}")
            for param, value in ((cls._RATE, wpm), (cls._PITCH, pitch), (cls._VOLUME, amplitude)):
                lib.espeak_SetParameter(param, int(value), 0)
            data = text.encode()
            status = lib.espeak_Synth(data, len(data) + 1, 0, cls._POS_CHARACTER, 0, 0, None, None)
            lib.espeak_Synchronize()
            if status != 0 or not chunks:
                raise InvalidInputError(f"espeak-ng failed to speak {text!r} in voice {voice!r} (status {status})")
            return np.concatenate(chunks), starts, cls._rate_hz

    @classmethod
    def _load(cls):
        if cls._lib is None:
            require_executable("espeak-ng", "spoken digit strings")
            try:
                lib = ctypes.cdll.LoadLibrary("libespeak-ng.so.1")
            except OSError as e:
                raise MissingDependencyError(f"espeak-ng's library libespeak-ng.so.1 is missing ({e}); "
                                             "install it with 'apt-get install espeak-ng'") from e
            cls._rate_hz = lib.espeak_Initialize(cls._SYNCHRONOUS, 0, None, 0)
            if cls._rate_hz <= 0:
                raise InvalidInputError(f"espeak-ng's library failed to initialise ({cls._rate_hz})")
            cls._lib = lib
        return cls._lib


def _word_spans(starts: Sequence[int], num_samples: int) -> np.ndarray:
    """Word spans int64 [W, 2] from each word's first sample: a word ends where the next begins."""
    s = np.asarray(starts, np.int64)
    return np.stack([s, np.append(s[1:], num_samples)], axis=1) if s.size else np.zeros((0, 2), np.int64)


def _speak_espeak(voice: Voice, text: str, delivery: Delivery, config: SynthesisConfig, digit_words: bool):
    samples, events, rate = _EspeakLibrary.speak(voice.name, text, wpm=round(ESPEAK_DEFAULT_WPM * delivery.tempo),
                                                 pitch=delivery.pitch, amplitude=config.amplitude)
    audio = samples.astype(np.float32) / 32768.0
    if not digit_words:
        return audio, np.zeros((0, 2), np.int64), rate
    # Word events by the character where the word starts (espeak-ng may report a word twice,
    # e.g. at a clause boundary): the first event at each of the text's words.
    first = {}
    for position, sample in events:
        first.setdefault(position, sample)
    positions, at = [], 0
    for w in text.split(" "):
        positions.append(at + 1)
        at += len(w) + 1
    if any(p not in first for p in positions):
        raise InvalidInputError(f"espeak-ng reported no word event for some word of {text!r} ({events})")
    return audio, _word_spans([first[p] for p in positions], samples.shape[0]), rate


def _speak_flite(voice: Voice, text: str, delivery: Delivery, tmp: Path, digit_words: bool):
    cmd = ["flite", "-voice", voice.name, "--setf", f"duration_stretch={1.0 / delivery.tempo:.4f}",
           "-t", text, "-o", str(tmp), "-psdur"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not tmp.is_file():
        raise InvalidInputError(f"flite failed for voice {voice.name!r} (exit {proc.returncode}): {proc.stderr.strip()}")
    audio, rate = sf.read(str(tmp), dtype="float32")
    spans = np.zeros((0, 2), np.int64)
    if digit_words:  # group the phones into the digit words
        segments = [tok.rsplit(":", 1) for tok in proc.stdout.split()]
        bounds, prev = [], 0.0
        for name, end in segments:
            bounds.append((name, prev, float(end)))
            prev = float(end)
        phones = [(a, b) for name, a, b in bounds if name != "pau"]
        out, i = [], 0
        for word in text.split():
            n = FLITE_DIGIT_PHONES[word]
            if i + n > len(phones):
                break
            out.append((phones[i][0], phones[i + n - 1][1]))
            i += n
        if i != len(phones) or len(out) != len(text.split()):
            raise InvalidInputError(f"flite's segments of {text!r} do not group into its words: {proc.stdout!r}")
        spans = np.round(np.asarray(out) * rate).astype(np.int64)
    return audio, spans, rate


_FESTIVAL_SCRIPT = """(voice_{voice}_diphone)
(Parameter.set 'Duration_Stretch {stretch:.4f})
(set! utt (utt.synth (Utterance Text "{text}")))
(utt.save.wave utt "{wav}" 'riff)
(mapcar (lambda (w) (format t "%f %f\\n" (item.feat w "R:SylStructure.daughter1.daughter1.R:Segment.p.end")
  (item.feat w "R:SylStructure.daughtern.daughtern.end"))) (utt.relation.items utt 'Word))
"""


def _speak_festival(voice: Voice, text: str, delivery: Delivery, tmp: Path):
    require_executable("festival", "festival voices")
    script = tmp.with_suffix(".scm")
    script.write_text(_FESTIVAL_SCRIPT.format(voice=voice.name, stretch=1.0 / delivery.tempo, wav=tmp,
                                              text=text.replace('"', "")))
    try:
        proc = subprocess.run(["festival", "--batch", str(script)], capture_output=True, text=True, check=False)
    finally:
        script.unlink(missing_ok=True)
    if proc.returncode != 0 or not tmp.is_file():
        raise InvalidInputError(f"festival failed for voice {voice.name!r} (exit {proc.returncode}): "
                                f"{proc.stderr.strip()}")
    audio, rate = sf.read(str(tmp), dtype="float32")
    times = [tuple(map(float, line.split())) for line in proc.stdout.splitlines() if line.strip()]
    return audio, np.round(np.asarray(times).reshape(-1, 2) * rate).astype(np.int64), rate


def _engine_tag(engine: str) -> str:
    return f"espeak-ng-{espeak_version()}" if engine == "espeak" else _engine_version(engine)


def speak(voice: Voice, text: str, delivery: Delivery = Delivery(), *, digit_words: bool = True,
          config: SynthesisConfig = SynthesisConfig(), cache_dir: str | os.PathLike | None = None
          ) -> tuple[np.ndarray, np.ndarray]:
    """``voice`` says ``text`` in one go: (float32 [N] at 16 kHz, word spans int64 [W, 2] or [0, 2]).

    digit_words: the text is digit words, one span per word is returned (flite groups its
    phones by them); otherwise (sentences) spans are not needed and come back empty for flite.
    Trimmed (spans shifted), resampled, scaled to ``config.peak`` and cached.
    """
    words = text.split()
    text = " ".join(words)
    if not words:
        raise InvalidInputError("speak needs some text")
    if digit_words and any(w not in FLITE_DIGIT_PHONES for w in words):
        raise InvalidInputError(f"digit_words: {text!r} is not all digit words")
    key = hashlib.sha1(f"{text}|{digit_words}".encode()).hexdigest()[:16]
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir("strings")
    folder = root / _engine_tag(voice.engine) / config.cache_tag() / voice.name / delivery.tag()
    wav_path, meta_path = folder / f"{key}.wav", folder / f"{key}.json"
    if meta_path.is_file() and wav_path.is_file():
        audio, rate = sf.read(str(wav_path), dtype="float32")
        meta = json.loads(meta_path.read_text())
        if rate == TRAIN_SAMPLE_RATE_HZ and meta.get("text") == text:
            return audio, np.asarray(meta["spans"], np.int64).reshape(-1, 2)
    folder.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}_{threading.get_ident()}"
    raw = folder / f".{key}.{tag}.raw.wav"
    try:
        if voice.engine == "espeak":
            audio, spans, rate = _speak_espeak(voice, text, delivery, config, digit_words)
        elif voice.engine == "flite":
            audio, spans, rate = _speak_flite(voice, text, delivery, raw, digit_words)
        else:
            audio, spans, rate = _speak_festival(voice, text, delivery, raw)
    finally:
        raw.unlink(missing_ok=True)
    if audio.ndim != 1:
        audio = audio.mean(axis=1)
    start, end = trim_bounds(audio, rate, threshold_db=config.trim_threshold_db, margin_ms=config.trim_margin_ms)
    if end <= start:
        raise InvalidInputError(f"{voice.engine} voice {voice.name!r} produced silence for {text!r}")
    out = resample(audio[start:end], rate, TRAIN_SAMPLE_RATE_HZ)
    out *= np.float32(config.peak / float(np.abs(out).max()))
    scale = out.shape[0] / (end - start)
    spans = np.clip(np.round((spans - start) * scale), 0, out.shape[0]).astype(np.int64).reshape(-1, 2)
    if digit_words and spans.shape[0] != len(words):
        raise InvalidInputError(f"{voice.engine} gave {spans.shape[0]} word spans for the {len(words)} of {text!r}")
    tmp_wav, tmp_meta = folder / f".{key}.{tag}.tmp.wav", folder / f".{key}.{tag}.tmp.json"
    sf.write(str(tmp_wav), out, TRAIN_SAMPLE_RATE_HZ, subtype="FLOAT")
    os.replace(tmp_wav, wav_path)
    tmp_meta.write_text(json.dumps({"text": text, "spans": spans.tolist()}))
    os.replace(tmp_meta, meta_path)  # last: a cached entry with its JSON is whole
    return out, spans


def digit_sequences(rng: np.random.Generator, count: int, num_digits_range: tuple[int, int],
                    repeat_probability: float = 0.0) -> list[list[int]]:
    """``count`` random digit lists, each digit after the first repeating the one before with
    ``repeat_probability`` (runs like 3 3 3 are common in real numbers)."""
    lo, hi = num_digits_range
    if not 1 <= lo <= hi:
        raise InvalidInputError(f"num_digits_range must be (low, high) with 1 <= low <= high, got {num_digits_range}")
    out = []
    for _ in range(count):
        digits = [int(rng.integers(10))]
        for _ in range(int(rng.integers(lo, hi + 1)) - 1):
            digits.append(digits[-1] if rng.random() < repeat_probability else int(rng.integers(10)))
        out.append(digits)
    return out


@dataclass(frozen=True)
class StringRecipe:
    """How a bank of spoken strings is drawn: digits per string, repeats, tempo and pitch ranges."""

    num_digits_range: tuple[int, int] = (2, 10)
    repeat_probability: float = 0.25
    tempo_range: tuple[float, float] = (0.8, 1.6)
    pitch_range: tuple[int, int] = (25, 75)


def spoken_strings(voices: Sequence, count: int, *, seed: int = 0, recipe: StringRecipe = StringRecipe(),
                   cache_dir: str | os.PathLike | None = None) -> list[SpokenString]:
    """``count`` digit strings, each in a voice drawn from ``voices`` at a drawn tempo and pitch.

    Deterministic given ``seed`` (each string's draws depend only on the seed and its index).
    """
    voices = [Voice.of(v) for v in voices]
    if not voices:
        raise InvalidInputError("spoken_strings needs at least one voice")
    out = []
    for i, digits in enumerate(digit_sequences(np.random.default_rng([seed, 7]), count, recipe.num_digits_range,
                                               recipe.repeat_probability)):
        rng = np.random.default_rng([seed, i])
        voice = voices[int(rng.integers(len(voices)))]
        delivery = Delivery(round(float(rng.uniform(*recipe.tempo_range)), 2),
                            int(rng.integers(recipe.pitch_range[0], recipe.pitch_range[1] + 1)))
        text = " ".join(DIGIT_WORDS[d] for d in digits)
        wave, spans = speak(voice, text, delivery, cache_dir=cache_dir)
        out.append(SpokenString(wave, digits_to_token_ids(digits), spans, voice.speaker, voice.engine, text))
    return out


def recorded_string_voices(names: Sequence[str]) -> list[Voice]:
    """flite/festival voices by name (a typed error names the missing ones)."""
    return [Voice.of(v) for v in list_recorded_voices(names)]


def stable_seed(*parts) -> int:
    """A seed from strings and ints that is the same in every process (unlike ``hash``)."""
    return zlib.crc32("|".join(map(str, parts)).encode())
