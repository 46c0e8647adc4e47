"""Output decoders of a stream: one class per card output kind, behind one small interface.

The recognizer picks the class once from ``card.output.kind`` (:func:`output_decoder_factory`)
and every stream gets its own instance; the step loop only ever calls:

- ``step(y, outputs, first_frame, locate) -> events``: ``y`` is this stream's main output for
  the step's real frames ``[T_out, V]``; ``outputs`` every output of the step (batch 1, in
  the card's order);
  ``first_frame`` the output-frame index of ``y[0]`` within the current utterance;
  ``locate(frame) -> absolute sample`` places an utterance output frame on the stream's timeline;
- ``end_utterance() -> UtteranceTokens``: what the utterance decoded to; the decoder is then
  fresh for the next utterance;
- ``partial()``: the current utterance so far (same type).

Kinds: ``ctc`` (:class:`CtcGreedyOutput`, :class:`CtcBeamOutput`), ``transducer_encoder``
(:class:`TransducerOutput`, the predictor and joiner graphs of the same export), ``classifier``
(:class:`KeywordOutput`), ``vad`` (:class:`VadOutput`), ``raw`` (:class:`RawOutputs`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import CardError, InvalidInputError, UnsupportedError
from ..spec import ModelCard
from .decoders import KeywordSpotter, ctc_collapse, ctc_prefix_beam_search, token_log_probs
from .endpoint import EndpointConfig, EndpointDetector
from .events import KeywordSpotted, PartialText, RawOutput, SpeechEnd, SpeechStart

__all__ = ["UtteranceTokens", "CtcGreedyOutput", "CtcBeamOutput", "TransducerOutput", "KeywordOutput",
           "VadOutput", "RawOutputs", "output_decoder_factory", "DECODERS"]

DECODERS = ("greedy", "beam")


@dataclass(frozen=True)
class UtteranceTokens:
    """An utterance's tokens: ids, strings, output frames (within the utterance), log-prob scores.

    ``frames`` and ``scores`` are empty when the decoder cannot say (a beam search's labeling has
    no single alignment); otherwise they have one entry per token.
    """

    ids: tuple = ()
    texts: tuple = ()
    frames: tuple = ()
    scores: tuple = ()
    text: str = ""


EMPTY = UtteranceTokens()


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


class _TokenLog:
    """The tokens of the current utterance, appended as they are emitted."""

    __slots__ = ("ids", "texts", "frames", "scores", "text", "separator")

    def __init__(self, separator: str):
        self.separator = separator
        self.clear()

    def clear(self) -> None:
        self.ids, self.texts, self.frames, self.scores, self.text = [], [], [], [], ""

    def add(self, ids, texts, frames, scores) -> None:
        self.ids += ids
        self.texts += texts
        self.frames += frames
        self.scores += scores
        # Appended, not rebuilt from every token: O(new tokens) per step.
        self.text = self.separator.join([self.text] * bool(self.text) + texts)

    def snapshot(self) -> UtteranceTokens:
        return UtteranceTokens(tuple(self.ids), tuple(self.texts), tuple(self.frames), tuple(self.scores), self.text)


class _TokenOutput:
    """A decoder whose utterance is the tokens it logged; ``_restart()`` clears its own carried state."""

    _log: _TokenLog

    def partial(self) -> UtteranceTokens:
        return self._log.snapshot()

    def end_utterance(self) -> UtteranceTokens:
        done = self._log.snapshot()
        self._log.clear()
        self._restart()
        return done

    def _restart(self) -> None:
        raise NotImplementedError


class CtcGreedyOutput(_TokenOutput):
    """Greedy CTC (:func:`~stateport.runtime.decoders.ctc_collapse`) with per-token log-probabilities."""

    def __init__(self, blank_id: int, vocabulary: tuple, separator: str):
        self._blank, self._vocab = blank_id, vocabulary
        self._log = _TokenLog(separator)
        self._previous = blank_id

    def step(self, y, outputs, first_frame, locate) -> list:
        if y.shape[0] == 0:
            return []
        best = y.argmax(axis=1).tolist()
        if best.count(self._blank) == len(best) and self._previous == self._blank:
            return []  # all blank: most steps of a real model
        frames, ids = ctc_collapse(best, self._blank, self._previous)
        self._previous = best[-1]
        if not ids:
            return []
        vocab = self._vocab
        self._log.add(ids, [vocab[t] for t in ids], [f + first_frame for f in frames], token_log_probs(y, frames, ids))
        return [PartialText(self._log.text, tuple(self._log.ids))]

    def _restart(self) -> None:
        self._previous = self._blank


class CtcBeamOutput(CtcGreedyOutput):
    """CTC prefix beam search for the final text of an utterance; partials stay greedy (cheap)."""

    def __init__(self, blank_id: int, vocabulary: tuple, separator: str, beam_size: int):
        super().__init__(blank_id, vocabulary, separator)
        self._beam_size = beam_size
        self._log_probs: list = []

    def step(self, y, outputs, first_frame, locate) -> list:
        if y.shape[0]:
            self._log_probs.append(_log_softmax(y.astype(np.float64)))
        return super().step(y, outputs, first_frame, locate)

    def end_utterance(self) -> UtteranceTokens:
        super().end_utterance()
        if not self._log_probs:
            return EMPTY
        best = ctc_prefix_beam_search(np.concatenate(self._log_probs), self._blank, self._beam_size,
                                      vocabulary=self._vocab, separator=self._log.separator)[0]
        self._log_probs = []
        ids = tuple(best.token_ids)
        return UtteranceTokens(ids, tuple(self._vocab[t] for t in ids), (), (), best.text or "")


class TransducerOutput(_TokenOutput):
    """Greedy transducer search over this stream's encoder frames; the predictor state is the stream's.

    Streams stepped together go through :meth:`step_many`: one search over all of them, so the
    joiner and predictor calls of a batched step are batched too.
    """

    def __init__(self, graphs, search, separator: str):
        self._search, self._vocab = search, graphs.vocabulary
        self._hypothesis = search.start()
        self._log = _TokenLog(separator)

    def step(self, y, outputs, first_frame, locate) -> list:
        (found,) = self._search.decode([self._hypothesis], [y])
        return self._emit(found, first_frame)

    @staticmethod
    def step_many(decoders: list, ys: list, first_frames: list) -> list:
        """Step several streams' decoders (of one recognizer) at once; one list of events per stream."""
        found = decoders[0]._search.decode([d._hypothesis for d in decoders], ys)
        return [d._emit(f, first) for d, f, first in zip(decoders, found, first_frames)]

    def _emit(self, found: list, first_frame: int) -> list:
        if not found:
            return []
        ids = [t for t, _ in found]
        self._log.add(ids, [self._vocab[t] for t in ids], [first_frame + f for _, f in found], [])
        return [PartialText(self._log.text, tuple(self._log.ids))]

    def _restart(self) -> None:
        self._hypothesis = self._search.start()


