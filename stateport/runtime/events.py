"""What the streamer reports: speech boundaries, partial and final text, keyword hits, raw outputs.

Sample indices are absolute, at the model's sample rate (``Streamer.sample_rate_hz``), counted
from the first sample after construction or ``reset()``; dropped audio (underrun policy
``drop_oldest``) keeps its place in the count, so indices always match the input timeline.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["SpeechStart", "SpeechEnd", "PartialText", "FinalText", "KeywordSpotted", "RawOutput",
           "StreamResult", "StreamCounters", "Event"]


@dataclass(frozen=True)
class SpeechStart:
    """The VAD heard speech start (padded by ``speech_pad_ms``, like Silero's iterator)."""

    sample_index: int


@dataclass(frozen=True)
class SpeechEnd:
    """The VAD heard speech end (after ``min_silence_duration_ms`` of silence; padded)."""

    sample_index: int


@dataclass(frozen=True)
class PartialText:
    """The current utterance so far; sent whenever a step adds tokens."""

    text: str
    tokens: tuple[int, ...]


@dataclass(frozen=True)
class FinalText:
    """A finished utterance: the decoder's text over samples ``[start_sample, end_sample)``.

    ``reason``: "end_of_speech" (VAD endpoint), "max_duration" (forced cut) or "end_of_input".
    Consecutive utterances tile the stream: one's ``end_sample`` is the next one's ``start_sample``.
    ``timestamps``: seconds from the start of the stream at which each token was emitted (the
    start of its output frame); ``scores``: each token's log-probability. Both are empty when the
    decoder cannot say (a beam search's labeling has no single alignment).
    """

    text: str
    tokens: tuple[int, ...]
    start_sample: int
    end_sample: int
    reason: str = "end_of_input"
    timestamps: tuple[float, ...] = ()
    scores: tuple[float, ...] = ()
    token_texts: tuple[str, ...] = ()


@dataclass(frozen=True)
class KeywordSpotted:
    """A classifier model's keyword detection at an absolute sample index."""

    keyword: str
    class_id: int
    sample_index: int
    score: float


@dataclass(frozen=True)
class RawOutput:
    """One step's outputs of a model without a built-in decoder (``output.kind`` raw, transducer, ...)."""

    outputs: dict = field(compare=False)
    first_frame: int = 0

    def __repr__(self) -> str:
        shapes = {k: tuple(np.shape(v)) for k, v in self.outputs.items()}
        return f"RawOutput(first_frame={self.first_frame}, outputs={shapes})"


Event = SpeechStart | SpeechEnd | PartialText | FinalText | KeywordSpotted | RawOutput


@dataclass(frozen=True)
class StreamResult:
    """Everything recognised since the last ``reset()``: finished utterances plus the current one.

    ``tokens`` (ids), ``token_texts``, ``timestamps`` (seconds from the stream start) and
    ``scores`` (log-probabilities) run over every token in order; ``timestamps`` and ``scores``
    are empty when an utterance's decoder could not give them (beam search).
    """

    text: str
    tokens: tuple[int, ...]
    utterances: tuple[FinalText, ...]
    partial: str
    timestamps: tuple[float, ...] = ()
    token_texts: tuple[str, ...] = ()
    scores: tuple[float, ...] = ()


@dataclass
class StreamCounters:
    """Running counts of one stream (``reset()`` zeroes them)."""

    samples_in: int = 0          # input samples accepted, at their own rate
    samples_model: int = 0       # samples at the model rate pushed into the ring buffer
    steps: int = 0               # model calls
    frames: int = 0              # feature frames fed to the model
    frames_in: int = 0           # feature frames accepted with accept_features (models without a frontend)
    padded_frames: int = 0       # frames of silence added to fill a last chunk
    tail_samples: int = 0        # samples of silence fed at the end of input (the card's tail padding)
    resets: int = 0              # end-of-speech state resets
    finals: int = 0              # FinalText events
    dropped_samples: int = 0     # model-rate samples dropped by an underrun policy or a full buffer
    model_switches: int = 0      # fallback model switches
    vad_windows: int = 0         # VAD model calls

    def to_dict(self) -> dict:
        return dict(self.__dict__)
