"""The client loop: audio in, events out, for any stateport ONNX file, driven by its card alone.

Data flow (every arrow keeps absolute indices)::

    accept_waveform(samples [N] or [N, C], rate)
      -> mix down, check -> StreamingResampler (to the card's rate) -> RingBuffer (model-rate samples)
      -> (pumped lazily, only as far as the next step needs) -> StreamingFrontend -> frame queue [Q, F]
                                                             -> VAD windows -> EndpointDetector
      -> OnnxStepSession.step(chunk [1, frames_per_step, F]) with the state loop
      -> decoder chosen by card.output.kind -> events

Two layers, as in sherpa-onnx. Low level: ``accept_waveform(..., decode=False)`` only buffers
(what a capture callback does); ``is_ready()`` / ``decode_step()`` run one model step at a
time; ``input_finished()``; ``reset()``; ``result()``. Event level: ``accept_waveform`` (default
``decode=True``) and ``input_finished()`` run every step that is ready and return the events,
and :meth:`Streamer.events` is a generator over an iterable of chunks.

Why the audio is pumped lazily: the backlog of audio the model has not processed yet stays in
the ring buffer, where an underrun policy can see it and drop it (``drop_backlog``). And why
VAD decisions are applied on the step grid: the VAD reads the same pumped audio, so when a step
starting at frame ``n`` is about to run, every VAD decision up to sample ``n * hop`` is known,
whatever the read size; an endpoint reset therefore lands on the same step boundary for every
chunking of the input, and a stream's text does not depend on how it was read.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

from ..errors import CardError, InvalidInputError, NonFiniteInputError, UnsupportedError
from .audio import check_sample_rate, prepare_samples
from .decoders import CtcGreedyDecoder, KeywordSpotter, ctc_prefix_beam_search
from .endpoint import EndpointConfig, EndpointDecision, EndpointDetector
from .events import (FinalText, KeywordSpotted, PartialText, RawOutput, SpeechEnd, SpeechStart, StreamCounters,
                     StreamResult)
from .frontend import FrontendConfig, StreamingFrontend, compute_features
from .resample import QUALITIES, StreamingResampler
from .ring_buffer import OVERFLOW_POLICIES, RingBuffer
from .session import OnnxStepSession

__all__ = ["Streamer", "StreamerOptions", "DECODERS"]

DECODERS = ("greedy", "beam")


@dataclass(frozen=True)
class StreamerOptions:
    """Tuning of the client loop (none of it changes what the model computes).

    Fields:
        threads: ONNX Runtime intra-op threads when the streamer opens the model file.
        buffer_seconds: ring buffer capacity (audio not yet processed), in seconds at the model rate.
        overflow: ring buffer policy when ``accept_waveform(decode=False)`` outruns the model:
            "raise" (BufferOverflowError) or "drop_oldest" (dropped samples are counted).
        separator: joins token strings into text.
        beam_size: prefixes kept by the "beam" decoder.
        resampler_quality: soxr quality preset for inputs at another rate.
        keyword_threshold, keyword_smoothing_frames, keyword_refractory_frames: KeywordSpotter
            settings for classifier models (in output frames).
        keyword_background_id: the classifier's non-keyword class; None: the card's blank_id,
            else the class named "_background_" if there is one.
    """

    threads: int = 1
    buffer_seconds: float = 30.0
    overflow: str = "raise"
    separator: str = " "
    beam_size: int = 8
    resampler_quality: str = "HQ"
    keyword_threshold: float = 0.5
    keyword_smoothing_frames: int = 5
    keyword_refractory_frames: int = 30
    keyword_background_id: int | None = None

    def __post_init__(self):
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1:
            raise InvalidInputError(f"threads must be an int >= 1; got {self.threads!r}")
        if isinstance(self.buffer_seconds, bool) or not isinstance(self.buffer_seconds, (int, float)) \
                or not 0 < self.buffer_seconds < 3600:
            raise InvalidInputError(f"buffer_seconds must be a number in (0, 3600); got {self.buffer_seconds!r}")
        if self.overflow not in OVERFLOW_POLICIES:
            raise InvalidInputError(f"overflow must be one of {OVERFLOW_POLICIES}; got {self.overflow!r}")
        if isinstance(self.beam_size, bool) or not isinstance(self.beam_size, int) or self.beam_size < 1:
            raise InvalidInputError(f"beam_size must be an int >= 1; got {self.beam_size!r}")
        if self.resampler_quality not in QUALITIES:
            raise InvalidInputError(f"resampler_quality must be one of {QUALITIES}; got {self.resampler_quality!r}")


def _open_session(model, threads: int):
    if isinstance(model, (str, os.PathLike)):
        return OnnxStepSession(model, threads=threads)
    if all(hasattr(model, a) for a in ("card", "step", "reset")):
        return model
    raise InvalidInputError(f"model must be a path to a stateport .onnx file or an OnnxStepSession; "
                            f"got {type(model).__name__}")


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


class Streamer:
    """Run one audio stream through a stateport model, from its card alone.

    Args:
        model: path of a stateport ``.onnx`` file, or an :class:`OnnxStepSession` (the
            streamer then owns its state).
        vad: None (no endpointing: one utterance per stream), "silero", or a VAD object with
            ``probability(window) -> float``, ``window_samples``, ``sample_rate_hz``, ``reset()``
            (e.g. :class:`~stateport.runtime.vad.SileroVad`).
        endpoint: when an utterance ends (used with a VAD).
        decoder: "greedy" or "beam" (CTC prefix beam search for FinalText; partials stay greedy).
        options: :class:`StreamerOptions`.

    Sample indices in events are absolute, at the model rate ``sample_rate_hz``.
    """

    def __init__(self, model, *, vad=None, endpoint: EndpointConfig = EndpointConfig(), decoder: str = "greedy",
                 options: StreamerOptions = StreamerOptions()):
        if not isinstance(options, StreamerOptions):
            raise InvalidInputError(f"options must be a StreamerOptions; got {type(options).__name__}")
        if not isinstance(endpoint, EndpointConfig):
            raise InvalidInputError(f"endpoint must be an EndpointConfig; got {type(endpoint).__name__}")
        if decoder not in DECODERS:
            raise InvalidInputError(f"decoder must be one of {DECODERS}; got {decoder!r}")
        self.options = options
        self.endpoint = endpoint
        self.decoder_name = decoder
        self._bind_session(_open_session(model, options.threads))
        card = self.card
        self.sample_rate_hz = card.streaming.sample_rate_hz
        self._hop_samples = card.streaming.frame_hop_samples

        # Frontend: from the card, or none (the caller feeds features with accept_features).
        self.frontend_config = FrontendConfig.from_dict(card.frontend) if card.frontend else None
        if self.frontend_config is not None:
            fc = self.frontend_config
            if fc.sample_rate_hz != self.sample_rate_hz or fc.frame_shift_samples != self._hop_samples:
                raise CardError(f"card frontend ({fc.sample_rate_hz} Hz, hop {fc.frame_shift_samples}) contradicts "
                                f"streaming ({self.sample_rate_hz} Hz, hop {self._hop_samples})")
            self._frontend = StreamingFrontend(fc)
            # Frame k's window ends at k * hop + _frame_end_offset (fed samples).
            self._frame_end_offset = fc.first_sample_of_frame(0) + fc.frame_length_samples
            # The frame that pads a last chunk: digital silence through the same frontend (a zero
            # log-mel vector would be a loud frame, not silence).
            self._pad_frame = compute_features(np.zeros(fc.frame_length_samples, np.float32), fc)[0]
        else:
            self._frontend = None
            self._pad_frame = np.zeros(self._num_features, np.float32)
        if self.frontend_config is not None and isinstance(self._num_features_declared, int) \
                and self.frontend_config.num_features != self._num_features_declared:
            raise CardError(f"card frontend gives {self.frontend_config.num_features} features per frame; the "
                            f"input {self._input_port.name} takes {self._num_features_declared}")

        # VAD and endpointing (audio only).
        if isinstance(vad, str) and vad != "silero":
            raise InvalidInputError(f"vad must be None, 'silero' or a VAD object; got {vad!r}")
        if vad == "silero":
            from .vad import SileroVad

            vad = SileroVad(sample_rate_hz=self.sample_rate_hz, threads=options.threads)
        if vad is not None:
            if self._frontend is None:
                raise UnsupportedError("a VAD needs audio input; this model takes features (no frontend in its card)")
            for attr in ("probability", "window_samples", "sample_rate_hz", "reset"):
                if not hasattr(vad, attr):
                    raise InvalidInputError(f"vad must provide {attr} (e.g. a SileroVad); got {type(vad).__name__}")
            if vad.sample_rate_hz != self.sample_rate_hz:
                raise UnsupportedError(f"the VAD runs at {vad.sample_rate_hz} Hz but the model at "
                                       f"{self.sample_rate_hz} Hz")
            self._endpointer = EndpointDetector(endpoint, sample_rate_hz=self.sample_rate_hz,
                                                window_samples=vad.window_samples)
            self._vad_window = np.zeros(vad.window_samples, np.float32)
        else:
            self._endpointer = None
        self.vad = vad

        self._ring = RingBuffer(max(1, int(options.buffer_seconds * self.sample_rate_hz)),
                                overflow=options.overflow)
        self._make_decoder()
        self.reset()

    # ------------------------------------------------------------------ model binding
    def _bind_session(self, session) -> None:
        card = session.card
        if len(card.inputs) != 1:
            raise UnsupportedError(f"the streamer drives one-input models; {card.name!r} has inputs "
                                   f"{[p.name for p in card.inputs]}")
        port = card.inputs[0]
        if np.dtype(port.dtype).kind != "f":
            raise UnsupportedError(f"input {port.name} takes {port.dtype}; the streamer feeds float features")
        st = card.streaming
        self._frame_wise = st.frames_per_step == 0
        time_axis = port.time_axis
        if self._frame_wise and time_axis is not None or not self._frame_wise and time_axis is None:
            raise CardError(f"input {port.name}: frames_per_step {st.frames_per_step} contradicts time_axis "
                            f"{time_axis}")
        feature_axes = [a for a in range(1, len(port.shape)) if a != time_axis]
        if len(feature_axes) != 1:
            raise UnsupportedError(f"input {port.name} {port.shape}: expected [batch, T, F] or [batch, F]")
        out_name = card.output.port or card.outputs[0].name
        out_port = next(p for p in card.outputs if p.name == out_name)
        old = getattr(self, "card", None)
        if old is not None:
            # A model switch (fallback) must keep the contract the rest of the loop relies on.
            same = (old.frontend == card.frontend and old.streaming.sample_rate_hz == st.sample_rate_hz
                    and old.streaming.frame_hop_samples == st.frame_hop_samples
                    and old.inputs[0].shape == port.shape and old.output.kind == card.output.kind
                    and list(old.output.vocabulary) == list(card.output.vocabulary))
            if not same:
                raise UnsupportedError(f"cannot switch from {old.name!r} to {card.name!r}: frontend, rate, input "
                                       "or output vocabulary differ")
        self.session = session
        self.card = card
        self._input_port = port
        self._num_features_declared = port.shape[feature_axes[0]]
        self._num_features = (self._num_features_declared if isinstance(self._num_features_declared, int)
                              else (FrontendConfig.from_dict(card.frontend).num_features if card.frontend else None))
        if self._num_features is None:
            raise CardError(f"input {port.name} {port.shape}: the feature dimension must be an int without a frontend")
        self._frames_per_step = st.frames_per_step or 1
        self._frames_advanced = st.frames_advanced_per_step or self._frames_per_step
        self._output_port = out_port

    def _make_decoder(self) -> None:
        out = self.card.output
        self._kind = out.kind
        if self.decoder_name == "beam" and out.kind != "ctc":
            raise UnsupportedError(f"decoder 'beam' needs a CTC model; this card's output kind is {out.kind!r}")
        if out.kind == "ctc":
            if not out.vocabulary or out.blank_id is None:
                raise CardError("a CTC card needs output.vocabulary and output.blank_id")
            self._decoder = CtcGreedyDecoder(out.blank_id, out.vocabulary, separator=self.options.separator)
        elif out.kind == "classifier":
            if not out.vocabulary:
                raise CardError("a classifier card needs output.vocabulary (the class names)")
            o = self.options
            background = o.keyword_background_id
            if background is None:
                background = out.blank_id if out.blank_id is not None else (
                    list(out.vocabulary).index("_background_") if "_background_" in out.vocabulary else None)
            self._decoder = KeywordSpotter(out.vocabulary, o.keyword_threshold, o.keyword_smoothing_frames,
                                           o.keyword_refractory_frames, background)
        else:
            self._decoder = None  # raw outputs: RawOutput events

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Start a new stream: buffers, resampler, frontend, model state, decoder, VAD, counters."""
        self._ring.reset()
        self._resampler: StreamingResampler | None = None
        self._input_rate_hz: int | None = None
        if self._frontend is not None:
            self._frontend.reset()
        self.session.reset()
        self.session.state = None
        if self._decoder is not None:
            self._decoder.reset()
        if self.vad is not None:
            self.vad.reset()
            self._endpointer.reset()
            self._vad_fill = 0
        self._vad_queue: deque[EndpointDecision] = deque()
        self._fed_abs = 0          # absolute ring index of the next sample for frontend and VAD
        self._fed = 0              # samples given to frontend and VAD ("fed space": drops removed)
        self._gaps: list[tuple[int, int]] = []  # (fed index, total dropped before it)
        self._frames = np.zeros((0, self._num_features), np.float32)  # queued, not yet stepped
        self._step_frame = 0       # absolute frame index of self._frames[0]
        self._utt_start_frame = 0
        self._utt_tokens: list[int] = []
        self._utt_text = ""
        self._utt_log_probs: list[np.ndarray] = []
        self._keyword_hits: list[KeywordSpotted] = []
        self._finals: list[FinalText] = []
        self._finished = False
        self._closed = False
        self.counters = StreamCounters()

    # ------------------------------------------------------------------ input
    def accept_waveform(self, samples, sample_rate_hz: int, *, decode: bool = True) -> list:
        """Push audio ``[N]`` or ``[N, C]`` (float in [-1, 1]) at ``sample_rate_hz``.

        With ``decode`` (default) runs every step that is ready and returns its events; with
        ``decode=False`` only buffers (drive it with ``is_ready()`` / ``decode_step()``).
        """
        if self._frontend is None:
            raise UnsupportedError(f"{self.card.name!r} has no frontend in its card: it takes features "
                                   "(use accept_features)")
        if self._finished:
            raise InvalidInputError("accept_waveform after input_finished(); call reset() to start a new stream")
        rate = check_sample_rate(sample_rate_hz)
        mono = prepare_samples(samples)
        if self._input_rate_hz is None:
            self._input_rate_hz = rate
            if rate != self.sample_rate_hz:
                self._resampler = StreamingResampler(rate, self.sample_rate_hz, quality=self.options.resampler_quality)
        elif rate != self._input_rate_hz:
            raise InvalidInputError(f"sample_rate_hz changed from {self._input_rate_hz} to {rate} within a stream; "
                                    "call reset() first")
        self.counters.samples_in += mono.shape[0]
        model_rate = self._resampler.process(mono) if self._resampler is not None else mono
        return self._push(model_rate, decode)

    def _push(self, samples: np.ndarray, decode: bool) -> list:
        self.counters.samples_model += samples.shape[0]
        if not decode:
            self._ring.push(samples)
            return []
        events = []
        # Push in pieces that fit, processing between them, so one call with a whole file works.
        piece = max(1, self._ring.capacity_samples // 2)
        for start in range(0, samples.shape[0], piece):
            self._ring.push(samples[start:start + piece])
            events += self._drain()
        return events

    def accept_features(self, features, *, decode: bool = True) -> list:
        """Push feature frames ``[T, F]`` float32 (models whose card declares no frontend)."""
        if self._frontend is not None:
            raise UnsupportedError(f"{self.card.name!r} computes its features from audio (use accept_waveform)")
        if self._finished:
            raise InvalidInputError("accept_features after input_finished(); call reset() to start a new stream")
        features = np.asarray(features)
        if features.ndim != 2 or features.shape[1] != self._num_features or features.dtype.kind != "f":
            raise InvalidInputError(f"features must be float [T, {self._num_features}]; got "
                                    f"{features.dtype} {features.shape}")
        if not np.isfinite(features).all():
            raise NonFiniteInputError("features contain NaN or Inf")
        self._frames = np.concatenate([self._frames, features.astype(np.float32)])
        return self._drain() if decode else []

    def input_finished(self, *, decode: bool = True) -> list:
        """Declare the end of input. With ``decode`` runs the rest and returns the closing events.

        The resampler's tail is flushed, the frontend emits its last frames, the remaining
        frames run as a last chunk (see ``_take_chunk``), open utterances are finalized.
        """
        if self._finished:
            return []
        if self._resampler is not None:
            self._push(self._resampler.flush(), decode=False)
        self._finished = True
        return self._drain() if decode else []

    def _drain(self) -> list:
        events = []
        while self.is_ready():
            events += self.decode_step()
        return events

    # ------------------------------------------------------------------ pumping audio
    def _pump(self, frames_wanted: int) -> None:
        """Feed ring audio to the frontend and VAD until ``frames_wanted`` frames are queued.

        Audio moves only once the whole chunk's samples are there (or the input has ended):
        one frontend call per step rather than per read, and the backlog waits in the ring
        buffer, where ``drop_backlog`` can reach it.
        """
        if self._frontend is None:
            return
        fe, ring = self._frontend, self._ring
        while True:
            if fe.num_frames_ready:
                self._frames = np.concatenate([self._frames, fe.pop_frames()])
            if self._frames.shape[0] >= frames_wanted:
                return
            if ring.start_index > self._fed_abs:  # the ring dropped audio we had not fed (overflow / underrun)
                dropped = ring.start_index - self._fed_abs
                self.counters.dropped_samples += dropped
                self._gaps.append((self._fed, (self._gaps[-1][1] if self._gaps else 0) + dropped))
                self._fed_abs = ring.start_index
            available = ring.end_index - self._fed_abs
            if available == 0:
                if self._finished and not fe.is_finished:
                    fe.input_finished()
                    self._finish_vad()
                    continue
                return
            # Samples up to the end of the window of the last wanted frame (at least one hop, so
            # that frames the formula does not predict (snip_edges=False) still make progress).
            last_frame = fe.next_frame_index + (frames_wanted - self._frames.shape[0]) - 1
            need = max(last_frame * self._hop_samples + self._frame_end_offset - self._fed, self._hop_samples)
            if available < need and not self._finished and available < ring.capacity_samples // 2:
                return  # wait for the chunk (unless a small ring buffer would fill up first)
            count = min(available, need)
            chunk = ring.read(self._fed_abs, count)
            ring.discard_before(self._fed_abs + count)
            fe.accept_waveform(chunk)
            self._feed_vad(chunk)
            self._fed += count
            self._fed_abs += count

    def _feed_vad(self, samples: np.ndarray) -> None:
        if self.vad is None:
            return
        window, start = self._vad_window, 0
        while start < samples.shape[0]:
            take = min(window.shape[0] - self._vad_fill, samples.shape[0] - start)
            window[self._vad_fill:self._vad_fill + take] = samples[start:start + take]
            self._vad_fill += take
            start += take
            if self._vad_fill == window.shape[0]:
                self._run_vad_window()

    def _run_vad_window(self) -> None:
        probability = self.vad.probability(self._vad_window)
        self.counters.vad_windows += 1
        self._vad_fill = 0
        self._vad_queue.extend(self._endpointer.accept(probability))

    def _finish_vad(self) -> None:
        if self.vad is None:
            return
        if self._vad_fill:
            # The last partial window is zero-padded, as Silero's get_speech_timestamps does.
            self._vad_window[self._vad_fill:] = 0.0
            self._run_vad_window()
        self._vad_queue.extend(self._endpointer.finish())

    # ------------------------------------------------------------------ stepping
    def is_ready(self) -> bool:
        """Whether ``decode_step()`` has work: a full chunk, or (after input_finished) the rest."""
        if self._closed:
            return False
        self._pump(self._frames_per_step)
        return self._frames.shape[0] >= self._frames_per_step or self._finished

    def decode_step(self) -> list:
        """Run one model step (if a chunk is ready) and return the events it causes."""
        events: list = []
        if self._closed:
            return events
        self._pump(self._frames_per_step)
        self._release_vad(events, final=False)
        chunk = self._take_chunk()
        if chunk is None:
            if self._finished and self._frames.shape[0] == 0:
                self._close(events)
            return events
        x, real_frames, advance = chunk
        first_frame = self._step_frame
        outputs = self.session.step(x)
        self.counters.steps += 1
        self.counters.frames += real_frames
        self._frames = self._frames[advance:]
        self._step_frame += advance
        self._decode(outputs, real_frames, first_frame, events)
        return events

    def _take_chunk(self):
        """``(x, real_frames, frames_to_advance)`` for the next step, or None.

        A full chunk is ``frames_per_step`` frames. At the end of input the rest (fewer frames)
        runs as a last shorter chunk when the card allows that length (dynamic time axis, a
        multiple of ``frame_multiple``, at least ``min_frames``): the model then sees exactly
        the offline frames. Otherwise (a static export, or a length that is not a multiple) the
        chunk is padded with frames of digital silence up to a length it takes; the outputs of
        padded frames are dropped, so no token can come from padding alone.
        """
        queued = self._frames.shape[0]
        st = self.card.streaming
        if queued >= self._frames_per_step:
            frames = self._frames[:self._frames_per_step]
            return self._to_input(frames), self._frames_per_step, self._frames_advanced
        if not self._finished or queued == 0:
            return None
        if self._frontend is not None and not self._frontend.is_finished:
            return None
        if st.check_chunk_frames(queued) is None:
            return self._to_input(self._frames), queued, queued
        if st.static:
            length = self._frames_per_step
        else:
            length = max(queued, st.min_frames)
            length += (-length) % st.frame_multiple
        pad = np.repeat(self._pad_frame[None], length - queued, axis=0)
        self.counters.padded_frames += length - queued
        return self._to_input(np.concatenate([self._frames, pad])), queued, queued

    def _to_input(self, frames: np.ndarray) -> np.ndarray:
        """Frames ``[T, F]`` -> the input port's layout (batch 1)."""
        if self._frame_wise:
            return np.ascontiguousarray(frames[:1])  # [1, F]
        x = frames[None]  # [1, T, F]
        if self._input_port.time_axis != 1:
            x = np.moveaxis(x, 1, self._input_port.time_axis)
        return np.ascontiguousarray(x, dtype=np.float32)

    def _output_frames(self, outputs: dict, real_frames: int) -> np.ndarray:
        """The main output as ``[T_out, V]`` for the real (unpadded) frames of this step."""
        y = np.asarray(outputs[self._output_port.name])
        axis = self._output_port.time_axis
        if axis is None:
            return y.reshape(y.shape[0], -1)[:1]  # one row per step
        y = np.moveaxis(y, axis, 1)[0]
        keep = -(-real_frames // self.card.streaming.subsampling)
        return y.reshape(y.shape[0], -1)[:keep]

    def _decode(self, outputs: dict, real_frames: int, first_frame: int, events: list) -> None:
        if self._decoder is None:
            events.append(RawOutput(outputs=outputs, first_frame=first_frame))
            return
        y = self._output_frames(outputs, real_frames)
        if self._kind == "ctc":
            emitted = self._decoder.accept(y)
            if self.decoder_name == "beam":
                self._utt_log_probs.append(_log_softmax(y.astype(np.float64)))
            if emitted:
                self._utt_tokens.extend(t.token_id for t in emitted)
                # Appended, not rebuilt from the decoder's whole result: O(new tokens) per step.
                self._utt_text = self.options.separator.join([self._utt_text] * bool(self._utt_text)
                                                             + [t.text for t in emitted])
                events.append(PartialText(self._utt_text, tuple(self._utt_tokens)))
            return
        # Classifier: KeywordSpotter wants posteriors; the card's output may be logits.
        if y.size and (y.min() < 0 or y.max() > 1 or not np.allclose(y.sum(axis=1), 1.0, atol=1e-3)):
            y = _softmax(y.astype(np.float64))
        subsampling = self.card.streaming.subsampling
        for hit in self._decoder.accept(y):
            if hit.keyword.startswith("_") and hit.keyword.endswith("_"):
                continue  # "_unknown_"-style classes are not keywords
            frame = self._utt_start_frame + hit.frame_index * subsampling
            event = KeywordSpotted(hit.keyword, hit.class_id, self._to_abs(frame * self._hop_samples), hit.score)
            self._keyword_hits.append(event)
            self._utt_tokens.append(hit.class_id)
            events.append(event)

    # ------------------------------------------------------------------ endpoints
    def _release_vad(self, events: list, *, final: bool) -> None:
        """Apply VAD decisions the model has reached (all of them when ``final``)."""
        boundary = self._step_frame * self._hop_samples
        while self._vad_queue and (final or self._vad_queue[0].decided_at_sample <= boundary):
            decision = self._vad_queue.popleft()
            sample = min(decision.sample_index, self._fed)
            if decision.kind == "start":
                events.append(SpeechStart(self._to_abs(sample)))
            else:
                events.append(SpeechEnd(self._to_abs(sample)))
                events.append(self._finalize(decision.reason or "end_of_speech"))
                # Only the states the card marks are cleared (e.g. not a feature normaliser's).
                self.session.reset(only_end_of_speech=True)
                self.counters.resets += 1

    def _finalize(self, reason: str) -> FinalText:
        """Close the current utterance at the current step boundary and start the next one."""
        end_sample = self._boundary_sample()
        start_sample = self._utt_start_frame * self._hop_samples
        tokens, text = self._utterance_result()
        final = FinalText(text, tokens, self._to_abs(start_sample), self._to_abs(max(end_sample, start_sample)),
                          reason)
        self._finals.append(final)
        self.counters.finals += 1
        self._utt_start_frame = self._step_frame
        self._utt_tokens = []
        self._utt_text = ""
        self._utt_log_probs = []
        if self._decoder is not None:
            self._decoder.reset()
        return final

    def _boundary_sample(self) -> int:
        """Fed-space sample where the next step starts (an utterance boundary)."""
        if self._frontend is not None and self._finished and self._frames.shape[0] == 0:
            # At the end of input the last utterance ends at the last sample, not at a frame edge.
            return self._fed
        return self._step_frame * self._hop_samples

    def _utterance_result(self) -> tuple[tuple[int, ...], str]:
        sep = self.options.separator
        if self._kind == "ctc" and self.decoder_name == "beam":
            if not self._utt_log_probs:
                return (), ""
            best = ctc_prefix_beam_search(np.concatenate(self._utt_log_probs), self.card.output.blank_id,
                                          self.options.beam_size, vocabulary=self.card.output.vocabulary,
                                          separator=sep)[0]
            return tuple(best.token_ids), best.text or ""
        if self._kind == "ctc":
            return tuple(self._utt_tokens), self._utt_text
        if self._kind == "classifier":
            vocab = self.card.output.vocabulary
            return tuple(self._utt_tokens), sep.join(vocab[t] for t in self._utt_tokens)
        return (), ""

    def _close(self, events: list) -> None:
        """End of stream: apply every remaining VAD decision, then finalize what is left."""
        self._release_vad(events, final=True)
        # One FinalText per stream at least; after an endpoint, only a tail that holds tokens.
        if self._utt_tokens or self._utt_log_probs or not self._finals:
            first = not self._finals
            final = self._finalize("end_of_input")
            if final.tokens or first:
                events.append(final)
            else:  # an empty tail after the last endpoint is not an utterance
                self._finals.pop()
                self.counters.finals -= 1
        self._closed = True

    # ------------------------------------------------------------------ underrun and fallback
    @property
    def backlog_samples(self) -> int:
        """Audio accepted but not yet processed by the model, in model-rate samples."""
        unfed = self._ring.end_index - max(self._fed_abs, self._ring.start_index)
        return int(unfed + self._frames.shape[0] * self._hop_samples)

    @property
    def processed_samples(self) -> int:
        """Absolute model-rate sample up to which the model has heard the audio (end of its last frame)."""
        if self._frontend is None:
            return self._step_frame * self._hop_samples
        heard = self._step_frame * self._hop_samples
        if self._step_frame:
            heard += self.frontend_config.frame_length_samples - self._hop_samples
        return self._to_abs(min(heard, self._fed))

    def drop_backlog(self, keep_samples: int) -> int:
        """Drop the oldest unprocessed audio so that at most ``keep_samples`` wait; return how many went.

        ``keep_samples`` bounds the whole backlog (``backlog_samples``), but only audio still in
        the ring buffer can go (frames already computed stay); dropped samples keep their
        place in the absolute sample count.
        """
        if isinstance(keep_samples, bool) or not isinstance(keep_samples, (int, np.integer)) or keep_samples < 0:
            raise InvalidInputError(f"keep_samples must be an int >= 0; got {keep_samples!r}")
        start = max(self._fed_abs, self._ring.start_index)
        keep_unfed = max(0, int(keep_samples) - self._frames.shape[0] * self._hop_samples)
        target = max(start, self._ring.end_index - keep_unfed)
        if target <= start:
            return 0
        self._ring.discard_before(target)
        return target - start  # counted in counters.dropped_samples by the next _pump

    def switch_model(self, model) -> bool:
        """Continue the stream on another model (e.g. the int8 one); returns whether state carried over.

        The new card must have the same frontend, rate, input layout and vocabulary. Its state
        is carried over when every state port matches (name, shape, dtype): a quantized copy of
        the same network; otherwise the new model starts from a fresh state.
        """
        old_session = self.session
        self._bind_session(_open_session(model, self.options.threads))
        old_state = getattr(old_session, "state", None)
        new_states = {s.name: (tuple(s.shape), s.dtype) for s in self.card.states}
        old_states = {s.name: (tuple(s.shape), s.dtype) for s in old_session.card.states}
        carried = old_state is not None and new_states == old_states
        self.session.reset()
        self.session.state = {k: v.copy() for k, v in old_state.items()} if carried else None
        self.counters.model_switches += 1
        return carried

    # ------------------------------------------------------------------ results
    def result(self) -> StreamResult:
        """Finished utterances plus the current partial one."""
        partial_tokens, partial = (tuple(self._utt_tokens), "")
        if self._decoder is not None and not self._closed:
            partial = (self._utt_text if self._kind == "ctc"
                       else self.options.separator.join(self.card.output.vocabulary[t] for t in self._utt_tokens))
        else:
            partial_tokens = ()
        finals = tuple(self._finals)
        texts = [f.text for f in finals if f.text] + ([partial] if partial else [])
        tokens = tuple(t for f in finals for t in f.tokens) + partial_tokens
        return StreamResult(self.options.separator.join(texts), tokens, finals, partial)

    def events(self, chunks: Iterable, sample_rate_hz: int) -> Iterator:
        """Generator: every event of a stream given as an iterable of audio chunks (then the end)."""
        for chunk in chunks:
            yield from self.accept_waveform(chunk, sample_rate_hz)
        yield from self.input_finished()

    # ------------------------------------------------------------------ indices
    def _to_abs(self, fed_index: int) -> int:
        """Fed-space sample index -> absolute index at the model rate (dropped audio counted)."""
        dropped = 0
        for gap_at, total in self._gaps:
            if fed_index < gap_at:
                break
            dropped = total
        return int(fed_index + dropped)