class KeywordOutput(_TokenOutput):
    """Keyword detections from a classifier's per-frame class scores (:class:`KeywordSpotter`)."""

    def __init__(self, class_names: tuple, separator: str, threshold: float, smoothing_frames: int,
                 refractory_frames: int, background_id: int | None):
        self._spotter = KeywordSpotter(class_names, threshold, smoothing_frames, refractory_frames, background_id)
        self._log = _TokenLog(separator)

    def step(self, y, outputs, first_frame, locate) -> list:
        # KeywordSpotter wants posteriors; the card's output may be logits.
        if y.size and (y.min() < 0 or y.max() > 1 or not np.allclose(y.sum(axis=1), 1.0, atol=1e-3)):
            y = _softmax(y.astype(np.float64))
        events = []
        for hit in self._spotter.accept(y, start_frame=first_frame):
            if hit.keyword.startswith("_") and hit.keyword.endswith("_"):
                continue  # "_unknown_"-style classes are not keywords
            events.append(KeywordSpotted(hit.keyword, hit.class_id, locate(hit.frame_index), hit.score))
            self._log.add([hit.class_id], [hit.keyword], [hit.frame_index], [float(np.log(max(hit.score, 1e-30)))])
        return events

    def _restart(self) -> None:
        self._spotter.reset()


class VadOutput:
    """A VAD model's own speech probability per output frame, through Silero's endpoint rules.

    Emits SpeechStart / SpeechEnd at absolute samples; the decoded "tokens" are empty.
    """

    def __init__(self, config: EndpointConfig, sample_rate_hz: int, samples_per_frame: int):
        self._detector = EndpointDetector(config, sample_rate_hz=sample_rate_hz, window_samples=samples_per_frame)

    def step(self, y, outputs, first_frame, locate) -> list:
        events = []
        origin = locate(0)  # the detector counts samples from the utterance start
        for p in y[:, 0].tolist():
            for d in self._detector.accept(p):
                events.append((SpeechStart if d.kind == "start" else SpeechEnd)(origin + d.sample_index))
        return events

    def partial(self) -> UtteranceTokens:
        return EMPTY

    def end_utterance(self) -> UtteranceTokens:
        self._detector.reset()
        return EMPTY


