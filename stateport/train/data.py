"""Training data for the streaming CTC digit-string recogniser: vocabulary, composition, batches.

Digit strings (1-8 digits) are composed from isolated digit clips (FSDD recordings and
espeak-ng voices) with random pauses, and every token keeps the sample span of its clip.
The spans matter: plain CTC on composed strings learned to emit a guessed digit on the
leading silence and skip the first spoken one (measured: about 33 % WER); restricting each
token's emission to its clip plus a short delay fixed it. :func:`spans_to_frame_spans` and
:func:`emission_mask` turn the spans into the per-frame mask a trainer needs.

A streaming model emits a digit only after it has heard some silence after it, so every
utterance ends with at least ``trailing_silence_ms_range[0]`` (300 ms by default) of pause.

Everything here is numpy (no torch); a trainer converts the arrays of a :class:`Batch`.
Sources: FSDD is CC BY-SA 4.0, so data or models derived from it carry
:data:`stateport.train.fsdd.FSDD_ATTRIBUTION`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from ..errors import InvalidInputError
from ..vocabulary import BLANK_ID, DIGIT_VOCABULARY  # one inventory for data, models and cards
from .augment import (NO_AUGMENTATION, NOISE_COLORS, AugmentConfig, augment_waveform, change_tempo, colored_noise,
                      cut_onset, db_to_gain, speed_perturb)
from .clips import DIGIT_WORDS, TRAIN_SAMPLE_RATE_HZ, Clip, resample, trim_silence
from .fsdd import (
    FSDD_ATTRIBUTION,
    FSDD_SPEAKERS,
    FSDD_TEST_INDICES,
    FSDD_TRAIN_INDICES,
    SpeakerSplit,
    fsdd_dir,
    leave_one_speaker_out,
    leave_one_speaker_out_splits,
    load_fsdd,
    select_speakers,
)
from .synth import (
    ESPEAK_LANGUAGES,
    ESPEAK_VARIANTS,
    EspeakVoice,
    SynthesisConfig,
    espeak_available,
    list_espeak_voices,
    split_espeak_voices,
    synthesize_digits,
)

__all__ = [
    "BLANK_ID",
    "DIGIT_VOCABULARY",
    "DIGIT_WORDS",
    "ESPEAK_LANGUAGES",
    "ESPEAK_VARIANTS",
    "EspeakVoice",
    "SynthesisConfig",
    "espeak_available",
    "list_espeak_voices",
    "split_espeak_voices",
    "synthesize_digits",
    "make_utterance",
    "NEGATIVE_KINDS",
    "NegativeSource",
    "Piece",
    "SpokenString",
    "StringSource",
    "compose_pieces",
    "place_pieces",
    "FSDD_ATTRIBUTION",
    "FSDD_SPEAKERS",
    "FSDD_TEST_INDICES",
    "FSDD_TRAIN_INDICES",
    "TRAIN_SAMPLE_RATE_HZ",
    "AugmentConfig",
    "Batch",
    "Clip",
    "ClipSource",
    "ComposeConfig",
    "ComposedUtterance",
    "NO_AUGMENTATION",
    "SpeakerSplit",
    "compose_utterance",
    "digits_to_token_ids",
    "emission_mask",
    "fsdd_dir",
    "iterate_batches",
    "leave_one_speaker_out",
    "leave_one_speaker_out_splits",
    "load_fsdd",
    "make_batch",
    "resample",
    "select_speakers",
    "spans_to_frame_spans",
    "token_ids_to_digits",
    "trim_silence",
]



def digits_to_token_ids(digits: Sequence[int]) -> np.ndarray:
    """Digits 0..9 -> token ids int64 [U] (digit + 1)."""
    d = np.asarray(digits, dtype=np.int64)
    if d.size and (d.min() < 0 or d.max() > 9):
        raise InvalidInputError(f"digits must be in 0..9, got {d.tolist()}")
    return d + 1


def token_ids_to_digits(token_ids: Sequence[int]) -> list[int]:
    """Token ids -> digits, dropping blanks (the inverse of :func:`digits_to_token_ids`)."""
    out = []
    for t in token_ids:
        t = int(t)
        if not 0 <= t < len(DIGIT_VOCABULARY):
            raise InvalidInputError(f"token id {t} is outside the vocabulary 0..{len(DIGIT_VOCABULARY) - 1}")
        if t != BLANK_ID:
            out.append(t - 1)
    return out


# ----------------------------------------------------------------------------- composition


@dataclass(frozen=True)
class ComposeConfig:
    """How the pieces of an utterance (digit clips, spoken strings, other speech) are laid out, in ms.

    The defaults are the original recipe: every digit a separate clip with a pause before the
    next one. trailing_silence_ms_range starts at 300 ms because a streaming model emits a
    digit only after hearing some silence after it; the emission window of the last token
    (clip end + delay) must fit inside the utterance.

    The rest (all off by default, so older recipes replay exactly) is how people really say
    digits: measured on the previous model, natural-rate connected digits lost repeated and
    neighbouring words and trimmed recordings came back empty (issue 21).

    connected_probability: chance that a string of clips is spoken *connected*: the gap
        between clips is drawn from ``connected_gap_ms_range`` (negative: the clips overlap by
        that much, cross-faded, as coarticulated words run into each other) and the lead
        from ``connected_leading_ms_range`` (0: the recording starts on the first word).
    flush_probability: chance that the utterance ends on its last word (no trailing silence
        of its own) and gets ``flush_ms_range`` of digital silence appended *after*
        augmentation: what a trimmed recording followed by the runtime's end-of-input flush
        looks like (noise stops, silence as the frontend sees it follows).
    repeat_probability: chance that each digit after the first repeats the one before
        ("three three three"; CTC must put a blank between them).
    filler_probability: chance that a digit utterance gets other speech of the same voice
        before, after or around it (only where the source has such speech), so digits are
        learnt in context and other words as nothing.
    start_on_word_probability: chance that an utterance has no lead at all: the stream starts
        on its first sound, as a trimmed recording does. Why: a model trained with leads of
        0-150 ms (connected) or more missed twice as many of the held-out speaker's recordings
        that start on their word (12.4 %) as of the same recordings after 300 ms of silence
        (6.6 %).
    """

    pause_ms_range: tuple[float, float] = (50.0, 400.0)
    leading_silence_ms_range: tuple[float, float] = (100.0, 800.0)
    trailing_silence_ms_range: tuple[float, float] = (300.0, 800.0)
    connected_probability: float = 0.0
    connected_gap_ms_range: tuple[float, float] = (-80.0, 20.0)
    connected_leading_ms_range: tuple[float, float] = (0.0, 150.0)
    flush_probability: float = 0.0
    flush_ms_range: tuple[float, float] = (300.0, 600.0)
    repeat_probability: float = 0.0
    filler_probability: float = 0.0
    start_on_word_probability: float = 0.0

    def __post_init__(self) -> None:
        for name in ("pause_ms_range", "leading_silence_ms_range", "trailing_silence_ms_range",
                     "connected_leading_ms_range", "flush_ms_range"):
            lo, hi = getattr(self, name)
            if not 0.0 <= lo <= hi:
                raise InvalidInputError(f"{name} must be (low, high) with 0 <= low <= high, got {(lo, hi)}")
        lo, hi = self.connected_gap_ms_range
        if not -200.0 <= lo <= hi:
            raise InvalidInputError("connected_gap_ms_range must be (low, high) with -200 <= low <= high, "
                                    f"got {(lo, hi)}")
        for name in ("connected_probability", "flush_probability", "repeat_probability", "filler_probability",
                     "start_on_word_probability"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise InvalidInputError(f"{name} must be in [0, 1], got {getattr(self, name)}")


@dataclass(frozen=True, eq=False)
class ComposedUtterance:
    """A digit string built from clips.

    waveform: float32 [N] at 16 kHz; exactly zero outside the spans (noise comes later).
    token_ids: int64 [U], digit + 1.
    spans_samples: int64 [U, 2], half-open [start, end) of each token's clip in ``waveform``.
    clip_gains: float32 [U], the factor each clip was scaled by:
        ``waveform[s:e] == clips[i].waveform * clip_gains[i]``.
    speaker: of the clips (all clips of one utterance share it in make_batch).
    source: the clips' corpus; :func:`make_utterance` puts its ClipSource's name here.
    """

    waveform: np.ndarray
    token_ids: np.ndarray
    spans_samples: np.ndarray
    clip_gains: np.ndarray
    speaker: str
    source: str


def _ms_to_samples(ms: float, sample_rate_hz: int) -> int:
    return int(round(ms * sample_rate_hz / 1000.0))


@dataclass(frozen=True, eq=False)
class Piece:
    """A stretch of speech placed as one unit: a digit clip, a whole spoken string, other speech.

    waveform: float32 [N]; token_ids: int64 [U] (empty for speech without digits);
    spans_samples: int64 [U, 2], each token's half-open span inside ``waveform``.
    """

    waveform: np.ndarray
    token_ids: np.ndarray
    spans_samples: np.ndarray

    @classmethod
    def of_clip(cls, clip: Clip) -> "Piece":
        return cls(clip.waveform, digits_to_token_ids([clip.digit]), np.array([[0, clip.num_samples]], np.int64))

    @classmethod
    def speech(cls, waveform: np.ndarray) -> "Piece":
        """Speech (or noise) in which no digit may be emitted."""
        return cls(np.asarray(waveform, np.float32), np.zeros(0, np.int64), np.zeros((0, 2), np.int64))


def _fade(length: int) -> tuple[np.ndarray, np.ndarray]:
    """(fade-out, fade-in) float32 [length]: equal-power (sin/cos) ramps, so two uncorrelated
    sounds cross-faded keep their loudness through the overlap."""
    t = (np.arange(length, dtype=np.float64) + 0.5) / max(length, 1)
    return np.cos(0.5 * np.pi * t).astype(np.float32), np.sin(0.5 * np.pi * t).astype(np.float32)


def place_pieces(pieces: Sequence[Piece], gains: np.ndarray, lead: int, gaps: Sequence[int], trail: int):
    """Lay pieces out in order: (waveform float32 [N], token ids int64 [U], spans int64 [U, 2]).

    gaps[i] (samples) separates piece i from piece i + 1; a negative gap overlaps them by that
    much (at most a third of the shorter one), cross-faded with equal-power ramps. Each piece
    is scaled by its gain; token spans are shifted to where their piece lands.
    """
    lengths = [p.waveform.shape[0] for p in pieces]
    starts, pos = [], lead
    overlaps = []
    for i, n in enumerate(lengths):
        starts.append(pos)
        if i < len(gaps):
            gap = max(int(gaps[i]), -(min(n, lengths[i + 1]) // 3))
            overlaps.append(max(-gap, 0))
            pos += n + gap
    total = max(s + n for s, n in zip(starts, lengths)) + trail
    waveform = np.zeros(total, dtype=np.float32)
    for i, (piece, start, n) in enumerate(zip(pieces, starts, lengths)):
        w = piece.waveform * np.float32(gains[i])
        if i > 0 and overlaps[i - 1]:
            w = w.copy()
            w[:overlaps[i - 1]] *= _fade(overlaps[i - 1])[1]
        if i < len(overlaps) and overlaps[i]:
            w = w.copy()
            w[n - overlaps[i]:] *= _fade(overlaps[i])[0]
        waveform[start:start + n] += w
    token_ids = np.concatenate([p.token_ids for p in pieces]).astype(np.int64)
    spans = np.concatenate([p.spans_samples + s for p, s in zip(pieces, starts)]).astype(np.int64).reshape(-1, 2)
    return waveform, token_ids, spans


def compose_pieces(
    pieces: Sequence[Piece],
    rng: np.random.Generator,
    *,
    config: ComposeConfig = ComposeConfig(),
    gain_jitter_db: float = 0.0,
    connected: bool = False,
    flush: bool = False,
    sample_rate_hz: int = TRAIN_SAMPLE_RATE_HZ,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pieces with drawn silences (or overlaps) between and around them.

    Returns (waveform float32 [N], token ids int64 [U], spans int64 [U, 2], gain per token
    float32 [U]). Draws, in order: the lead, each gap, the trail, each piece's gain
    (``10 ** (uniform(-jitter, +jitter) / 20)``). ``connected`` takes the lead and gaps from
    the config's connected ranges; ``flush`` leaves no trailing silence (one is appended after
    augmentation, :func:`make_utterance`).
    """
    if gain_jitter_db < 0:
        raise InvalidInputError(f"clip_gain_jitter_db must be >= 0, got {gain_jitter_db}")
    lead_range = config.connected_leading_ms_range if connected else config.leading_silence_ms_range
    gap_range = config.connected_gap_ms_range if connected else config.pause_ms_range
    lead = _ms_to_samples(rng.uniform(*lead_range), sample_rate_hz)
    gaps = [_ms_to_samples(rng.uniform(*gap_range), sample_rate_hz) for _ in pieces[1:]]
    trail = _ms_to_samples(rng.uniform(*config.trailing_silence_ms_range), sample_rate_hz)
    if flush:
        trail = 0
    if config.start_on_word_probability > 0 and rng.random() < config.start_on_word_probability:
        lead = 0
    gains = np.array([db_to_gain(rng.uniform(-gain_jitter_db, gain_jitter_db)) for _ in pieces], dtype=np.float32)
    waveform, token_ids, spans = place_pieces(pieces, gains, lead, gaps, trail)
    token_gains = np.concatenate([np.full(len(p.token_ids), g, np.float32) for p, g in zip(pieces, gains)])
    return waveform, token_ids, spans, token_gains.astype(np.float32)


