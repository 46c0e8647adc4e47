"""One model, many streams: :class:`Recognizer` (the model, shared) and :class:`Stream` (one conversation).

sherpa-onnx's split, for any stateport file, driven by its card alone::

    rec = stateport.Recognizer.from_file("model.onnx")      # or Recognizer.builtin()
    s = rec.create_stream()                                   # < 0.1 ms: a stream per utterance is free
    s.accept_waveform(16000, samples)                         # float [N] or [N, C] in [-1, 1], any rate
    s.input_finished()                                        # the card's tail padding, then the end
    while rec.is_ready(s):
        rec.decode_stream(s)                                  # or rec.decode_streams([s1, s2, ...])
    rec.get_result(s).text                                    # text, tokens, timestamps (s), scores

The recognizer holds the ONNX Runtime session(s), the card and what follows from it once (the
input layout, the feature stage, the output decoder class, the initial state, the tail padding);
it keeps no per-stream state, so one session serves any number of streams. A stream holds one
conversation: resampler, ring buffer, feature stage, model state, output decoder, VAD and
endpointing, utterances.

Data flow of a stream (every arrow keeps absolute sample indices)::

    accept_waveform(rate, samples) -> checks (audio.py) -> resampler (to the card's rate) -> ring buffer
      -> pumped lazily, as far as the next step needs -> feature stage -> frame queue [Q, F]
                                                      -> VAD windows -> endpointing
      -> decode_streams: the ready streams' chunks and states stacked on the card's batch axes,
         one session.run, split back -> each stream's output decoder -> events / result

Why lazily: the backlog the model has not processed stays in the ring buffer, where an underrun
policy can drop it (``drop_backlog``). Why VAD decisions wait for the step grid: when a step
starting at frame ``n`` is about to run, every VAD decision up to sample ``n * hop`` is known
whatever the read size, so an endpoint lands on the same step boundary for any chunking of the
input and a stream's text does not depend on how it was read.

The end of input is part of the contract (``card.streaming.tail_padding_ms``): a causal model
emits a word after hearing some audio past it, so ``input_finished()`` feeds that much silence
through the frontend (digital zeros as audio: the log floor in feature space, exactly what a
recording followed by silence gives) before the last chunk and the final result.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from dataclasses import dataclass

import numpy as np

from ..assets import default_model_path
from ..errors import CardError, InvalidInputError, ModelFileError, NonFiniteInputError, UnsupportedError
from .audio import check_sample_rate, prepare_samples, read_audio_file
from .endpoint import EndpointConfig, VadEndpointing
from .events import FinalText, SpeechEnd, SpeechStart, StreamCounters, StreamResult
from .features import FrameQueue, feature_stage_for, receptive_field_tail_ms
from .frontend import FrontendConfig
from .outputs import DECODERS, output_decoder_factory
from .resample import QUALITIES, StreamingResampler
from .ring_buffer import OVERFLOW_POLICIES, RingBuffer
from .session import OnnxStepSession
from .transducer import TransducerGraphs
from .vad import SileroVad

__all__ = ["Recognizer", "Stream", "RecognizerOptions", "transcribe_file", "DECODERS"]

# After input_finished() the rest of a stream's audio is all there: it goes to the frontend up to
# this much per call instead of one chunk per step. Short chunks (T=11: 4 frames a step) otherwise
# paid a frontend call, a ring read and a frame pop every step, a third of the loop's own time
# (benchmarks/vs_sherpa.py, 16 streams); a live stream still moves one chunk at a time, so that
# drop_backlog can reach its backlog.
FINISHED_FEED_S = 1.0


def _positive_int(name: str, value, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidInputError(f"{name} must be an int >= {minimum}; got {value!r}")


@dataclass(frozen=True)
class RecognizerOptions:
    """Tuning of the client loop (none of it changes what the model computes).

    Fields:
        threads: ONNX Runtime intra-op threads when the model file is opened here.
        buffer_seconds: ring buffer capacity (audio not yet processed), seconds at the model rate: with
            overflow "grow", where it starts (it doubles when a read does not fit); with "raise" or
            "drop_oldest", the most a stream holds undecoded. A stream that keeps up cycles through
            all of it, so it is what each live stream costs in memory: 2 s is 125 KB (measured:
            195 KB of RSS per stream after 32 s, against 1.9 MB at the 30 s this default was).
        overflow: what a full ring buffer does: "grow" (keep everything; a whole file may be
            accepted at once, as with sherpa-onnx), "raise" (BufferOverflowError) or
            "drop_oldest" (a live stream that must not block; dropped samples are counted).
        separator: joins token strings into text.
        beam_size: prefixes kept by the "beam" decoder.
        resampler_quality: soxr quality preset for inputs at another rate.
        keyword_threshold, keyword_smoothing_frames, keyword_refractory_frames: KeywordSpotter
            settings for classifier models (in output frames).
        keyword_background_id: the classifier's non-keyword class; None: the card's blank_id,
            else the class named "_background_" if there is one.
        max_symbols_per_frame: transducer greedy search: most tokens on one encoder frame; None:
            the model's convention (3 with an LSTM predictor; 1 with a stateless decoder, as
            sherpa-onnx decodes it).
    """

    threads: int = 1
    buffer_seconds: float = 2.0
    overflow: str = "grow"
    separator: str = " "
    beam_size: int = 8
    resampler_quality: str = "HQ"
    keyword_threshold: float = 0.5
    keyword_smoothing_frames: int = 5
    keyword_refractory_frames: int = 30
    keyword_background_id: int | None = None
    max_symbols_per_frame: int | None = None

    def __post_init__(self):
        _positive_int("threads", self.threads)
        if isinstance(self.buffer_seconds, bool) or not isinstance(self.buffer_seconds, (int, float)) \
                or not 0 < self.buffer_seconds < 3600:
            raise InvalidInputError(f"buffer_seconds must be a number in (0, 3600); got {self.buffer_seconds!r}")
        if self.overflow not in OVERFLOW_POLICIES:
            raise InvalidInputError(f"overflow must be one of {OVERFLOW_POLICIES}; got {self.overflow!r}")
        _positive_int("beam_size", self.beam_size)
        if self.max_symbols_per_frame is not None:
            _positive_int("max_symbols_per_frame", self.max_symbols_per_frame)
        if self.resampler_quality not in QUALITIES:
            raise InvalidInputError(f"resampler_quality must be one of {QUALITIES}; got {self.resampler_quality!r}")


def _is_transducer(model) -> bool:
    return all(hasattr(model, a) for a in ("encoder", "predictor", "joiner", "new_decoder"))


def _open(path: str | os.PathLike, *, threads: int, allow_uncertified: bool):
    """An OnnxStepSession for a file, or the graphs of an export directory: a transducer's three, or the
    one ``model.onnx`` of a CTC model's sherpa-onnx folder."""
    if os.path.isdir(path):
        single = os.path.join(path, "model.onnx")
        if os.path.isfile(single) and not os.path.isfile(os.path.join(path, "encoder.onnx")):
            return OnnxStepSession(single, threads=threads, allow_uncertified=allow_uncertified)
        return TransducerGraphs.from_directory(path, threads=threads, allow_uncertified=allow_uncertified)
    return OnnxStepSession(path, threads=threads, allow_uncertified=allow_uncertified)