class RawOutputs:
    """No decoding: every step's outputs as a RawOutput event (raw models, or to decode elsewhere)."""

    def __init__(self, names: list):
        self._names = names

    def step(self, y, outputs, first_frame, locate) -> list:
        return [RawOutput(outputs=dict(zip(self._names, outputs)), first_frame=first_frame)]

    def partial(self) -> UtteranceTokens:
        return EMPTY

    def end_utterance(self) -> UtteranceTokens:
        return EMPTY


def output_decoder_factory(card: ModelCard, *, decoder: str, options, graphs=None, main_port=None):
    """A callable ``make(endpoint) -> decoder`` for one stream, for the card's output kind.

    ``make.step_many``, where present, steps several streams' decoders at once
    (``step_many(decoders, ys, first_frames) -> events per stream``).

    Everything that can be checked once per model is checked here (vocabulary, blank id, the
    decoder asked for), so creating a stream costs an object, not a validation.
    ``options``: a :class:`~stateport.runtime.streamer.StreamerOptions`-like object (separator,
    beam_size, keyword settings, max_symbols_per_frame); ``graphs``: the transducer's graphs.
    ``endpoint`` (an EndpointConfig) is the stream's: a VAD model's output follows its rules.
    """
    out = card.output
    if decoder not in DECODERS:
        raise InvalidInputError(f"decoder must be one of {DECODERS}; got {decoder!r}")
    if decoder == "beam" and out.kind != "ctc":
        raise UnsupportedError(f"decoder 'beam' needs a CTC model; this card's output kind is {out.kind!r}")
    sep = options.separator
    if out.kind == "ctc":
        if not out.vocabulary or out.blank_id is None:
            raise CardError("a CTC card needs output.vocabulary and output.blank_id")
        vocab, blank = tuple(out.vocabulary), int(out.blank_id)
        if main_port is not None and isinstance(main_port.shape[-1], int) and main_port.shape[-1] != len(vocab):
            raise CardError(f"output {main_port.name} gives {main_port.shape[-1]} scores per frame; the vocabulary "
                            f"has {len(vocab)} tokens")
        if decoder == "beam":
            return lambda endpoint: CtcBeamOutput(blank, vocab, sep, options.beam_size)
        return lambda endpoint: CtcGreedyOutput(blank, vocab, sep)
    if out.kind == "transducer_encoder":
        if graphs is None:
            raise UnsupportedError("a transducer encoder decodes with its predictor and joiner: open the export's "
                                   "directory (Recognizer.from_file(DIR))")
        search = graphs.search(options.max_symbols_per_frame)

        def make(endpoint):
            return TransducerOutput(graphs, search, sep)
        make.step_many = TransducerOutput.step_many  # the recognizer steps a batch's searches together
        return make
    if out.kind == "classifier":
        if not out.vocabulary:
            raise CardError("a classifier card needs output.vocabulary (the class names)")
        names = tuple(out.vocabulary)
        background = options.keyword_background_id
        if background is None:
            background = out.blank_id if out.blank_id is not None else (
                names.index("_background_") if "_background_" in names else None)
        args = (names, sep, options.keyword_threshold, options.keyword_smoothing_frames,
                options.keyword_refractory_frames, background)
        KeywordSpotter(*args[:1], *args[2:])  # validate the settings once, here
        return lambda endpoint: KeywordOutput(*args)
    if out.kind == "vad":
        if main_port is not None and main_port.shape[-1] not in (1,) and len(main_port.shape) > 1:
            raise CardError(f"a VAD card's output {main_port.name} must give one speech probability per frame; "
                            f"its shape is {main_port.shape}")
        st = card.streaming
        frame = st.frame_hop_samples * st.subsampling
        return lambda endpoint: VadOutput(endpoint, st.sample_rate_hz, frame)
    if out.kind == "raw":
        names = [p.name for p in card.outputs]
        return lambda endpoint: RawOutputs(names)
    raise UnsupportedError(f"output kind {out.kind!r} is one graph of a transducer: open the export's directory, "
                           "whose encoder drives the stream")