def compose_utterance(
    clips: Sequence[Clip],
    rng: np.random.Generator,
    *,
    config: ComposeConfig = ComposeConfig(),
    clip_gain_jitter_db: float = 0.0,
    sample_rate_hz: int = TRAIN_SAMPLE_RATE_HZ,
    connected: bool = False,
    flush: bool = False,
) -> ComposedUtterance:
    """Concatenate ``clips`` (in spoken order) with random silences into one utterance.

    Layout: leading silence, clip 0, pause, clip 1, ..., clip U-1, trailing silence; each
    silence drawn uniformly from its ``config`` range (``connected``: the connected ranges,
    where a negative gap overlaps two clips, cross-faded). Each clip is scaled by
    ``10 ** (uniform(-jitter, +jitter) / 20)``. Returns the waveform, token ids and the
    clip spans in samples (see :class:`ComposedUtterance`).
    """
    if len(clips) == 0:
        raise InvalidInputError("compose_utterance needs at least one clip")
    for c in clips:
        if c.waveform.ndim != 1 or c.waveform.size == 0:
            raise InvalidInputError(f"clip {c.name!r} must be a non-empty mono waveform [N], got {c.waveform.shape}")
    waveform, token_ids, spans, gains = compose_pieces(
        [Piece.of_clip(c) for c in clips], rng, config=config, gain_jitter_db=clip_gain_jitter_db,
        connected=connected, flush=flush, sample_rate_hz=sample_rate_hz)
    return _composed(waveform, token_ids, spans, gains, {c.speaker for c in clips}, {c.source for c in clips})