class Recognizer:
    """A stateport model ready to serve streams: sessions, card, decoder factory; no per-stream state.

    Args:
        model: an :class:`OnnxStepSession`, a transducer's
            :class:`~stateport.runtime.transducer.TransducerGraphs`, or a path (see :meth:`from_file`).
        decoder: "greedy" or "beam" (CTC prefix beam search for each utterance's final text).
        options: :class:`RecognizerOptions`.
        tail_padding_ms: override of the card's end-of-input flush (0 disables it); None: the
            card's ``streaming.tail_padding_ms``, else the receptive field the card implies.
    """

    def __init__(self, model, *, decoder: str = "greedy", options: RecognizerOptions | None = None,
                 tail_padding_ms: float | None = None):
        options = RecognizerOptions() if options is None else options
        if not isinstance(options, RecognizerOptions):
            raise InvalidInputError(f"options must be a RecognizerOptions; got {type(options).__name__}")
        if isinstance(model, (str, os.PathLike)):
            model = _open(model, threads=options.threads, allow_uncertified=False)
        self.options = options
        self.decoder_name = decoder
        self.graphs = model if _is_transducer(model) else None
        session = model.encoder if self.graphs is not None else model
        if not hasattr(session, "card") or not (hasattr(session, "run_prepared") or hasattr(session, "run")):
            raise InvalidInputError(f"model must be a path to a stateport .onnx file (or a transducer export "
                                    f"directory), an OnnxStepSession or TransducerGraphs; got {type(model).__name__}")
        self.session = session
        self.card = card = session.card
        self._plan(card)
        self._make_decoder = output_decoder_factory(card, decoder=decoder, options=options, graphs=self.graphs,
                                                    main_port=self._main_port)
        # Output decoders that step a batch of streams together (``step_many``), else None.
        self._step_many = getattr(self._make_decoder, "step_many", None)
        self._set_tail(tail_padding_ms)
        self._silero = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_file(cls, path: str | os.PathLike, *, threads: int | None = None, allow_uncertified: bool = False,
                  decoder: str = "greedy", options: RecognizerOptions | None = None,
                  tail_padding_ms: float | None = None) -> "Recognizer":
        """Open a stateport ``.onnx`` file, or the directory of ``stateport export --arch rnnt -o DIR`` (or of
        ``--backend sherpa-onnx``).

        The card is checked against the graph, and a model without a PASSED parity certificate is
        refused unless ``allow_uncertified`` (then ``rec.trust`` says so). ``threads`` overrides
        ``options.threads``.
        """
        options = RecognizerOptions() if options is None else options
        if threads is not None:
            options = dataclasses.replace(options, threads=threads)
        model = _open(os.fspath(path), threads=options.threads, allow_uncertified=allow_uncertified)
        return cls(model, decoder=decoder, options=options, tail_padding_ms=tail_padding_ms)

    @classmethod
    def builtin(cls, **kwargs) -> "Recognizer":
        """The built-in digit recogniser shipped in the package (``stateport/assets/digits/model.onnx``)."""
        return cls.from_file(default_model_path(), **kwargs)

    def _plan(self, card) -> None:
        """Everything about the step that follows from the card, worked out once."""
        signals = [p for p in card.inputs if getattr(p, "side_role", None) is None]
        if len(signals) != 1:
            raise UnsupportedError(f"a stream drives models with one signal input (plus side inputs the card "
                                   f"marks); {card.name!r} has inputs {[p.name for p in card.inputs]}")
        port = signals[0]
        # Side inputs the client computes every step (spec.SIDE_ROLES): (name, role, dtype).
        self._side_inputs = [(p.name, p.side_role, np.dtype(p.dtype)) for p in card.inputs if p is not port]
        if np.dtype(port.dtype).kind != "f":
            raise UnsupportedError(f"input {port.name} takes {port.dtype}; a stream feeds float features")
        st = card.streaming
        frame_wise = st.frames_per_step == 0
        if frame_wise != (port.time_axis is None):
            raise CardError(f"input {port.name}: frames_per_step {st.frames_per_step} contradicts time_axis "
                            f"{port.time_axis}")
        # An audio-in graph (its frontend inside) takes samples [batch, S]: rows of one sample.
        self._audio_in = card.audio_input
        feature_axes = [a for a in range(1, len(port.shape)) if a != port.time_axis]
        if len(feature_axes) != (0 if self._audio_in else 1):
            raise UnsupportedError(f"input {port.name} {port.shape}: expected [batch, T, F] or [batch, F]"
                                   + (" (an audio-in card: [batch, S])" if self._audio_in else ""))
        declared = 1 if self._audio_in else port.shape[feature_axes[0]]
        if isinstance(declared, int):
            num_features = declared
        elif card.frontend:
            num_features = FrontendConfig.from_dict(card.frontend).num_features
        else:
            raise CardError(f"input {port.name} {port.shape}: the feature dimension must be an int without a frontend")
        self._stage = feature_stage_for(card, num_features)
        self.num_features = num_features
        self.sample_rate_hz = st.sample_rate_hz
        self._hop = st.frame_hop_samples
        self._subsampling = st.subsampling
        self._input_name = port.name
        self._frame_wise = frame_wise
        self._time_axis = port.time_axis
        self._frames_per_step = st.frames_per_step or 1
        self._frames_advanced = st.frames_advanced_per_step or self._frames_per_step
        main = card.output.port or card.outputs[0].name
        self._main_port = next(p for p in card.outputs if p.name == main)
        self._main_index = [p.name for p in card.outputs].index(main)
        self._num_outputs = len(card.outputs)
        self._output_names = [p.name for p in card.outputs]
        self._output_batch_axes = [p.shape.index("batch") if "batch" in p.shape else 0 for p in card.outputs]
        # The main output of one stream -> [T_out, V]: batch, then time, to the front.
        mp, batch_axis = self._main_port, self._output_batch_axes[self._main_index]
        front = [batch_axis] + ([mp.time_axis] if mp.time_axis is not None else [])
        self._main_perm = tuple(front + [a for a in range(len(mp.shape)) if a not in front])
        self._state_names = [s.name for s in card.states]
        self._state_axes = [s.batch_axis for s in card.states]
        self._init_state = {s.name: np.full(s.concrete_shape(1), s.init, dtype=np.dtype(s.dtype))
                            for s in card.states}
        for value in self._init_state.values():
            value.flags.writeable = False  # shared by every fresh stream; never written in place
        self._eos_states = [s.name for s in card.states if s.reset_on_end_of_speech]
        # States the graph keeps one value of for the whole batch: streams batch only while equal.
        self._uniform_states = [s.name for s in card.states if getattr(s, "batch_uniform", False)]
        self._lookahead = st.lookahead_frames if not frame_wise else 0
        symbolic = isinstance(port.shape[0], str) and all(isinstance(s.shape[s.batch_axis], str) for s in card.states)
        self._batchable = symbolic
        if hasattr(self.session, "run_prepared"):
            self._call = self.session.run_prepared
        else:  # a duck-typed session (tests, wrappers): run(x, state) -> (outputs, state)
            names, inputs = self._output_names, {p.name for p in card.inputs}

            def call(feeds, session=self.session):
                outputs, state = session.run({k: v for k, v in feeds.items() if k in inputs},
                                             {k: v for k, v in feeds.items() if k not in inputs} or None)
                return [outputs[n] for n in names] + [state[n] for n in self._state_names]
            self._call = call

    def _set_tail(self, override) -> None:
        st = self.card.streaming
        if override is not None:
            if isinstance(override, bool) or not isinstance(override, (int, float)) or not \
                    0 <= override <= 60_000 or not math.isfinite(override):
                raise InvalidInputError(f"tail_padding_ms must be a number in [0, 60000]; got {override!r}")
            ms, basis = float(override), "set by the caller"
        elif st.tail_padding_ms is not None:
            ms, basis = st.tail_padding_ms, st.tail_padding_basis or "the card's streaming.tail_padding_ms"
        else:
            ms = receptive_field_tail_ms(self.card)
            basis = "receptive field (the card declares no tail_padding_ms)"
        self.tail_padding_ms, self.tail_padding_basis = ms, basis
        self._tail_samples = int(round(ms * self.sample_rate_hz / 1000)) if self._stage.takes_audio else 0
        self._finished_feed = int(FINISHED_FEED_S * self.sample_rate_hz)

    # ------------------------------------------------------------------ model facts
    @property
    def trust(self):
        """How the model was opened (:class:`~stateport.runtime.trust.Trust`): certified, or allowed uncertified."""
        return getattr(self.session, "trust", None)

    @property
    def takes_audio(self) -> bool:
        return self._stage.takes_audio

    # ------------------------------------------------------------------ streams
    def create_stream(self, *, vad=None, endpoint: EndpointConfig | None = None) -> "Stream":
        """A new stream (one conversation) on this model.

        ``vad``: None (one utterance per stream), "silero" (Silero VAD; its session is shared by
        this recognizer's streams) or a VAD object owned by this stream (``probability(window)``,
        ``window_samples``, ``sample_rate_hz``, ``reset()``). ``endpoint``: when an utterance ends.
        """
        endpoint = EndpointConfig() if endpoint is None else endpoint
        if not isinstance(endpoint, EndpointConfig):
            raise InvalidInputError(f"endpoint must be an EndpointConfig; got {type(endpoint).__name__}")
        gate = None
        if vad is not None:
            if isinstance(vad, str) and vad != "silero":
                raise InvalidInputError(f"vad must be None, 'silero' or a VAD object; got {vad!r}")
            if not self._stage.takes_audio:
                raise UnsupportedError("a VAD needs audio input; this model takes features (no frontend in its card)")
            if vad == "silero":
                if self._silero is None:
                    self._silero = SileroVad(sample_rate_hz=self.sample_rate_hz, threads=self.options.threads)
                vad = self._silero.new_stream()
            gate = VadEndpointing(vad, endpoint, sample_rate_hz=self.sample_rate_hz)
        return Stream(self, gate, endpoint)

    def is_ready(self, stream: "Stream") -> bool:
        """Whether ``decode_stream`` has work: a full chunk, or (after input_finished) the rest."""
        if stream.__class__ is not Stream or stream._rec is not self:
            self._own(stream)
        return stream._is_ready()

    def decode_stream(self, stream: "Stream") -> list:
        """One step of one stream (if ready); returns the events it caused."""
        self._own(stream)
        events: list = []
        job = stream._begin_step(events)
        if job is not None:
            self._run([(0, stream, job)], [events])
        return events

    def decode_streams(self, streams) -> list:
        """One step of every ready stream, batched: returns one list of events per stream.

        The ready streams' chunks and states are stacked on the card's batch axes into one
        ``session.run`` per chunk length (streams at different positions, finishing with shorter
        last chunks, just reset: each group runs once) and split back. A stream's result does not
        depend on which others it was batched with.
        """
        if isinstance(streams, Stream) or not isinstance(streams, (list, tuple)):
            raise InvalidInputError("decode_streams takes a list of streams (decode_stream takes one)")
        if len({id(s) for s in streams}) != len(streams):
            raise InvalidInputError("decode_streams: a stream appears twice in the list; each steps once per call")
        events = [[] for _ in streams]
        groups: dict = {}
        for i, stream in enumerate(streams):
            self._own(stream)
            job = stream._begin_step(events[i])
            if job is not None:
                if not self._batchable:
                    key = i
                else:  # one run per chunk length (and per value of any batch-uniform state)
                    key = (job[0].shape[0],) + tuple(stream._state[n].tobytes() for n in self._uniform_states)
                groups.setdefault(key, []).append((i, stream, job))
        for members in groups.values():
            self._run(members, events)
        return events

    def get_result(self, stream: "Stream") -> StreamResult:
        """Finished utterances plus the current partial one: text, token ids and strings, times, scores."""
        self._own(stream)
        return stream.result()

    def _own(self, stream) -> None:
        if not isinstance(stream, Stream):
            raise InvalidInputError(f"expected a Stream from create_stream(); got {type(stream).__name__}")
        if stream._rec is not self:
            raise InvalidInputError("this stream belongs to another recognizer (create it with this one's "
                                    "create_stream())")

    # ------------------------------------------------------------------ the step
    def _run(self, members: list, events: list) -> None:
        """One session.run for streams whose chunks have the same length; each stream decodes its part."""
        if len(members) == 1:
            i, stream, (rows, real, advance) = members[0]
            feeds = dict(stream._state)
            feeds[self._input_name] = self._layout(rows[None] if not self._frame_wise else rows)
            if self._side_inputs:
                self._feed_side_inputs(feeds, [stream], rows.shape[0])
            values = self._call(feeds)
            n = self._num_outputs
            y, first = stream._end_step(values[:n], dict(zip(self._state_names, values[n:])), real, advance)
            events[i] += stream._decoder.step(y, values[:n], first, stream._locate)
            return
        rows = np.stack([job[0] for _, _, job in members])
        feeds = {self._input_name: self._layout(rows if not self._frame_wise else rows[:, 0])}
        for name, axis in zip(self._state_names, self._state_axes):
            feeds[name] = np.concatenate([stream._state[name] for _, stream, _ in members], axis=axis)
        if self._side_inputs:
            self._feed_side_inputs(feeds, [stream for _, stream, _ in members], rows.shape[1])
        values = self._call(feeds)
        n = self._num_outputs
        out_axes, state_axes = self._output_batch_axes, self._state_axes
        stepped = []
        for k, (i, stream, (_, real, advance)) in enumerate(members):
            outs = [_take(v, axis, k) for v, axis in zip(values[:n], out_axes)]
            state = {name: _take(v, axis, k) for name, v, axis in zip(self._state_names, values[n:], state_axes)}
            stepped.append((i, stream, outs, *stream._end_step(outs, state, real, advance)))
        if self._step_many is not None:  # the output decoders step together (a transducer's search)
            found = self._step_many([s._decoder for _, s, _, _, _ in stepped], [y for *_, y, _ in stepped],
                                    [first for *_, first in stepped])
            for (i, *_), new in zip(stepped, found):
                events[i] += new
            return
        for i, stream, outs, y, first in stepped:
            events[i] += stream._decoder.step(y, outs, first, stream._locate)

    def _feed_side_inputs(self, feeds: dict, streams: list, chunk_frames: int) -> None:
        """The side inputs the card asks for, one value per stream: ``chunk_length`` (frames in this
        chunk, look-ahead included) and ``stream_offset`` (frames the stream advanced before it)."""
        for name, role, dtype in self._side_inputs:
            if role == "chunk_length":
                feeds[name] = np.full(len(streams), chunk_frames, dtype=dtype)
            else:
                feeds[name] = np.array([s._step_frame - s._offset_origin for s in streams], dtype=dtype)

    def _layout(self, rows: np.ndarray) -> np.ndarray:
        """Rows ``[B, T, F]`` (``[B, F]`` frame-wise; audio-in ``[B, S, 1]``) -> the input port's layout."""
        if self._audio_in:
            rows = rows[..., 0]
        elif self._time_axis not in (None, 1):
            rows = np.moveaxis(rows, 1, self._time_axis)
        return np.ascontiguousarray(rows, dtype=np.float32)

    def _main_rows(self, outputs: list, real_frames: int) -> np.ndarray:
        """The main output of one stream's step as ``[T_out, V]``, for its real (unpadded) frames.

        An audio-in graph returns the output steps its call completed (0..n): every one counts.
        """
        y = outputs[self._main_index].transpose(self._main_perm)[0]
        if self._main_port.time_axis is None:
            return y.reshape(1, -1)
        keep = y.shape[0] if self._audio_in else -(-real_frames // self._subsampling)
        return y.reshape(y.shape[0], math.prod(y.shape[1:]))[:keep]  # (an audio-in call may return 0 rows)

    # ------------------------------------------------------------------ one-liners
    def transcribe(self, samples, sample_rate_hz: int, *, read_samples: int | None = None, vad=None,
                   endpoint: EndpointConfig | None = None) -> StreamResult:
        """Stream one recording from a fresh stream and return its result (flushed at the end).

        ``read_samples`` None: the whole array in one read (any read size gives the same result).
        The "stream a file, return the result" of the runtime: evaluations call this.
        """
        stream = self.create_stream(vad=vad, endpoint=endpoint)
        if read_samples is None:
            stream.accept_waveform(sample_rate_hz, samples)
        else:
            _positive_int("read_samples", read_samples)
            arr = np.asarray(samples)
            for a in range(0, arr.shape[0], read_samples):
                stream.accept_waveform(sample_rate_hz, arr[a:a + read_samples])
                while stream._is_ready():
                    self.decode_stream(stream)
        stream.input_finished()
        while stream._is_ready():
            self.decode_stream(stream)
        return stream.result()

    def transcribe_many(self, recordings, *, batch_size: int = 32) -> list:
        """Results of many ``(samples, sample_rate_hz)`` recordings, decoded ``batch_size`` streams at a time
        with :meth:`decode_streams` (each equals :meth:`transcribe` of that recording alone)."""
        _positive_int("batch_size", batch_size)
        recordings = list(recordings)
        results = [None] * len(recordings)
        for start in range(0, len(recordings), batch_size):
            streams = []
            for samples, rate in recordings[start:start + batch_size]:
                stream = self.create_stream()
                stream.accept_waveform(rate, samples)
                stream.input_finished()
                streams.append(stream)
            live = streams
            while live:
                self.decode_streams(live)
                live = [s for s in live if s._is_ready()]
            for k, stream in enumerate(streams):
                results[start + k] = stream.result()
        return results


def _take(value: np.ndarray, axis: int, index: int) -> np.ndarray:
    """Stream ``index`` of a batched array, batch axis kept (a view: the batched array is never written)."""
    where = [slice(None)] * value.ndim
    where[axis] = slice(index, index + 1)
    return value[tuple(where)]


class Stream:
    """One conversation on a :class:`Recognizer`: its audio, features, model state, decoder and results.

    Create with ``recognizer.create_stream()``; step with the recognizer's ``decode_stream(s)``.
    Sample indices in events are absolute at the model rate (``recognizer.sample_rate_hz``),
    counted from the first sample after creation or ``reset()``; dropped audio keeps its place.
    """

    def __init__(self, recognizer: Recognizer, gate: VadEndpointing | None, endpoint: EndpointConfig):
        self._rec = recognizer
        self._gate = gate
        self._endpoint = endpoint
        self._features = recognizer._stage.open()
        self._frames = FrameQueue(recognizer.num_features)
        self._ring: RingBuffer | None = None
        self.reset()

    @property
    def recognizer(self) -> Recognizer:
        return self._rec

    @property
    def state(self) -> dict:
        """The model state this stream carries (state input port name -> array, batch 1). Read only:
        the arrays may be shared with the recognizer's initial state."""
        return dict(self._state)

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Start a new conversation: buffers, resampler, features, model state, decoder, VAD, counters."""
        rec = self._rec
        if self._ring is not None:
            self._ring.reset()
        self._resampler: StreamingResampler | None = None
        self._input_rate_hz: int | None = None
        if self._features is not None:
            self._features.reset()
        self._frames.clear()
        self._state = rec._init_state
        self._decoder = rec._make_decoder(self._endpoint)
        if self._gate is not None:
            self._gate.reset()
        self._fed_abs = 0          # absolute ring index of the next sample for frontend and VAD
        self._ready_at = 0         # ring index the next chunk waits for (0: ask the pump)
        self._offset_origin = 0    # frame the model's stream_offset counts from (the last state reset)
        self._fed = 0              # samples given to frontend and VAD ("fed space": drops removed)
        self._gaps: list[tuple[int, int]] = []  # (fed index, total dropped before it)
        self._step_frame = 0       # absolute frame index of the first queued frame
        self._out_steps = 0        # output steps the model returned (audio-in: they lag the input)
        self._utt_start_frame = 0
        self._finals: list[FinalText] = []
        self._finished = False
        self._tail_fed = False
        self._completed = False
        self._closed = False
        self.counters = StreamCounters()

    def _reset_end_of_speech(self) -> None:
        """Clear only the states the card marks (e.g. not a feature normaliser's): an endpoint."""
        if self._rec._eos_states:
            state = dict(self._state)
            for name in self._rec._eos_states:
                state[name] = self._rec._init_state[name]
            self._state = state
            self._offset_origin = self._step_frame  # the model starts over: so does its frame count

    # ------------------------------------------------------------------ input
    def accept_waveform(self, sample_rate: int, samples) -> None:
        """Buffer audio: ``samples`` float ``[N]`` or ``[N, C]`` in [-1, 1] at ``sample_rate`` Hz (sherpa-onnx's order).

        Nothing is decoded here (``recognizer.decode_stream(s)`` does that), so a capture
        callback can call it. A bad read raises a typed error and leaves the stream as it was.
        """
        rate = self._input_rate_hz
        if self._finished or type(sample_rate) is not int or sample_rate != rate:
            self._check_read(sample_rate, samples)  # the first read of a stream, or something unusual
            rate = check_sample_rate(sample_rate)
        mono = prepare_samples(samples, stream_offset=self.counters.samples_in)
        if rate != self._input_rate_hz:
            if self._input_rate_hz is not None:
                raise InvalidInputError(f"sample_rate_hz changed from {self._input_rate_hz} to {rate} within a "
                                        "stream; call reset() first")
            if rate != self._rec.sample_rate_hz:
                self._resampler = StreamingResampler(rate, self._rec.sample_rate_hz,
                                                     quality=self._rec.options.resampler_quality)
            self._input_rate_hz = rate
        self.counters.samples_in += mono.shape[0]
        self._push(self._resampler.process(mono) if self._resampler is not None else mono)

    def _check_read(self, sample_rate, samples) -> None:
        """What may be wrong with a read besides its samples (the first read of a stream comes here too)."""
        if isinstance(sample_rate, np.ndarray) or (isinstance(samples, (int, float)) and not isinstance(samples, bool)):
            raise InvalidInputError("accept_waveform(sample_rate, samples): the sample rate comes first "
                                    "(sherpa-onnx's order)")
        if not self._rec._stage.takes_audio:
            raise UnsupportedError(f"{self._rec.card.name!r} has no frontend in its card: it takes features "
                                   "(use accept_features)")
        if self._finished:
            raise InvalidInputError("accept_waveform after input_finished(); call reset() to start a new stream")

    def _push(self, samples: np.ndarray) -> None:
        if self._ring is None:
            o = self._rec.options
            self._ring = RingBuffer(max(1, int(o.buffer_seconds * self._rec.sample_rate_hz)), overflow=o.overflow)
        self._ring.push(samples)
        self.counters.samples_model += samples.shape[0]

    def accept_features(self, features) -> None:
        """Buffer feature frames ``[T, F]`` float (models whose card declares no frontend)."""
        if self._rec._stage.takes_audio:
            raise UnsupportedError(f"{self._rec.card.name!r} computes its features from audio (use accept_waveform)")
        if self._finished:
            raise InvalidInputError("accept_features after input_finished(); call reset() to start a new stream")
        features = np.asarray(features)
        nf = self._rec.num_features
        if features.ndim != 2 or features.shape[1] != nf or features.dtype.kind != "f":
            raise InvalidInputError(f"features must be float [T, {nf}]; got {features.dtype} {features.shape}")
        if not np.isfinite(features).all():
            first = int(np.flatnonzero(~np.isfinite(features).all(axis=1))[0])
            raise NonFiniteInputError(f"features contain NaN or Inf (first at frame {self.counters.frames_in + first} "
                                      f"of the stream, frame {first} of this read)")
        self._frames.append(features)
        self.counters.frames_in += features.shape[0]

    def input_finished(self) -> None:
        """Declare the end of input: the resampler's tail is flushed, and the decoding steps that follow
        feed the card's tail padding of silence, run the last chunk and finalize the utterance."""
        if self._finished:
            return
        if self._resampler is not None:
            self._push(self._resampler.flush())
        self._finished = True

    @property
    def is_finished(self) -> bool:
        """Whether input_finished() was called."""
        return self._finished

    @property
    def is_closed(self) -> bool:
        """Whether the last step ran and the result is final."""
        return self._closed

    # ------------------------------------------------------------------ pumping audio
    def _pump(self, frames_wanted: int) -> None:
        """Feed ring audio to the features and the VAD until ``frames_wanted`` frames are queued.

        Audio moves only once the whole chunk's samples are there (or the input has ended): one
        frontend call per step rather than per read, and the backlog waits in the ring buffer,
        where ``drop_backlog`` can reach it. After the input has ended, up to
        :data:`FINISHED_FEED_S` moves per call.
        """
        fe = self._features
        if fe is None:
            return
        frames, ring, stage = self._frames, self._ring, self._rec._stage
        self._ready_at = 0
        while True:
            fe.pop_into(frames)
            if len(frames) >= frames_wanted:
                return
            if ring is not None and ring.start_index > self._fed_abs:  # audio dropped before we fed it
                dropped = ring.start_index - self._fed_abs
                self.counters.dropped_samples += dropped
                self._gaps.append((self._fed, (self._gaps[-1][1] if self._gaps else 0) + dropped))
                self._fed_abs = ring.start_index
            available = 0 if ring is None else ring.end_index - self._fed_abs
            if available == 0:
                if self._finished and not fe.finished:
                    self._feed_tail()
                    fe.finish()
                    if self._gate is not None:
                        self._gate.finish()
                    continue
                return
            # Samples up to the end of the window of the last wanted frame (at least one hop, so
            # that frames the formula does not predict (snip_edges=False) still make progress).
            last_frame = fe.next_frame_index + (frames_wanted - len(frames)) - 1
            need = max(stage.frame_end_sample(last_frame) - self._fed, stage.hop_samples)
            if available < need and not self._finished and available < ring.capacity_samples // 2:
                # Wait for the chunk (unless a small ring buffer would fill up first); until the ring
                # reaches this index, is_ready() need not come here (it is asked after every read).
                self._ready_at = self._fed_abs + min(need, ring.capacity_samples // 2)
                return
            count = min(available, max(need, self._rec._finished_feed) if self._finished else need)
            chunk = ring.read(self._fed_abs, count)
            ring.discard_before(self._fed_abs + count)
            fe.accept(chunk)
            if self._gate is not None:
                self._gate.feed(chunk)
            self._fed += count
            self._fed_abs += count

    def _feed_tail(self) -> None:
        """The end-of-input flush: the card's tail padding of digital silence, through the frontend only
        (the VAD and the sample timeline end at the last real sample). A stream that heard nothing
        gets none: there is nothing left to emit."""
        n = self._rec._tail_samples
        if n and self._fed and not self._tail_fed:
            self._features.accept(np.zeros(n, np.float32))
            self.counters.tail_samples += n
        self._tail_fed = True

    # ------------------------------------------------------------------ stepping
    def _is_ready(self) -> bool:
        if self._closed:
            return False
        ring = self._ring
        if ring is not None and ring.end_index < self._ready_at and not self._finished:
            return False  # the next chunk's audio has not all arrived (see _pump)
        fps = self._rec._frames_per_step
        self._pump(fps)
        return len(self._frames) >= fps or self._finished

    def _begin_step(self, events: list):
        """Apply VAD decisions the model has reached and take the next chunk: ``(rows, real, advance)``
        or None (nothing to run; at the very end, the stream is closed and its final emitted)."""
        if self._closed:
            return None
        fps = self._rec._frames_per_step
        if len(self._frames) < fps:  # usually is_ready() has just pumped the chunk in
            self._pump(fps)
        if self._gate is not None:
            self._release_vad(events, final=False)
        chunk = self._take_chunk()
        if chunk is None and self._finished and len(self._frames) == 0:
            self._close(events)
        return chunk

    def _take_chunk(self):
        """``(rows [T, F], output_frames, frames_to_advance)`` for the next step, or None.

        ``output_frames``: the frames whose outputs count (a look-ahead model's chunk without its
        look-ahead; never padding).

        A full chunk is ``frames_per_step`` frames. At the end of input the rest (fewer frames)
        runs as a last shorter chunk when the card allows that length (dynamic time axis, a
        multiple of ``frame_multiple``, at least ``min_frames``): the model then sees exactly the
        offline frames. Otherwise (a static export, or a length that is not a multiple) the chunk
        is padded with frames of digital silence up to a length it takes; the outputs of padded
        frames are dropped, so no token can come from padding alone.
        """
        rec, frames = self._rec, self._frames
        queued = len(frames)
        fps = rec._frames_per_step
        if queued >= fps:
            return frames.head(fps), rec._frames_advanced, rec._frames_advanced
        if not self._finished:
            return None
        if self._features is not None and not self._features.finished:
            return None
        if queued == 0:
            # An audio-in graph may still hold frames back: the zeros that complete its last step.
            extra = rec._stage.completion_samples(self._state) if self._fed and not self._completed else 0
            self._completed = True
            if not extra:
                return None
            frames.append(np.zeros((extra, 1), np.float32))
            self.counters.tail_samples += extra
            queued = extra
            if queued >= fps:
                return frames.head(fps), fps, fps
        look = rec._lookahead
        if queued <= look:  # only look-ahead frames are left: they have no outputs of their own
            frames.consume(queued)
            self._step_frame += queued
            return None
        st = rec.card.streaming
        if st.check_chunk_frames(queued) is None:
            return frames.head(queued), queued - look, queued
        length = fps if st.static else max(queued, st.min_frames)
        length += (look - length) % st.frame_multiple  # look-ahead plus whole multiples
        pad = np.repeat(rec._stage.silence_row[None], length - queued, axis=0)
        self.counters.padded_frames += length - queued
        return np.concatenate([frames.head(queued), pad]), queued - look, queued

    def _end_step(self, outputs: list, state: dict, real: int, advance: int) -> tuple:
        """Take a step's state and advance; returns ``(y, first_frame)`` for the output decoder."""
        rec = self._rec
        self._state = state
        self.counters.steps += 1
        self.counters.frames += advance
        self._frames.consume(advance)
        y = rec._main_rows(outputs, real)
        # Output step k of a features-in model covers its input frames from k * subsampling on, where
        # the step started; an audio-in graph's lags its input (the frontend holds samples and frames
        # back), so its outputs are counted: output step k covers samples from k * subsampling on.
        origin = self._out_steps * rec._subsampling if rec._audio_in else self._step_frame
        first = (origin - self._utt_start_frame) // rec._subsampling
        self._step_frame += advance
        self._out_steps += y.shape[0]
        return y, first

    def _locate(self, frame: int) -> int:
        """Absolute sample of output frame ``frame`` of the current utterance."""
        return self._to_abs((self._utt_start_frame + frame * self._rec._subsampling) * self._rec._hop)

    # ------------------------------------------------------------------ endpoints
    def _release_vad(self, events: list, *, final: bool) -> None:
        """Apply the VAD decisions the model has reached (all of them when ``final``)."""
        for decision in self._gate.release(self._step_frame * self._rec._hop, final=final):
            sample = min(decision.sample_index, self._fed)
            if decision.kind == "start":
                events.append(SpeechStart(self._to_abs(sample)))
            else:
                events.append(SpeechEnd(self._to_abs(sample)))
                events.append(self._finalize(decision.reason or "end_of_speech"))
                self._reset_end_of_speech()
                self.counters.resets += 1

    def _finalize(self, reason: str) -> FinalText:
        """Close the current utterance at the current step boundary and start the next one."""
        rec = self._rec
        end_sample = self._boundary_sample()
        start_sample = self._utt_start_frame * rec._hop
        done = self._decoder.end_utterance()
        rate = rec.sample_rate_hz
        times = tuple(self._locate(f) / rate for f in done.frames)
        final = FinalText(done.text, done.ids, self._to_abs(start_sample),
                          self._to_abs(max(end_sample, start_sample)), reason, times, done.scores, done.texts)
        self._finals.append(final)
        self.counters.finals += 1
        # The next utterance's outputs start here: an audio-in graph's at its next output step.
        self._utt_start_frame = self._out_steps * rec._subsampling if rec._audio_in else self._step_frame
        return final

    def _boundary_sample(self) -> int:
        """Fed-space sample where the next step starts (an utterance boundary)."""
        if self._finished and len(self._frames) == 0 and self._rec._stage.takes_audio:
            # At the end of input the last utterance ends at the last real sample, not at a frame edge.
            return self._fed
        return self._step_frame * self._rec._hop

    def _close(self, events: list) -> None:
        """End of stream: apply every remaining VAD decision, then finalize what is left."""
        if self._gate is not None:
            self._release_vad(events, final=True)
        first = not self._finals
        final = self._finalize("end_of_input")
        # One FinalText per stream at least; after an endpoint, only a tail that holds tokens.
        if final.tokens or first:
            events.append(final)
        else:
            self._finals.pop()
            self.counters.finals -= 1
        self._closed = True

    # ------------------------------------------------------------------ underrun
    @property
    def backlog_samples(self) -> int:
        """Audio accepted but not yet processed by the model, in model-rate samples."""
        ring = self._ring
        unfed = 0 if ring is None else ring.end_index - max(self._fed_abs, ring.start_index)
        return int(unfed + len(self._frames) * self._rec._hop)

    @property
    def processed_samples(self) -> int:
        """Absolute model-rate sample up to which the model has heard the audio (end of its last frame)."""
        hop = self._rec._hop
        heard = self._step_frame * hop
        if not self._rec._stage.takes_audio:
            return heard
        if self._step_frame:
            heard += self._rec._stage.frame_length_samples - hop
        return self._to_abs(min(heard, self._fed))

    def drop_backlog(self, keep_samples: int) -> int:
        """Drop the oldest unprocessed audio so that at most ``keep_samples`` wait; return how many went.

        ``keep_samples`` bounds the whole backlog (``backlog_samples``), but only audio still in the
        ring buffer can go (frames already computed stay); dropped samples keep their place in the
        absolute sample count.
        """
        if isinstance(keep_samples, bool) or not isinstance(keep_samples, (int, np.integer)) or keep_samples < 0:
            raise InvalidInputError(f"keep_samples must be an int >= 0; got {keep_samples!r}")
        ring = self._ring
        if ring is None:
            return 0
        start = max(self._fed_abs, ring.start_index)
        keep_unfed = max(0, int(keep_samples) - len(self._frames) * self._rec._hop)
        target = max(start, ring.end_index - keep_unfed)
        if target <= start:
            return 0
        ring.discard_before(target)
        return target - start  # counted in counters.dropped_samples by the next pump

    def _move_to(self, recognizer: Recognizer) -> bool:
        """Continue on another recognizer of the same contract (a fallback model); whether state carried."""
        old = self._rec
        card, new = old.card, recognizer.card
        same = (new.frontend == card.frontend and new.streaming.sample_rate_hz == card.streaming.sample_rate_hz
                and new.streaming.frame_hop_samples == card.streaming.frame_hop_samples
                and new.inputs[0].shape == card.inputs[0].shape and new.output.kind == card.output.kind
                and list(new.output.vocabulary) == list(card.output.vocabulary))
        if not same:
            raise UnsupportedError(f"cannot switch from {card.name!r} to {new.name!r}: frontend, rate, input "
                                   "or output vocabulary differ")
        shapes = {s.name: (tuple(s.shape), s.dtype) for s in new.states}
        carried = shapes == {s.name: (tuple(s.shape), s.dtype) for s in card.states}
        self._rec = recognizer
        if not carried:
            self._state = recognizer._init_state
        return carried

    # ------------------------------------------------------------------ results
    def result(self) -> StreamResult:
        """Finished utterances plus the current partial one."""
        rec = self._rec
        partial = self._decoder.partial() if not self._closed else None
        finals = tuple(self._finals)
        sep = rec.options.separator
        texts = [f.text for f in finals if f.text] + ([partial.text] if partial is not None and partial.text else [])
        tokens = tuple(t for f in finals for t in f.tokens) + (partial.ids if partial is not None else ())
        token_texts = tuple(t for f in finals for t in f.token_texts) + (partial.texts if partial is not None else ())
        rate = rec.sample_rate_hz
        times_partial = tuple(self._locate(f) / rate for f in partial.frames) if partial is not None else ()
        complete = all(len(f.timestamps) == len(f.tokens) for f in finals)
        timestamps = tuple(t for f in finals for t in f.timestamps) + times_partial if complete else ()
        complete_scores = all(len(f.scores) == len(f.tokens) for f in finals)
        scores = (tuple(s for f in finals for s in f.scores) + (partial.scores if partial is not None else ())
                  if complete_scores else ())
        return StreamResult(sep.join(texts), tokens, finals, partial.text if partial is not None else "",
                            timestamps, token_texts, scores)

    # ------------------------------------------------------------------ indices
    def _to_abs(self, fed_index: int) -> int:
        """Fed-space sample index -> absolute index at the model rate (dropped audio counted)."""
        dropped = 0
        for gap_at, total in self._gaps:
            if fed_index < gap_at:
                break
            dropped = total
        return int(fed_index + dropped)


@functools.lru_cache(maxsize=4)
def _cached_recognizer(key: tuple) -> Recognizer:
    path, _, _, allow_uncertified = key
    return Recognizer.from_file(path, allow_uncertified=allow_uncertified)


def transcribe_file(path: str | os.PathLike, model: str | os.PathLike | Recognizer | None = None, *,
                    allow_uncertified: bool = False) -> StreamResult:
    """The text of an audio file (WAV, FLAC, OGG, ...; any rate, any channels): ``.text``, ``.tokens``,
    ``.timestamps``.

    ``model``: a stateport ``.onnx`` file, a transducer export directory, a :class:`Recognizer`,
    or None for the built-in digit recogniser. Opened models are cached (by path and
    modification time), so calling this for many files opens the model once.
    """
    samples, rate = read_audio_file(path)
    if isinstance(model, Recognizer):
        rec = model
    else:
        if model is None:
            model = default_model_path()
        model = os.path.realpath(os.fspath(model))
        if not os.path.exists(model):
            raise ModelFileError(f"model file {os.fspath(model)!r} does not exist")
        st = os.stat(model)
        rec = _cached_recognizer((model, st.st_mtime_ns, st.st_size, bool(allow_uncertified)))
    return rec.transcribe(samples, rate)
