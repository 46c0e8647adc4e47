"""An evaluation that mirrors use: trimmed recordings, connected digits, speech without digits.

The padded sets of :mod:`stateport.train.evaluate` put silence around every clip and pauses
between digits; people do neither. Measured on the previous built-in model (issue 21):
trimmed recordings that end on their word came back empty, natural-rate strings lost digits,
and speech without digits came back as digits. Every set here is built as people make audio,
on speakers and voices never trained on, and nothing is appended to a recording:

- the held-out FSDD speaker's single-digit recordings exactly as FSDD ships them (8 kHz
  files, trimmed by FSDD's energy detector, no padding; the runtime resamples);
- connected strings of 4-10 digits (repeats like "three three three" drawn often) made from
  that speaker's recordings without a pause: butted together, overlapped by 30-80 ms with a
  cross-fade, or butted and then sped up 1.15-1.35x at the same pitch (sox tempo);
- connected strings spoken whole by held-out synthetic voices at their default and a fast
  rate: espeak-ng's test variants (:func:`espeak_voice_roles`), festival's ``ked`` and
  flite's ``rms`` (both recorded-speaker voices the recipe does not train on);
- speech without digits: sentences of :data:`stateport.train.speech.EVAL_WORDS` (a word list
  disjoint from training's) in those voices; real human speech where an installed package
  ships some (ALSA's speaker-test recordings, "Front Center" etc., GPL-2, read from
  ``/usr/share/sounds/alsa`` when present, never copied); coloured noise at three levels;
  digital silence and near-silence. Scored as false digits per minute.

Every recogniser decodes the same audio: ours through the client runtime as users run it
(:class:`RuntimeDigits`: ``Recognizer.transcribe`` with the card's end-of-input flush), PocketSphinx
(:mod:`stateport.train.peer`) as a peer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf

from ..errors import InvalidInputError
from ..runtime.recognizer import Recognizer
from .augment import change_tempo, colored_noise, db_to_gain
from .clips import TRAIN_SAMPLE_RATE_HZ, resample
from .data import ComposeConfig, compose_utterance, digits_to_token_ids
from .fsdd import fsdd_dir, load_fsdd
from .metrics import edit_distance, string_accuracy, word_error_rate

READ_MS = 20.0  # the microphone read size of the seed's client loop
ALSA_SOUNDS_DIR = Path("/usr/share/sounds/alsa")
NEGATIVE = "negative"  # EvalSet.kind of sets without digits (scored in false digits per minute)


@dataclass
class EvalSet:
    """Utterances with reference token ids: ``items`` is a list of (waveform float32 [N], ref ids).

    sample_rate_hz: the rate of every waveform of the set (FSDD's own files are 8 kHz; the
    runtime resamples, as it does for a user's file). kind: "digits", or :data:`NEGATIVE` for
    sets without digits. group: the part of the table the set belongs to.
    """

    name: str
    items: list
    sample_rate_hz: int = TRAIN_SAMPLE_RATE_HZ
    kind: str = "digits"
    group: str = ""
    notes: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------ sets


def trimmed_singles(speaker: str, *, indices=None) -> EvalSet:
    """The speaker's single-digit recordings as FSDD ships them: its files, nothing appended."""
    folder = fsdd_dir()
    items = []
    for c in load_fsdd(speakers=[speaker], indices=indices):  # the clip list gives the files and digits
        wave, rate = sf.read(str(folder / c.name), dtype="float32", always_2d=True)
        items.append((wave.mean(axis=1), [c.digit + 1]))
        if rate != 8000:
            raise InvalidInputError(f"FSDD file {c.name} is {rate} Hz; FSDD ships 8 kHz")
    return EvalSet(f"{speaker}: trimmed single digits, as FSDD ships them", items, 8000, group="trimmed")


CONNECTED_MODES = {
    "butted": ((0.0, 0.0), None),
    "overlapped": ((-80.0, -30.0), None),
    "fast": ((0.0, 0.0), (1.15, 1.35)),
}
"""Connected strings of a real speaker: (gap range in ms, negative = cross-faded overlap; tempo range or None)."""


def connected_composed(speaker: str, mode: str, *, count: int = 100, seed: int = 0,
                       num_digits_range=(4, 10), repeat_probability: float = 0.25) -> EvalSet:
    """``count`` strings of the speaker's recordings strung together without a pause (:data:`CONNECTED_MODES`)."""
    from .strings import digit_sequences

    if mode not in CONNECTED_MODES:
        raise InvalidInputError(f"mode must be one of {sorted(CONNECTED_MODES)}, got {mode!r}")
    gaps, tempo = CONNECTED_MODES[mode]
    clips = load_fsdd(speakers=[speaker])
    by_digit = {d: [c for c in clips if c.digit == d] for d in range(10)}
    rng = np.random.default_rng([seed, list(CONNECTED_MODES).index(mode)])
    config = ComposeConfig(connected_gap_ms_range=gaps, connected_leading_ms_range=(0.0, 0.0))
    items = []
    for digits in digit_sequences(rng, count, num_digits_range, repeat_probability):
        chosen = [by_digit[d][int(rng.integers(len(by_digit[d])))] for d in digits]
        u = compose_utterance(chosen, rng, config=config, connected=True, flush=True)  # no lead, no trail
        wave = u.waveform if tempo is None else change_tempo(u.waveform, float(rng.uniform(*tempo)),
                                                             TRAIN_SAMPLE_RATE_HZ)
        items.append((wave, u.token_ids.tolist()))
    what = {"butted": "butted together", "overlapped": "overlapped 30-80 ms, cross-faded",
            "fast": "butted, then 1.15-1.35x faster (same pitch)"}[mode]
    return EvalSet(f"{speaker}: connected strings, {what}", items, group="connected")


def held_out_voices() -> dict:
    """The synthetic voices no recipe here trains on or chooses checkpoints on, by engine."""
    from .recorded_voices import list_recorded_voices
    from .strings import Voice
    from .synth import espeak_voice_roles

    return {"espeak-ng": [Voice.of(v) for v in espeak_voice_roles()["test"]],
            "festival": [Voice.of(v) for v in list_recorded_voices(["ked"])],
            "flite": [Voice.of(v) for v in list_recorded_voices(["rms"])]}


SPOKEN_RATES = {"default rate": 1.0, "fast (1.4x)": 1.4}


def spoken_connected(engine: str, voices: Sequence, rate: str, *, count: int = 50, seed: int = 0,
                     num_digits_range=(4, 10), repeat_probability: float = 0.25) -> EvalSet:
    """``count`` digit strings spoken whole (trimmed) by ``voices`` of one engine at one of :data:`SPOKEN_RATES`."""
    from .clips import DIGIT_WORDS
    from .strings import Delivery, digit_sequences, speak

    rng = np.random.default_rng([seed, len(engine), int(SPOKEN_RATES[rate] * 100)])
    items = []
    for digits in digit_sequences(rng, count, num_digits_range, repeat_probability):
        voice = voices[int(rng.integers(len(voices)))]
        wave, _ = speak(voice, " ".join(DIGIT_WORDS[d] for d in digits), Delivery(SPOKEN_RATES[rate]))
        items.append((wave, digits_to_token_ids(digits).tolist()))
    names = voices[0].name if len(voices) == 1 else f"{len(voices)} test voices"
    return EvalSet(f"{engine} ({names}): connected strings, {rate}", items, group="spoken")


def other_speech(voices_by_engine: dict, *, count: int = 60, seed: int = 0) -> EvalSet:
    """Sentences of the evaluation word list (no digit words) spoken by the held-out voices."""
    from .speech import EVAL_WORDS, spoken_sentences

    voices = [v for vs in voices_by_engine.values() for v in vs[:20]]
    by_speaker = spoken_sentences(voices, EVAL_WORDS, count, seed=seed + 100, tempo_range=(0.9, 1.3))
    items = [(w, []) for ws in by_speaker.values() for w in ws]
    return EvalSet("speech without digits, held-out voices (espeak-ng, festival, flite)", items, kind=NEGATIVE,
                   group="negative")


def alsa_speech() -> EvalSet | None:
    """ALSA's speaker-test recordings of a real person ("Front Center", ...), if installed; else None."""
    files = sorted(p for p in ALSA_SOUNDS_DIR.glob("*.wav") if p.stem != "Noise") if ALSA_SOUNDS_DIR.is_dir() else []
    if not files:
        return None
    items, rate = [], None
    for p in files:
        wave, r = sf.read(str(p), dtype="float32", always_2d=True)
        items.append((resample(wave.mean(axis=1), r, TRAIN_SAMPLE_RATE_HZ), []))
    return EvalSet(f"real speech without digits (ALSA speaker-test, {len(files)} recordings)", items, kind=NEGATIVE,
                   group="negative", notes={"source": str(ALSA_SOUNDS_DIR), "license": "GPL-2 (alsa-utils)"})


NOISE_LEVELS_DB = (-50.0, -35.0, -20.0)  # RMS relative to full scale


def noise_set(*, seconds: float = 5.0, seed: int = 0) -> EvalSet:
    """White, pink and brown noise at :data:`NOISE_LEVELS_DB`, ``seconds`` each."""
    rng = np.random.default_rng([seed, 3])
    n = int(seconds * TRAIN_SAMPLE_RATE_HZ)
    items = [(colored_noise(rng, n, color) * np.float32(db_to_gain(level)), [])
             for color in ("white", "pink", "brown") for level in NOISE_LEVELS_DB]
    return EvalSet("noise (white, pink, brown at -50, -35, -20 dB RMS)", items, kind=NEGATIVE, group="negative")


def silence_set(*, seconds: float = 10.0, seed: int = 0) -> EvalSet:
    """Digital silence, and silence at a 16-bit recorder's noise floor (about -100 dB RMS)."""
    n = int(seconds * TRAIN_SAMPLE_RATE_HZ)
    floor = np.random.default_rng([seed, 4]).standard_normal(n).astype(np.float32) / 32768.0
    return EvalSet("silence (digital, and a 16-bit noise floor)", [(np.zeros(n, np.float32), []), (floor, [])],
                   kind=NEGATIVE, group="negative")


def dev_tail_sets(*, count: int = 40, seed: int = 0) -> list[EvalSet]:
    """Recordings that end on their last word, in the *dev* espeak-ng voices (never the test ones):
    trimmed single words and default-rate strings, for measuring a model's tail (:func:`measure_tail`)."""
    from .strings import Voice
    from .synth import espeak_voice_roles, synthesize_digits

    dev = espeak_voice_roles()["dev"]
    rng = np.random.default_rng([seed, 5])
    words = synthesize_digits(dev, renditions_per_digit=1, seed=1)
    singles = [words[int(i)] for i in rng.choice(len(words), size=min(count, len(words)), replace=False)]
    return [EvalSet("dev voices: trimmed single words", [(c.waveform, [c.digit + 1]) for c in singles]),
            spoken_connected("espeak-ng dev", [Voice.of(v) for v in dev], "default rate", count=count, seed=seed + 1)]


def real_speech_sets(speaker: str = "george", *, strings: int = 100, spoken: int = 50, sentences: int = 60,
                     seed: int = 0, indices=None) -> list[EvalSet]:
    """Every set of the module doc, for held-out FSDD ``speaker``; counts per set."""
    sets = [trimmed_singles(speaker, indices=indices)]
    sets += [connected_composed(speaker, mode, count=strings, seed=seed) for mode in CONNECTED_MODES]
    voices = held_out_voices()
    for rate in SPOKEN_RATES:
        sets += [spoken_connected(engine, vs, rate, count=spoken, seed=seed) for engine, vs in voices.items()]
    sets.append(other_speech(voices, count=sentences, seed=seed))
    real = alsa_speech()
    if real is not None:
        sets.append(real)
    return sets + [noise_set(seed=seed), silence_set(seed=seed)]


def accuracy_table_sets(speaker: str = "george", *, strings: int = 40, spoken: int = 30, sentences: int = 30,
                        seed: int = 0) -> list[EvalSet]:
    """The real-speech sets the quantization accuracy table adds to its own (``--sets
    stateport.train.real_speech:accuracy_table_sets``), a subset of :func:`real_speech_sets` sized
    to stream through five precisions in one run on a shared CPU.

    The table already holds ``speaker``'s trimmed singles and composed strings
    (:func:`stateport.train.quantize_data.table_sets`), so this gives the rest: ``strings`` of the
    speaker's connected strings per :data:`CONNECTED_MODES`, ``spoken`` strings by the held-out
    espeak-ng voices at their default rate (the engine with the most held-out voices), ``sentences``
    of digit-free speech by every held-out voice, ALSA's real digit-free speech when installed, noise
    and silence.
    """
    sets = [connected_composed(speaker, mode, count=strings, seed=seed) for mode in CONNECTED_MODES]
    voices = held_out_voices()
    sets.append(spoken_connected("espeak-ng", voices["espeak-ng"], "default rate", count=spoken, seed=seed))
    sets.append(other_speech(voices, count=sentences, seed=seed))
    real = alsa_speech()
    if real is not None:
        sets.append(real)
    return sets + [noise_set(seed=seed), silence_set(seed=seed)]


# ------------------------------------------------------------------------------------ recognisers


class RuntimeDigits:
    """A stateport model file through the client runtime, exactly as users run it.

    Every recording goes through :meth:`stateport.runtime.recognizer.Recognizer.transcribe`
    (a fresh stream, 20 ms reads at the recording's own rate, then ``input_finished()``, whose
    certified end-of-input flush feeds the card's ``streaming.tail_padding_ms`` of silence) —
    the one path the evaluation streams audio through; the data sets are never padded.

    tail_padding_ms: None: the card's own tail (what ``stateport stream`` uses); a number
    overrides it (e.g. a tail measured here for a file whose card has none).
    """

    def __init__(self, model_path: str, *, name: str | None = None, threads: int = 1,
                 tail_padding_ms: float | None = None):
        self.model_path = str(model_path)
        self.name = name or Path(model_path).name
        self.recognizer = Recognizer.from_file(self.model_path, threads=threads, tail_padding_ms=tail_padding_ms)
        self.sample_rate_hz = self.recognizer.sample_rate_hz

    @property
    def tail_padding_ms(self) -> float:
        return self.recognizer.tail_padding_ms

    def transcribe(self, waveform: np.ndarray, sample_rate_hz: int) -> list[int]:
        read = max(1, int(round(READ_MS * sample_rate_hz / 1000)))
        return list(self.recognizer.transcribe(waveform, sample_rate_hz, read_samples=read).tokens)


def card_tail_is_measured(model_path: str) -> bool:
    """Whether the card's ``tail_padding_ms`` is an emission-delay measurement (not absent or a receptive field)."""
    from ..runtime.model_file import read_card

    st = read_card(model_path).streaming
    return st.tail_padding_ms is not None and (st.tail_padding_basis or "").startswith("emission delay")


TAIL_REAL_INDICES = range(45, 50)  # FSDD recordings of the non-test speakers the tail is measured on


def tail_sets(test_speaker: str = "george") -> list[EvalSet]:
    """Recordings that end on their last word, never of the test speaker or the test voices:
    :func:`dev_tail_sets` (dev espeak-ng voices) and FSDD's trimmed recordings of every other
    speaker (indices 45-49; synthetic voices alone under-measure a real speaker's delay)."""
    from .fsdd import FSDD_SPEAKERS

    return dev_tail_sets() + [trimmed_singles(s, indices=TAIL_REAL_INDICES) for s in FSDD_SPEAKERS if s != test_speaker]


def measure_tail(model_path: str, sets: Sequence[EvalSet] | None = None, *, test_speaker: str = "george",
                 allow_uncertified: bool = False):
    """The end-of-input tail ``model_path`` needs, measured on recordings that end on their last word
    (default :func:`tail_sets`) with :func:`stateport.verify.tail.measure_tail_padding`;
    a :class:`~stateport.verify.tail.TailMeasurement`."""
    from ..verify.tail import measure_tail_padding

    if sets is None:
        sets = tail_sets(test_speaker)
        source = (f"espeak-ng dev voices, and FSDD speakers other than {test_speaker} at indices "
                  f"{TAIL_REAL_INDICES.start}-{TAIL_REAL_INDICES.stop - 1}")
    else:
        source = "; ".join(s.name for s in sets)
    recordings = [(w, s.sample_rate_hz) for s in sets for w, _ in s.items]
    return measure_tail_padding(model_path, recordings, allow_uncertified=allow_uncertified, source=source)


class PeerDigits:
    """:class:`stateport.train.peer.PocketSphinxDigits` behind the same ``transcribe(waveform, rate)``."""

    def __init__(self):
        from .peer import PocketSphinxDigits

        self.peer = PocketSphinxDigits()
        self.name = f"PocketSphinx {self.peer.version}"

    def transcribe(self, waveform: np.ndarray, sample_rate_hz: int) -> list[int]:
        return self.peer.transcribe(resample(waveform, sample_rate_hz, self.peer.sample_rate_hz))


# ------------------------------------------------------------------------------------------ scoring


def score(set_: EvalSet, refs: list, hyps: list, elapsed_s: float) -> dict:
    """One set's row for one recogniser: WER and string accuracy, or false digits per minute, and the RTF."""
    audio_s = sum(len(w) for w, _ in set_.items) / set_.sample_rate_hz
    row = {"set": set_.name, "group": set_.group, "kind": set_.kind, "utterances": len(refs),
           "digits": sum(len(r) for r in refs), "audio_s": round(audio_s, 1), "rtf": elapsed_s / max(audio_s, 1e-9)}
    if set_.kind == NEGATIVE:
        false = sum(len(h) for h in hyps)
        row |= {"false_digits": false, "false_digits_per_minute": false / max(audio_s / 60.0, 1e-9)}
    else:
        row |= {"wer": word_error_rate(refs, hyps), "string_accuracy": string_accuracy(refs, hyps),
                "errors": sum(edit_distance(r, h) for r, h in zip(refs, hyps))}
    return row


def run_sets(recogniser, sets: Sequence[EvalSet], *, log=None) -> list[dict]:
    """Every set through one recogniser: rows (see :func:`score`), with the worst utterances kept."""
    rows = []
    for s in sets:
        refs, hyps = [], []
        t0 = time.perf_counter()
        for wave, ref in s.items:
            hyps.append(recogniser.transcribe(wave, s.sample_rate_hz))
            refs.append(list(ref))
        row = score(s, refs, hyps, time.perf_counter() - t0)
        wrong = [(i, r, h) for i, (r, h) in enumerate(zip(refs, hyps)) if r != h]
        row["examples_wrong"] = [{"index": i, "ref": r, "hyp": h} for i, r, h in wrong[:5]]
        rows.append(row)
        if log:
            log(format_row(recogniser.name, row))
    return rows


def format_row(recogniser: str, row: dict) -> str:
    if row["kind"] == NEGATIVE:
        what = f"false digits {row['false_digits']:4d} ({row['false_digits_per_minute']:6.2f} per minute)"
    else:
        what = f"WER {100 * row['wer']:6.2f} %  string acc {100 * row['string_accuracy']:6.2f} %"
    return f"{recogniser:<28} {row['set']:<64} {what}  RTF {row['rtf']:.4f}"


def markdown_table(results: dict) -> str:
    """``{recogniser name: rows}`` -> one markdown table: per set, each recogniser's accuracy and RTF."""
    names = list(results)
    first = results[names[0]]
    head = "| set | utterances | audio (s) | " + " | ".join(f"{n}: WER / string acc. (or false digits/min) | RTF"
                                                             for n in names) + " |"
    lines = [head, "|" + "---|" * (3 + 2 * len(names))]
    for k, row in enumerate(first):
        cells = []
        for n in names:
            r = results[n][k]
            if r["kind"] == NEGATIVE:
                cells.append(f"{r['false_digits_per_minute']:.1f} /min ({r['false_digits']})")
            else:
                cells.append(f"{100 * r['wer']:.1f} % / {100 * r['string_accuracy']:.0f} %")
            cells.append(f"{r['rtf']:.3f}")
        lines.append(f"| {row['set']} | {row['utterances']} | {row['audio_s']:.0f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
