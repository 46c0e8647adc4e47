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
from .augment import NO_AUGMENTATION, AugmentConfig, augment_waveform, cut_onset, db_to_gain, speed_perturb
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
    """Silence around and between the digits of a composed string, uniform in ms.

    trailing_silence_ms_range starts at 300 ms because a streaming model emits a digit only
    after hearing some silence after it; the emission window of the last token (clip end
    + delay) must fit inside the utterance.
    """

    pause_ms_range: tuple[float, float] = (50.0, 400.0)
    leading_silence_ms_range: tuple[float, float] = (100.0, 800.0)
    trailing_silence_ms_range: tuple[float, float] = (300.0, 800.0)

    def __post_init__(self) -> None:
        for name in ("pause_ms_range", "leading_silence_ms_range", "trailing_silence_ms_range"):
            lo, hi = getattr(self, name)
            if not 0.0 <= lo <= hi:
                raise InvalidInputError(f"{name} must be (low, high) with 0 <= low <= high, got {(lo, hi)}")


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


def compose_utterance(
    clips: Sequence[Clip],
    rng: np.random.Generator,
    *,
    config: ComposeConfig = ComposeConfig(),
    clip_gain_jitter_db: float = 0.0,
    sample_rate_hz: int = TRAIN_SAMPLE_RATE_HZ,
) -> ComposedUtterance:
    """Concatenate ``clips`` (in spoken order) with random silences into one utterance.

    Layout: leading silence, clip 0, pause, clip 1, ..., clip U-1, trailing silence; each
    silence drawn uniformly from its ``config`` range. Each clip is scaled by
    ``10 ** (uniform(-jitter, +jitter) / 20)``. Returns the waveform, token ids and the
    clip spans in samples (see :class:`ComposedUtterance`).
    """
    if len(clips) == 0:
        raise InvalidInputError("compose_utterance needs at least one clip")
    if clip_gain_jitter_db < 0:
        raise InvalidInputError(f"clip_gain_jitter_db must be >= 0, got {clip_gain_jitter_db}")
    for c in clips:
        if c.waveform.ndim != 1 or c.waveform.size == 0:
            raise InvalidInputError(f"clip {c.name!r} must be a non-empty mono waveform [N], got {c.waveform.shape}")
    lead = _ms_to_samples(rng.uniform(*config.leading_silence_ms_range), sample_rate_hz)
    pauses = [_ms_to_samples(rng.uniform(*config.pause_ms_range), sample_rate_hz) for _ in clips[1:]]
    trail = _ms_to_samples(rng.uniform(*config.trailing_silence_ms_range), sample_rate_hz)
    gains = np.array(
        [db_to_gain(rng.uniform(-clip_gain_jitter_db, clip_gain_jitter_db)) for _ in clips],
        dtype=np.float32,
    )
    total = lead + sum(pauses) + trail + sum(c.num_samples for c in clips)
    waveform = np.zeros(total, dtype=np.float32)
    spans = np.zeros((len(clips), 2), dtype=np.int64)
    pos = lead
    for i, clip in enumerate(clips):
        end = pos + clip.num_samples
        waveform[pos:end] = clip.waveform * gains[i]
        spans[i] = (pos, end)
        pos = end + (pauses[i] if i < len(pauses) else 0)
    speakers = {c.speaker for c in clips}
    sources = {c.source for c in clips}
    return ComposedUtterance(
        waveform=waveform,
        token_ids=digits_to_token_ids([c.digit for c in clips]),
        spans_samples=spans,
        clip_gains=gains,
        speaker=clips[0].speaker if len(speakers) == 1 else "+".join(sorted(speakers)),
        source=clips[0].source if len(sources) == 1 else "+".join(sorted(sources)),
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
    """

    def __init__(self, name: str, clips: Sequence[Clip], weight: float = 1.0):
        if not clips:
            raise InvalidInputError(f"clip source {name!r} has no clips")
        if not weight > 0:
            raise InvalidInputError(f"clip source {name!r} needs a positive weight, got {weight}")
        self.name = name
        self.clips = list(clips)
        self.weight = float(weight)
        index: dict[str, dict[int, list[int]]] = {}
        for i, c in enumerate(self.clips):
            index.setdefault(c.speaker, {}).setdefault(c.digit, []).append(i)
        self._speakers = sorted(index)
        self._index = {s: {d: index[s][d] for d in sorted(index[s])} for s in self._speakers}

    @property
    def speakers(self) -> list[str]:
        return list(self._speakers)

    def sample_clips(self, rng: np.random.Generator, num_digits: int) -> list[Clip]:
        """``num_digits`` clips of one random speaker, in spoken order."""
        speaker = self._speakers[int(rng.integers(len(self._speakers)))]
        by_digit = self._index[speaker]
        digits = list(by_digit)
        out = []
        for _ in range(num_digits):
            candidates = by_digit[digits[int(rng.integers(len(digits)))]]
            out.append(self.clips[candidates[int(rng.integers(len(candidates)))]])
        return out

    def __repr__(self) -> str:
        return f"ClipSource({self.name!r}, {len(self.clips)} clips, {len(self._speakers)} speakers, weight={self.weight})"


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
    sources: Sequence[ClipSource],
    *,
    num_digits_range: tuple[int, int] = (1, 8),
    compose: ComposeConfig = ComposeConfig(),
    augment: AugmentConfig = AugmentConfig(),
) -> tuple[np.ndarray, ComposedUtterance]:
    """One random utterance: (augmented waveform float32 [N], its composition).

    Steps: pick a source by weight, a digit count, one speaker's clips; speed-perturb each
    clip with one factor (so spans stay exact); compose with per-clip gain jitter; then
    utterance gain, noise and peak limiting (:func:`augment_waveform`), which keep length.
    ``composition.waveform`` is the clean version before utterance-level augmentation;
    ``composition.source`` is the ClipSource's name.
    """
    weights = np.array([s.weight for s in sources], dtype=np.float64)
    source = sources[int(rng.choice(len(sources), p=weights / weights.sum()))]
    clips = source.sample_clips(rng, _draw_num_digits(rng, num_digits_range))
    factor = float(rng.uniform(*augment.speed_range))
    if factor != 1.0:
        clips = [
            Clip(speed_perturb(c.waveform, factor), c.digit, c.speaker, c.source, c.name) for c in clips
        ]
    if augment.onset_cut_probability > 0:  # draws nothing when off, so older recipes replay exactly
        clips = [_cut_clip(rng, c, augment) if rng.random() < augment.onset_cut_probability else c for c in clips]
    composed = compose_utterance(clips, rng, config=compose, clip_gain_jitter_db=augment.clip_gain_jitter_db)
    # Report the ClipSource's name (e.g. "espeak-train"), which is what the mixing weights name.
    composed = dataclasses.replace(composed, source=source.name)
    waveform = augment_waveform(rng, composed.waveform, augment, speech_spans_samples=composed.spans_samples)
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
    targets = np.full((batch_size, int(target_lengths.max())), BLANK_ID, dtype=np.int64)
    spans = np.full((batch_size, int(target_lengths.max()), 2), -1, dtype=np.int64)
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