def _composed(waveform, token_ids, spans, gains, speakers: set, sources: set) -> ComposedUtterance:
    return ComposedUtterance(
        waveform=waveform, token_ids=token_ids, spans_samples=spans, clip_gains=gains,
        speaker=next(iter(speakers)) if len(speakers) == 1 else "+".join(sorted(speakers)),
        source=next(iter(sources)) if len(sources) == 1 else "+".join(sorted(sources)),
    )


def spans_to_frame_spans(
    spans_samples: np.ndarray,
    frame_shift_samples: int,
    *,
    delay_samples: int = 0,
    num_frames: int | np.ndarray | None = None,
) -> np.ndarray:
    """Sample spans int [..., 2] -> frame spans int64 [..., 2] where a token may be emitted.

    Convention: output frame t stands for samples [t * shift, (t + 1) * shift). A token may
    be emitted from the frame holding its clip's first sample up to the frame holding
    sample ``end + delay_samples`` (exclusive end: ``ceil((end + delay) / shift)``), and
    always on at least one frame. ``delay_samples`` is where the model's latency goes (the
    emission delay to allow, e.g. 0.3 s, plus any look-ahead or frontend window).
    num_frames: int or int [...] (per utterance of a batch, broadcast over the token axis
    when given with shape [B] for spans [B, U, 2]); frame spans are clipped to it.
    Entries with a negative start (padding in :class:`Batch`) become the empty span (0, 0).
    """
    if frame_shift_samples <= 0:
        raise InvalidInputError(f"frame_shift_samples must be positive, got {frame_shift_samples}")
    if delay_samples < 0:
        raise InvalidInputError(f"delay_samples must be >= 0, got {delay_samples}")
    spans = np.asarray(spans_samples, dtype=np.int64)
    if spans.shape[-1:] != (2,):
        raise InvalidInputError(f"spans must have shape [..., 2], got {spans.shape}")
    start = spans[..., 0] // frame_shift_samples
    end = -(-(spans[..., 1] + delay_samples) // frame_shift_samples)
    end = np.maximum(end, start + 1)
    if num_frames is not None:
        limit = np.asarray(num_frames, dtype=np.int64)
        if limit.ndim and limit.ndim < start.ndim:
            limit = limit.reshape(limit.shape + (1,) * (start.ndim - limit.ndim))
        start = np.minimum(start, limit)
        end = np.minimum(end, limit)
    out = np.stack([start, end], axis=-1)
    out[spans[..., 0] < 0] = 0
    return out


def emission_mask(frame_spans: np.ndarray, num_frames: int) -> np.ndarray:
    """Frame spans int [..., U, 2] -> bool [..., U, num_frames]: True where token u may be emitted."""
    spans = np.asarray(frame_spans, dtype=np.int64)
    t = np.arange(int(num_frames), dtype=np.int64)
    return (t >= spans[..., 0:1]) & (t < spans[..., 1:2])


# ----------------------------------------------------------------------------- sources, batches


class ClipSource:
    """Clips to draw utterances from (e.g. FSDD training speakers), with a mixing weight.

    An utterance is drawn from one speaker of one source: real people say a whole digit
    string in one voice and at one level, and mixing speakers inside a string would teach
    the model to expect level jumps between digits. Speakers are drawn uniformly, then
    digits uniformly among those the speaker has, then a clip of that digit uniformly.

    fillers: optional speech without digits per speaker (``{speaker: [float32 [N], ...]}``),
    placed around a string under :attr:`ComposeConfig.filler_probability`.
    """

    def __init__(self, name: str, clips: Sequence[Clip], weight: float = 1.0, *, fillers: dict | None = None):
        if not clips:
            raise InvalidInputError(f"clip source {name!r} has no clips")
        if not weight > 0:
            raise InvalidInputError(f"clip source {name!r} needs a positive weight, got {weight}")
        self.name = name
        self.clips = list(clips)
        self.weight = float(weight)
        self.fillers = dict(fillers or {})
        index: dict[str, dict[int, list[int]]] = {}
        for i, c in enumerate(self.clips):
            index.setdefault(c.speaker, {}).setdefault(c.digit, []).append(i)
        self._speakers = sorted(index)
        self._index = {s: {d: index[s][d] for d in sorted(index[s])} for s in self._speakers}

    @property
    def speakers(self) -> list[str]:
        return list(self._speakers)

    def sample_clips(self, rng: np.random.Generator, num_digits: int, *, repeat_probability: float = 0.0) -> list[Clip]:
        """``num_digits`` clips of one random speaker, in spoken order (each digit after the
        first repeats the one before with ``repeat_probability``, in another rendition where
        the speaker has one)."""
        speaker = self._speakers[int(rng.integers(len(self._speakers)))]
        by_digit = self._index[speaker]
        digits = list(by_digit)
        out = []
        digit = None
        for i in range(num_digits):
            if not (i and repeat_probability > 0 and rng.random() < repeat_probability):
                digit = digits[int(rng.integers(len(digits)))]
            candidates = by_digit[digit]
            out.append(self.clips[candidates[int(rng.integers(len(candidates)))]])
        return out

    def compose(self, rng: np.random.Generator, *, num_digits_range: tuple[int, int], compose: ComposeConfig,
                augment: AugmentConfig, flush: bool) -> ComposedUtterance:
        """One clean utterance of clips (speed-perturbed, maybe cut, connected, with fillers)."""
        clips = self.sample_clips(rng, _draw_num_digits(rng, num_digits_range),
                                  repeat_probability=compose.repeat_probability)
        factor = float(rng.uniform(*augment.speed_range))
        if factor != 1.0:
            clips = [Clip(speed_perturb(c.waveform, factor), c.digit, c.speaker, c.source, c.name) for c in clips]
        if augment.onset_cut_probability > 0:  # draws nothing when off, so older recipes replay exactly
            clips = [_cut_clip(rng, c, augment) if rng.random() < augment.onset_cut_probability else c
                     for c in clips]
        connected = compose.connected_probability > 0 and rng.random() < compose.connected_probability
        before, after = _draw_fillers(rng, self.fillers.get(clips[0].speaker), compose, factor)
        if not before and not after:
            composed = compose_utterance(clips, rng, config=compose, clip_gain_jitter_db=augment.clip_gain_jitter_db,
                                         connected=connected, flush=flush)
        else:
            pieces = before + [Piece.of_clip(c) for c in clips] + after
            parts = compose_pieces(pieces, rng, config=compose, gain_jitter_db=augment.clip_gain_jitter_db,
                                   connected=connected, flush=flush)
            composed = _composed(*parts, {clips[0].speaker}, {clips[0].source})
        # Faster at the same pitch: isolated words strung together are slower than people say
        # strings (spoken strings have their own drawn tempo, so this is for clips only).
        if augment.tempo_probability > 0 and rng.random() < augment.tempo_probability:
            faster = change_tempo(composed.waveform, float(rng.uniform(*augment.tempo_range)), TRAIN_SAMPLE_RATE_HZ)
            scale = faster.shape[0] / max(composed.waveform.shape[0], 1)
            spans = np.minimum(np.round(composed.spans_samples * scale).astype(np.int64), faster.shape[0])
            composed = dataclasses.replace(composed, waveform=faster, spans_samples=spans)
        return composed

    def __repr__(self) -> str:
        return f"ClipSource({self.name!r}, {len(self.clips)} clips, {len(self._speakers)} speakers, weight={self.weight})"


def _draw_fillers(rng: np.random.Generator, speech, compose: ComposeConfig, factor: float) -> tuple[list, list]:
    """([pieces before], [pieces after]) of other speech around a digit string, or two empty lists."""
    if not speech or compose.filler_probability <= 0 or rng.random() >= compose.filler_probability:
        return [], []
    where = int(rng.integers(3))  # 0: before, 1: after, 2: both

    def one():
        w = speech[int(rng.integers(len(speech)))]
        return Piece.speech(speed_perturb(w, factor) if factor != 1.0 else w)

    before = [one()] if where in (0, 2) else []
    after = [one()] if where in (1, 2) else []
    return before, after


@dataclass(frozen=True, eq=False)
class SpokenString:
    """A digit string a synthesiser spoke in one go (coarticulated, at its own rate).

    waveform: float32 [N] at 16 kHz; token_ids: int64 [U]; spans_samples: int64 [U, 2], where
    each word lies (from the synthesiser's own timing); speaker: the voice; text: what it said.
    """

    waveform: np.ndarray
    token_ids: np.ndarray
    spans_samples: np.ndarray
    speaker: str
    source: str
    text: str


class StringSource:
    """Whole spoken digit strings (:class:`SpokenString`) to draw utterances from, with a weight.

    A drawn string keeps its own timing; it gets the utterance's speed factor (spans scaled
    with it), a lead and trail, and maybe fillers of its voice around it.
    """

    def __init__(self, name: str, strings: Sequence[SpokenString], weight: float = 1.0, *,
                 fillers: dict | None = None):
        if not strings:
            raise InvalidInputError(f"string source {name!r} has no strings")
        if not weight > 0:
            raise InvalidInputError(f"string source {name!r} needs a positive weight, got {weight}")
        self.name = name
        self.strings = list(strings)
        self.weight = float(weight)
        self.fillers = dict(fillers or {})

    def compose(self, rng: np.random.Generator, *, num_digits_range: tuple[int, int], compose: ComposeConfig,
                augment: AugmentConfig, flush: bool) -> ComposedUtterance:
        """One clean utterance holding one whole string (``num_digits_range`` is the strings' own)."""
        s = self.strings[int(rng.integers(len(self.strings)))]
        factor = float(rng.uniform(*augment.speed_range))
        wave, spans = s.waveform, s.spans_samples
        if factor != 1.0:
            wave = speed_perturb(wave, factor)
            spans = np.minimum(np.round(spans * (wave.shape[0] / s.waveform.shape[0])).astype(np.int64), wave.shape[0])
        before, after = _draw_fillers(rng, self.fillers.get(s.speaker), compose, factor)
        pieces = before + [Piece(wave, s.token_ids, spans)] + after
        # A spoken string is connected speech: its lead is a trimmed recording's.
        parts = compose_pieces(pieces, rng, config=compose, gain_jitter_db=0.0, connected=True, flush=flush)
        return _composed(*parts, {s.speaker}, {s.source})

    def __repr__(self) -> str:
        return f"StringSource({self.name!r}, {len(self.strings)} strings, weight={self.weight})"


NEGATIVE_KINDS = ("speech", "noise", "silence")


class NegativeSource:
    """Utterances in which no digit may be emitted: other speech, noise, silence (empty targets).

    speech: ``{speaker: [float32 [N], ...]}`` sentences without digit words; kind_weights:
    the chance of each of :data:`NEGATIVE_KINDS`. Noise is coloured, 0.5-4 s, at -70..-20 dB
    RMS (full scale 0 dB); silence is 0.3-3 s of digital zeros (augmentation may add noise).
    Why: the previous model turned 60 s of a speech into 64 digits (issue 21); a recogniser
    must learn what is *not* a digit.
    """

    def __init__(self, name: str, speech: dict, weight: float = 1.0, *,
                 kind_weights: tuple[float, float, float] = (0.7, 0.15, 0.15)):
        if not weight > 0:
            raise InvalidInputError(f"negative source {name!r} needs a positive weight, got {weight}")
        if len(kind_weights) != len(NEGATIVE_KINDS) or min(kind_weights) < 0 or sum(kind_weights) <= 0:
            raise InvalidInputError(f"kind_weights must be {len(NEGATIVE_KINDS)} weights >= 0 for "
                                    f"{NEGATIVE_KINDS}, got {kind_weights}")
        self.speech = {k: list(v) for k, v in speech.items() if len(v)}
        if kind_weights[0] > 0 and not self.speech:
            raise InvalidInputError(f"negative source {name!r} has no speech")
        self.name = name
        self.weight = float(weight)
        self._speakers = sorted(self.speech)
        self._kind_p = np.asarray(kind_weights, np.float64) / sum(kind_weights)

    def compose(self, rng: np.random.Generator, *, num_digits_range: tuple[int, int], compose: ComposeConfig,
                augment: AugmentConfig, flush: bool) -> ComposedUtterance:
        kind = NEGATIVE_KINDS[int(rng.choice(len(NEGATIVE_KINDS), p=self._kind_p))]
        speaker = kind
        if kind == "speech":
            speaker = self._speakers[int(rng.integers(len(self._speakers)))]
            sentences = self.speech[speaker]
            wave = sentences[int(rng.integers(len(sentences)))]
            factor = float(rng.uniform(*augment.speed_range))
            wave = speed_perturb(wave, factor) if factor != 1.0 else wave
        elif kind == "noise":
            n = int(rng.uniform(0.5, 4.0) * TRAIN_SAMPLE_RATE_HZ)
            color = NOISE_COLORS[int(rng.integers(len(NOISE_COLORS)))]
            wave = colored_noise(rng, n, color) * np.float32(db_to_gain(rng.uniform(-70.0, -20.0)))
        else:
            wave = np.zeros(int(rng.uniform(0.3, 3.0) * TRAIN_SAMPLE_RATE_HZ), np.float32)
        parts = compose_pieces([Piece.speech(wave)], rng, config=compose, connected=True, flush=flush)
        return _composed(*parts, {speaker}, {self.name})

    def __repr__(self) -> str:
        return f"NegativeSource({self.name!r}, {sum(map(len, self.speech.values()))} sentences, weight={self.weight})"


@dataclass(frozen=True, eq=False)
class Batch:
    """A padded batch of composed, augmented digit strings (numpy; the trainer converts).

    waveforms: float32 [B, N_max], zero-padded after each utterance.
    waveform_lengths: int64 [B], valid samples per row.
    targets: int64 [B, U_max], token ids, padded with BLANK_ID.
    target_lengths: int64 [B].
    spans_samples: int64 [B, U_max, 2], clip span of each token; padding rows are -1.
    speakers, sources: per utterance (speaker name, ClipSource name), for reporting.
    """

    waveforms: np.ndarray
    waveform_lengths: np.ndarray
    targets: np.ndarray
    target_lengths: np.ndarray
    spans_samples: np.ndarray
    speakers: tuple[str, ...]
    sources: tuple[str, ...]

    def frame_spans(
        self, frame_shift_samples: int, *, delay_samples: int = 0, num_frames: np.ndarray | None = None
    ) -> np.ndarray:
        """int64 [B, U_max, 2]; see :func:`spans_to_frame_spans`. Padding tokens get (0, 0).

        num_frames: int64 [B] valid output frames per utterance (default: ceil(length / shift)).
        """
        if num_frames is None:
            num_frames = -(-self.waveform_lengths // frame_shift_samples)
        return spans_to_frame_spans(
            self.spans_samples, frame_shift_samples, delay_samples=delay_samples, num_frames=num_frames
        )

    def emission_mask(
        self,
        frame_shift_samples: int,
        num_frames: int,
        *,
        delay_samples: int = 0,
        frame_lengths: np.ndarray | None = None,
    ) -> np.ndarray:
        """bool [B, U_max, num_frames]: True where token u of utterance b may be emitted.

        num_frames: the padded output length T of the model; frame_lengths: int64 [B]
        valid frames per utterance (default: ceil(length / shift), capped at num_frames).
        Rows of padding tokens are all False.
        """
        if frame_lengths is None:
            frame_lengths = np.minimum(-(-self.waveform_lengths // frame_shift_samples), num_frames)
        spans = self.frame_spans(frame_shift_samples, delay_samples=delay_samples, num_frames=frame_lengths)
        return emission_mask(spans, num_frames)


def _draw_num_digits(rng: np.random.Generator, num_digits_range: tuple[int, int]) -> int:
    lo, hi = num_digits_range
    return int(rng.integers(lo, hi + 1))


def _cut_clip(rng: np.random.Generator, clip: Clip, augment: AugmentConfig) -> Clip:
    """``clip`` without the start of its word (:attr:`AugmentConfig.onset_cut_probability`)."""
    ms = float(rng.uniform(*augment.onset_cut_ms_range))
    lo, hi = augment.onset_cut_level_db_range
    level_db = float(rng.uniform(lo, hi)) if lo < hi else lo  # a fixed level draws nothing: older recipes replay
    return Clip(cut_onset(clip.waveform, ms, TRAIN_SAMPLE_RATE_HZ, level_db),
                clip.digit, clip.speaker, clip.source, clip.name)


def make_utterance(
    rng: np.random.Generator,
    sources: Sequence,
    *,
    num_digits_range: tuple[int, int] = (1, 8),
    compose: ComposeConfig = ComposeConfig(),
    augment: AugmentConfig = AugmentConfig(),
) -> tuple[np.ndarray, ComposedUtterance]:
    """One random utterance: (augmented waveform float32 [N], its composition).

    Steps: pick a source by weight (:class:`ClipSource`, :class:`StringSource`,
    :class:`NegativeSource`); whether it ends on its last word and gets a flush
    (:attr:`ComposeConfig.flush_probability`); the source composes a clean utterance (a clip
    source: a digit count, one speaker's clips, one speed factor for them all so spans stay
    exact, maybe connected); then utterance gain, noise and peak limiting
    (:func:`augment_waveform`), which keep length; then the flush's digital silence.
    ``composition.waveform`` is the clean version before utterance-level augmentation (and
    without the flush); ``composition.source`` is the source's name.
    """
    weights = np.array([s.weight for s in sources], dtype=np.float64)
    source = sources[int(rng.choice(len(sources), p=weights / weights.sum()))]
    flush = compose.flush_probability > 0 and rng.random() < compose.flush_probability
    composed = source.compose(rng, num_digits_range=num_digits_range, compose=compose, augment=augment, flush=flush)
    # Report the source's name (e.g. "espeak-train"), which is what the mixing weights name.
    composed = dataclasses.replace(composed, source=source.name)
    waveform = augment_waveform(rng, composed.waveform, augment, speech_spans_samples=composed.spans_samples)
    if flush:
        tail = np.zeros(_ms_to_samples(rng.uniform(*compose.flush_ms_range), TRAIN_SAMPLE_RATE_HZ), np.float32)
        waveform = np.concatenate([waveform, tail])
    return waveform, composed


def make_batch(
    rng: np.random.Generator,
    batch_size: int,
    sources: Sequence[ClipSource],
    *,
    num_digits_range: tuple[int, int] = (1, 8),
    compose: ComposeConfig = ComposeConfig(),
    augment: AugmentConfig = AugmentConfig(),
) -> Batch:
    """``batch_size`` random digit strings, padded; deterministic given the state of ``rng``.

    sources: mixed by their weights per utterance (e.g. FSDD weight 1, espeak weight 1 for
    half and half). Use ``augment=NO_AUGMENTATION`` for clean evaluation sets.
    """
    if batch_size < 1:
        raise InvalidInputError(f"batch_size must be >= 1, got {batch_size}")
    if not sources:
        raise InvalidInputError("make_batch needs at least one ClipSource")
    lo, hi = num_digits_range
    if not 1 <= lo <= hi:
        raise InvalidInputError(f"num_digits_range must be (low, high) with 1 <= low <= high, got {num_digits_range}")
    waves, comps = [], []
    for _ in range(batch_size):
        w, c = make_utterance(rng, sources, num_digits_range=num_digits_range, compose=compose, augment=augment)
        waves.append(w)
        comps.append(c)
    lengths = np.array([w.shape[0] for w in waves], dtype=np.int64)
    target_lengths = np.array([c.token_ids.shape[0] for c in comps], dtype=np.int64)
    waveforms = np.zeros((batch_size, int(lengths.max())), dtype=np.float32)
    width = max(int(target_lengths.max()), 1)  # a batch of only negatives still has a token axis
    targets = np.full((batch_size, width), BLANK_ID, dtype=np.int64)
    spans = np.full((batch_size, width, 2), -1, dtype=np.int64)
    for b, (w, c) in enumerate(zip(waves, comps)):
        waveforms[b, : w.shape[0]] = w
        targets[b, : c.token_ids.shape[0]] = c.token_ids
        spans[b, : c.token_ids.shape[0]] = c.spans_samples
    return Batch(
        waveforms=waveforms,
        waveform_lengths=lengths,
        targets=targets,
        target_lengths=target_lengths,
        spans_samples=spans,
        speakers=tuple(c.speaker for c in comps),
        sources=tuple(c.source for c in comps),
    )


def iterate_batches(
    seed: int,
    batch_size: int,
    sources: Sequence[ClipSource],
    *,
    num_batches: int | None = None,
    **batch_kwargs,
) -> Iterator[Batch]:
    """Endless (or ``num_batches``) stream of :func:`make_batch` batches from one seed.

    batch_kwargs: ``num_digits_range``, ``compose``, ``augment`` as in make_batch.
    """
    rng = np.random.default_rng(seed)
    produced = 0
    while num_batches is None or produced < num_batches:
        yield make_batch(rng, batch_size, sources, **batch_kwargs)
        produced += 1
