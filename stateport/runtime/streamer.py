"""The event-level client of one stream: ``Streamer``, kept on top of :class:`~.recognizer.Recognizer`.

``Streamer(model)`` is one :class:`~.recognizer.Recognizer` with one
:class:`~.recognizer.Stream` and the event API the CLI and the pacing loop use: every
``accept_waveform(samples, sample_rate_hz)`` (this class's historical argument order) runs the
steps that are ready and returns their events (:class:`~.events.PartialText`,
:class:`~.events.FinalText`, :class:`~.events.SpeechStart` / :class:`~.events.SpeechEnd`,
:class:`~.events.KeywordSpotted`, :class:`~.events.RawOutput`); ``decode=False`` only buffers,
for a capture callback, and ``is_ready()`` / ``decode_step()`` then run one step at a time; the
underrun policy's ``drop_backlog`` and ``switch_model`` (fallback) act on the stream.

New code uses the recognizer directly (one model, many streams, batched decoding)::

    rec = stateport.Recognizer.from_file(path)
    stream = rec.create_stream(vad="silero")
    stream.accept_waveform(16000, samples)
    while rec.is_ready(stream):
        events = rec.decode_stream(stream)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

from ..errors import InvalidInputError
from .audio import check_sample_rate, prepare_samples
from .endpoint import EndpointConfig
from .events import StreamResult
from .frontend import FrontendConfig
from .outputs import DECODERS
from .recognizer import Recognizer, RecognizerOptions

__all__ = ["Streamer", "StreamerOptions", "DECODERS"]


@dataclass(frozen=True)
class StreamerOptions(RecognizerOptions):
    """:class:`~.recognizer.RecognizerOptions` with the streamer's bounded buffer: ``overflow`` "raise"
    (a capture callback that outruns the model by ``buffer_seconds``, 30 s, hears BufferOverflowError)
    unless set otherwise."""

    buffer_seconds: float = 30.0
    overflow: str = "raise"


def _recognizer(model, options: RecognizerOptions, decoder: str, allow_uncertified: bool) -> Recognizer:
    if isinstance(model, Recognizer):
        return model
    if isinstance(model, (str, os.PathLike)):
        return Recognizer.from_file(model, options=options, decoder=decoder, allow_uncertified=allow_uncertified)
    if hasattr(model, "card"):
        return Recognizer(model, decoder=decoder, options=options)
    raise InvalidInputError(f"model must be a path to a stateport .onnx file, an OnnxStepSession or a Recognizer; "
                            f"got {type(model).__name__}")


class Streamer:
    """Run one audio stream through a stateport model, from its card alone, with events.

    Args:
        model: path of a stateport ``.onnx`` file (or a transducer export directory), an
            :class:`OnnxStepSession`, or a :class:`~.recognizer.Recognizer`.
        vad: None (no endpointing: one utterance per stream), "silero", or a VAD object with
            ``probability(window) -> float``, ``window_samples``, ``sample_rate_hz``, ``reset()``.
        endpoint: when an utterance ends (used with a VAD).
        decoder: "greedy" or "beam" (CTC prefix beam search for FinalText; partials stay greedy).
        options: :class:`StreamerOptions`.
        allow_uncertified: open a model file whose parity certificate is absent or FAILED.

    Sample indices in events are absolute, at the model rate ``sample_rate_hz``.
    """

    def __init__(self, model, *, vad=None, endpoint: EndpointConfig = EndpointConfig(), decoder: str = "greedy",
                 options: RecognizerOptions = StreamerOptions(), allow_uncertified: bool = False):
        if not isinstance(options, RecognizerOptions):
            raise InvalidInputError(f"options must be a StreamerOptions; got {type(options).__name__}")
        if not isinstance(endpoint, EndpointConfig):
            raise InvalidInputError(f"endpoint must be an EndpointConfig; got {type(endpoint).__name__}")
        if decoder not in DECODERS:
            raise InvalidInputError(f"decoder must be one of {DECODERS}; got {decoder!r}")
        self.options, self.endpoint, self.decoder_name = options, endpoint, decoder
        self._allow_uncertified = allow_uncertified
        self.recognizer = _recognizer(model, options, decoder, allow_uncertified)
        self.stream = self.recognizer.create_stream(vad=vad, endpoint=endpoint)

    # ------------------------------------------------------------------ the model
    @property
    def card(self):
        return self.recognizer.card

    @property
    def session(self):
        return self.recognizer.session

    @property
    def sample_rate_hz(self) -> int:
        return self.recognizer.sample_rate_hz

    @property
    def frontend_config(self) -> FrontendConfig | None:
        """The frontend this client computes: the card's, or None (features in; audio-in: the graph computes it)."""
        return FrontendConfig.from_dict(self.card.frontend) if self.card.frontend and not self.card.audio_input else None

    @property
    def vad(self):
        gate = self.stream._gate
        return None if gate is None else gate.vad

    @property
    def counters(self):
        return self.stream.counters

    # ------------------------------------------------------------------ input
    def reset(self) -> None:
        """Start a new stream: buffers, resampler, frontend, model state, decoder, VAD, counters."""
        self.stream.reset()

    def accept_waveform(self, samples, sample_rate_hz: int, *, decode: bool = True) -> list:
        """Push audio ``[N]`` or ``[N, C]`` (float in [-1, 1]) at ``sample_rate_hz``.

        With ``decode`` (default) runs every step that is ready and returns its events; with
        ``decode=False`` only buffers (drive it with ``is_ready()`` / ``decode_step()``).
        """
        stream = self.stream
        if not decode:
            stream.accept_waveform(sample_rate_hz, samples)
            return []
        rate = check_sample_rate(sample_rate_hz)
        # Push in pieces that fit a bounded ring buffer, processing between them, so one call with a
        # whole file works; the whole read is checked first, so a bad one changes nothing.
        piece = max(1, int(self.options.buffer_seconds * rate) // 2)
        length = np.shape(samples)[0] if isinstance(samples, np.ndarray) and samples.ndim else 0
        if length > piece:
            prepare_samples(samples, stream_offset=stream.counters.samples_in)
        events: list = []
        for start in range(0, max(length, 1), piece):
            stream.accept_waveform(rate, samples[start:start + piece] if length > piece else samples)
            events += self._drain()
        return events

    def accept_features(self, features, *, decode: bool = True) -> list:
        """Push feature frames ``[T, F]`` float32 (models whose card declares no frontend)."""
        self.stream.accept_features(features)
        return self._drain() if decode else []

    def input_finished(self, *, decode: bool = True) -> list:
        """Declare the end of input. With ``decode`` runs the rest and returns the closing events.

        The resampler's tail is flushed, the card's tail padding of silence goes through the
        frontend, the remaining frames run as a last chunk, open utterances are finalized.
        """
        if self.stream.is_finished:
            return []
        self.stream.input_finished()
        return self._drain() if decode else []

    def _drain(self) -> list:
        events = []
        rec, stream = self.recognizer, self.stream
        while stream._is_ready():
            events += rec.decode_stream(stream)
        return events

    # ------------------------------------------------------------------ stepping
    def is_ready(self) -> bool:
        """Whether ``decode_step()`` has work: a full chunk, or (after input_finished) the rest."""
        return self.stream._is_ready()

    def decode_step(self) -> list:
        """Run one model step (if a chunk is ready) and return the events it causes."""
        return self.recognizer.decode_stream(self.stream)

    # ------------------------------------------------------------------ underrun and fallback
    @property
    def backlog_samples(self) -> int:
        """Audio accepted but not yet processed by the model, in model-rate samples."""
        return self.stream.backlog_samples

    @property
    def processed_samples(self) -> int:
        """Absolute model-rate sample up to which the model has heard the audio (end of its last frame)."""
        return self.stream.processed_samples

    def drop_backlog(self, keep_samples: int) -> int:
        """Drop the oldest unprocessed audio so that at most ``keep_samples`` wait; return how many went."""
        return self.stream.drop_backlog(keep_samples)

    def switch_model(self, model) -> bool:
        """Continue the stream on another model (e.g. the int8 one); returns whether state carried over.

        The new card must have the same frontend, rate, input layout and vocabulary. Its state is
        carried over when every state port matches (name, shape, dtype): a quantized copy of the
        same network; otherwise the new model starts from a fresh state.
        """
        new = _recognizer(model, self.options, self.decoder_name, self._allow_uncertified)
        carried = self.stream._move_to(new)
        self.recognizer = new
        self.stream.counters.model_switches += 1
        return carried

    # ------------------------------------------------------------------ results
    def result(self) -> StreamResult:
        """Finished utterances plus the current partial one."""
        return self.stream.result()

    def events(self, chunks: Iterable, sample_rate_hz: int) -> Iterator:
        """Generator: every event of a stream given as an iterable of audio chunks (then the end)."""
        for chunk in chunks:
            yield from self.accept_waveform(chunk, sample_rate_hz)
        yield from self.input_finished()
