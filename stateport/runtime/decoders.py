"""Output decoders of the client loop (pure numpy): CTC, transducer, keyword spotting.

The streaming decoders take the model output chunk by chunk and keep what must cross a
chunk boundary (CTC: the previous frame's best token; transducer: the predictor state;
keyword spotter: the smoothing window and refractory timer), so any chunking of the same
output gives the same result. Frame indices are absolute: frame 0 is the first output frame
after construction or ``reset()`` unless the caller passes ``start_frame``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from stateport.errors import InvalidInputError, NonFiniteInputError

__all__ = [
    "DecodedToken",
    "DecodingResult",
    "CtcGreedyDecoder",
    "ctc_collapse",
    "ctc_greedy",
    "token_log_probs",
    "BeamHypothesis",
    "ctc_prefix_beam_search",
    "TransducerGreedyDecoder",
    "TransducerHypothesis",
    "TransducerSearch",
    "KeywordEvent",
    "KeywordSpotter",
]


@dataclass(frozen=True)
class DecodedToken:
    """One emitted token: its id, text and the absolute output frame it was emitted on.

    ``score``: the token's log-probability on that frame (log-softmax of the scores), when known.
    """

    token_id: int
    frame_index: int
    text: str
    score: float | None = None


@dataclass(frozen=True)
class DecodingResult:
    """Everything decoded since the last reset."""

    token_ids: tuple[int, ...]
    frame_indices: tuple[int, ...]
    text: str


# ---------------------------------------------------------------------- shared checks
def _first_true(flags: list, start: int, stop: int) -> int:
    """Offset from ``start`` of the first True in ``flags[start:stop]``, or -1."""
    try:
        return flags.index(True, start, stop) - start
    except ValueError:
        return -1


def _check_vocabulary(vocabulary, blank_id: int | None) -> tuple[str, ...]:
    if isinstance(vocabulary, (str, bytes)) or not isinstance(vocabulary, Sequence):
        raise InvalidInputError(f"vocabulary must be a sequence of strings; got {type(vocabulary).__name__}")
    vocab = tuple(vocabulary)
    if not vocab or not all(isinstance(t, str) for t in vocab):
        raise InvalidInputError("vocabulary must be a non-empty sequence of strings (index = token id)")
    if blank_id is not None:
        _check_index("blank_id", blank_id, len(vocab))
    return vocab


def _check_index(name: str, value: Any, size: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < size:
        raise InvalidInputError(f"{name} must be an int in [0, {size}); got {value!r}")
    return int(value)


def _check_count(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InvalidInputError(f"{name} must be an int >= {minimum}; got {value!r}")
    return int(value)


def _check_matrix(name: str, array: Any, num_columns: int | None, what: str) -> np.ndarray:
    """A finite float ``[T, num_columns]`` array, or an InvalidInputError saying so."""
    array = np.asarray(array)
    expected = f"[T, {num_columns if num_columns is not None else 'D'}]"
    if array.ndim != 2 or (num_columns is not None and array.shape[1] != num_columns):
        raise InvalidInputError(f"{name} must be {what} {expected}; got shape {array.shape}")
    if array.dtype.kind != "f":
        raise InvalidInputError(f"{name} must be float {what} {expected}; got dtype {array.dtype}")
    if not np.isfinite(array).all():
        raise NonFiniteInputError(f"{name} contains NaN or Inf")
    return array


class _FrameClock:
    """Absolute frame counter; checks that chunks given with ``start_frame`` are contiguous."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.next_frame: int | None = None

    def begin(self, start_frame: int | None, num_frames: int) -> int:
        if start_frame is None:
            start = 0 if self.next_frame is None else self.next_frame
        else:
            start = _check_count("start_frame", start_frame, 0)
            # The carried state (last token, smoothing window) is only valid for the frame
            # right after the previous chunk, so a gap or overlap would silently corrupt it.
            if self.next_frame is not None and start != self.next_frame:
                raise InvalidInputError(
                    f"start_frame must continue the stream at frame {self.next_frame}; got "
                    f"{start} (call reset() to start a new stream)"
                )
        self.next_frame = start + num_frames
        return start


# ---------------------------------------------------------------------- CTC greedy
def ctc_collapse(best_ids, blank_id: int, previous_id: int | None = None) -> tuple[list[int], list[int]]:
    """Greedy CTC's rule on a best path ``[T]``: ``(frames, token_ids)`` of the tokens it emits.

    A token is emitted on the first frame of each run of equal ids that is not blank;
    ``previous_id`` is the best id of the frame before ``best_ids[0]`` (None: the start of a
    stream, as if blank), so a run that straddles two chunks is emitted once. The one
    implementation of the rule: the streaming decoders, training and the drift soak call it.
    (A loop over a Python list: for the runtime's 2-16 frames per step it is several times
    faster than the equivalent numpy expression, measured, and fast enough for a whole utterance.)
    """
    ids = best_ids.tolist() if isinstance(best_ids, np.ndarray) else list(best_ids)
    previous = blank_id if previous_id is None else previous_id
    frames, tokens = [], []
    for frame, token in enumerate(ids):
        if token != previous and token != blank_id:
            frames.append(frame)
            tokens.append(token)
        previous = token
    return frames, tokens


def ctc_greedy(logits: np.ndarray, blank_id: int) -> list[int]:
    """Greedy CTC token ids of one whole utterance's scores ``[T, V]`` (logits or log-probs)."""
    return ctc_collapse(np.argmax(logits, axis=-1), blank_id)[1]


def token_log_probs(scores: np.ndarray, frames: list, token_ids: list) -> list[float]:
    """log-softmax of ``scores [T, V]`` at (frame, token) pairs: only the emitting rows are normalised."""
    if not frames:
        return []
    rows = scores[frames].astype(np.float64)
    top = rows.max(axis=1, keepdims=True)
    log_z = top[:, 0] + np.log(np.exp(rows - top).sum(axis=1))
    return (rows[np.arange(len(frames)), token_ids] - log_z).tolist()


class CtcGreedyDecoder:
    """Streaming CTC best-path decoding: argmax per frame, merge repeats, drop blanks.

    The previous frame's argmax is carried across chunks, so a token whose frames straddle a
    chunk boundary is emitted once, on its first frame, whatever the chunking.

    Args:
        blank_id: the CTC blank's index in ``vocabulary``.
        vocabulary: token strings, index = token id (V entries).
        separator: joins token strings into ``result().text`` (" " for word tokens).
    """

    def __init__(self, blank_id: int, vocabulary: Sequence[str], *, separator: str = " "):
        self._vocabulary = _check_vocabulary(vocabulary, blank_id)
        self._blank_id = int(blank_id)
        self._separator = separator
        self._clock = _FrameClock()
        self.reset()

    @property
    def blank_id(self) -> int:
        return self._blank_id

    @property
    def vocabulary(self) -> tuple[str, ...]:
        return self._vocabulary

    def reset(self) -> None:
        """Forget the stream: no tokens, frame counter back to 0."""
        self._previous_id = self._blank_id
        self._tokens: list[DecodedToken] = []
        self._clock.reset()

    def accept(self, logits: np.ndarray, start_frame: int | None = None) -> list[DecodedToken]:
        """Decode one chunk ``[T, V]`` (logits or log-probs); return the tokens it emits.

        ``start_frame``: absolute index of ``logits[0]`` (default: continue the stream).
        """
        logits = _check_matrix("logits", logits, len(self._vocabulary), "CTC scores")
        first_frame = self._clock.begin(start_frame, logits.shape[0])
        if logits.shape[0] == 0:
            return []
        best = np.argmax(logits, axis=1)
        frames, ids = ctc_collapse(best, self._blank_id, self._previous_id)
        self._previous_id = int(best[-1])
        scores = token_log_probs(logits, frames, ids)
        vocab = self._vocabulary
        emitted = [DecodedToken(t, first_frame + f, vocab[t], sc) for f, t, sc in zip(frames, ids, scores)]
        self._tokens.extend(emitted)
        return emitted

    def result(self) -> DecodingResult:
        """All tokens since the last reset, with their frames and joined text."""
        return _result(self._tokens, self._separator)


def _result(tokens: list[DecodedToken], separator: str) -> DecodingResult:
    return DecodingResult(
        token_ids=tuple(t.token_id for t in tokens),
        frame_indices=tuple(t.frame_index for t in tokens),
        text=separator.join(t.text for t in tokens),
    )


# ---------------------------------------------------------------------- CTC prefix beam
@dataclass(frozen=True)
class BeamHypothesis:
    """A labeling and its total CTC log-probability (summed over all its alignments)."""

    token_ids: tuple[int, ...]
    log_prob: float
    text: str | None = None


def _logaddexp(*values: float) -> float:
    m = max(values)
    if m == -math.inf:
        return -math.inf
    return m + math.log(sum(math.exp(v - m) for v in values))


def ctc_prefix_beam_search(
    log_probs: np.ndarray,
    blank_id: int,
    beam_size: int = 8,
    word_list: Sequence[str | int] | None = None,
    vocabulary: Sequence[str] | None = None,
    *,
    separator: str = " ",
) -> list[BeamHypothesis]:
    """CTC prefix beam search over a whole utterance, in log space.

    Args:
        log_probs: ``[T, V]`` log-probabilities (log_softmax over V; rows must normalise).
        blank_id: the blank's index.
        beam_size: prefixes kept after each frame (also the number of non-blank tokens
            expanded per frame: the ``beam_size`` most likely allowed ones).
        word_list: optional constraint: only these tokens may be emitted (token strings,
            looked up in ``vocabulary``, or token ids). Tokens are whole words here (e.g.
            digit words), so this restricts the output to the listed words.
        vocabulary: token strings (index = token id); needed for string ``word_list`` entries
            and to fill ``BeamHypothesis.text``.

    Returns:
        Up to ``beam_size`` hypotheses, most probable first. The best one's ``log_prob`` is
        the exact log-probability of its labeling when no pruning removed one of its prefixes.
    """
    num_classes = None if vocabulary is None else len(vocabulary)
    vocab = None if vocabulary is None else _check_vocabulary(vocabulary, blank_id)
    log_probs = _check_matrix("log_probs", log_probs, num_classes, "CTC log-probabilities")
    num_classes = log_probs.shape[1]
    blank_id = _check_index("blank_id", blank_id, num_classes)
    beam_size = _check_count("beam_size", beam_size, 1)
    if log_probs.shape[0]:
        row_log_sums = np.logaddexp.reduce(log_probs.astype(np.float64), axis=1)
        worst = float(np.abs(row_log_sums).max())
        if worst > 1e-3:
            raise InvalidInputError(
                f"log_probs rows must be log-probabilities (log_softmax over V); a row's "
                f"logsumexp is off 0 by {worst:.3g}"
            )
    allowed = _allowed_tokens(word_list, vocab, num_classes, blank_id)

    # prefix -> (log P(prefix, ending in blank), log P(prefix, ending in its last token))
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, -math.inf)}
    neg_inf = -math.inf
    for frame in log_probs.astype(np.float64):
        blank_lp = float(frame[blank_id])
        candidates = allowed[np.argsort(-frame[allowed], kind="stable")[:beam_size]]
        next_beams: dict[tuple[int, ...], list[float]] = {}

        def entry(prefix):
            if prefix not in next_beams:
                next_beams[prefix] = [neg_inf, neg_inf]
            return next_beams[prefix]

        for prefix, (p_blank, p_token) in beams.items():
            # Blank: the prefix is unchanged and now ends in blank.
            e = entry(prefix)
            e[0] = _logaddexp(e[0], p_blank + blank_lp, p_token + blank_lp)
            last = prefix[-1] if prefix else None
            for token_id in candidates.tolist():
                token_lp = float(frame[token_id])
                extended = entry(prefix + (token_id,))
                if token_id == last:
                    # A repeat extends the labeling only after a blank; otherwise it merges.
                    extended[1] = _logaddexp(extended[1], p_blank + token_lp)
                    e[1] = _logaddexp(e[1], p_token + token_lp)
                else:
                    extended[1] = _logaddexp(extended[1], p_blank + token_lp, p_token + token_lp)
        # Drop impossible prefixes (e.g. a repeat with no frame left for the blank between).
        scored = [(_logaddexp(*v), prefix, v) for prefix, v in next_beams.items()]
        scored = [item for item in scored if item[0] > -math.inf]
        scored.sort(key=lambda item: -item[0])
        beams = {prefix: (pb, pt) for _, prefix, (pb, pt) in scored[:beam_size]}

    hypotheses = []
    for prefix, (p_blank, p_token) in beams.items():
        text = None if vocab is None else separator.join(vocab[t] for t in prefix)
        hypotheses.append(BeamHypothesis(prefix, _logaddexp(p_blank, p_token), text))
    hypotheses.sort(key=lambda h: -h.log_prob)
    return hypotheses


def _allowed_tokens(word_list, vocab, num_classes: int, blank_id: int) -> np.ndarray:
    if word_list is None:
        return np.array([t for t in range(num_classes) if t != blank_id], dtype=np.int64)
    ids = set()
    for word in word_list:
        if isinstance(word, str):
            if vocab is None:
                raise InvalidInputError("word_list of strings needs the vocabulary to map them to token ids")
            if word not in vocab:
                raise InvalidInputError(f"word_list entry {word!r} is not in the vocabulary")
            ids.add(vocab.index(word))
        else:
            ids.add(_check_index("word_list entry", word, num_classes))
    ids.discard(blank_id)
    return np.array(sorted(ids), dtype=np.int64)


# ---------------------------------------------------------------------- transducer greedy
PredictorStep = Callable[[int, Any], "tuple[np.ndarray, Any]"]
Joiner = Callable[[np.ndarray, np.ndarray], np.ndarray]
# The batched forms the search drives: ``join(frames [N, D_enc], predictions [N, D_pred]) -> logits
# [N, V]`` and ``predict(tokens [n] int64, states: list) -> (predictions [n, D_pred], new states)``.
JoinRows = Callable[[np.ndarray, np.ndarray], np.ndarray]
PredictBatch = Callable[[np.ndarray, list], "tuple[np.ndarray, list]"]


class TransducerHypothesis:
    """One stream's place in a greedy transducer search: its predictor output and predictor state.

    The state is whatever the predictor carries (an LSTM predictor's arrays, a stateless
    decoder's token context); the search replaces both after every emitted token and never
    writes into them, so a fresh hypothesis may share the primed start with others.
    """

    __slots__ = ("prediction", "state")

    def __init__(self, prediction: np.ndarray, state: Any):
        self.prediction, self.state = prediction, state


class TransducerSearch:
    """Greedy transducer search over any number of streams at once: the rules, no model.

    Rules (those of icefall's and sherpa-onnx's greedy search):

    - a stream starts from the predictor advanced on blank from its initial state (an LSTM
      predictor primed with blank; a stateless decoder's context ``[-1, ..., -1, blank]``);
    - on each encoder frame the joiner scores (frame, predictor output); while the best class is
      not blank (``unk_id``, when given, counts as blank) and fewer than
      ``max_symbols_per_frame`` tokens were emitted on that frame, the token is emitted, the
      predictor advances on it, and the same frame is scored again; then the next frame;
    - the predictor runs only after an emission (its output for an unchanged history is reused).

    How it is computed (the result is the same, the number of runtime calls is not): the joiner
    scores a window of up to ``window_frames`` frames per stream in one call, against each
    stream's current predictor output; a stream's frames up to its first non-blank were decided
    by that call, and the search resumes after the token. All streams go in the same joiner call
    and all emissions of a round in the same predictor call, so a step of ``S`` streams costs
    one joiner call per round and one predictor call per round with a token (sherpa-onnx: one
    joiner call per frame). Windows of 1 frame score frame by frame.

    Args:
        blank_id: the blank's index in the joiner output.
        max_symbols_per_frame: most tokens emitted on one encoder frame (>= 1).
        join: ``(frames [N, D_enc], predictions [N, D_pred]) -> logits [N, V]``.
        predict: ``(tokens [n] int64, states list of n) -> (predictions [n, D_pred], new states)``.
        initial_state: the predictor state of a fresh stream (never mutated).
        unk_id: a token scored as blank (sherpa-onnx does so with ``<unk>``), or None.
        window_frames: frames per stream scored in one joiner call.
    """

    def __init__(self, blank_id: int, max_symbols_per_frame: int, *, join: JoinRows, predict: PredictBatch,
                 initial_state: Any, unk_id: int | None = None, window_frames: int = 16):
        if not callable(join) or not callable(predict):
            raise InvalidInputError("join and predict must be callables")
        self.blank_id = _check_count("blank_id", blank_id, 0)
        self.max_symbols_per_frame = _check_count("max_symbols_per_frame", max_symbols_per_frame, 1)
        self.unk_id = None if unk_id is None else _check_count("unk_id", unk_id, 0)
        self._window = _check_count("window_frames", window_frames, 1)
        self._join, self._predict = join, predict
        self._initial_state = initial_state
        self._start: TransducerHypothesis | None = None

    def start(self) -> TransducerHypothesis:
        """A fresh stream's hypothesis (the predictor primed with blank; computed once, then shared)."""
        if self._start is None:
            predictions, states = self._predict(np.array([self.blank_id], np.int64), [self._initial_state])
            self._start = TransducerHypothesis(np.asarray(predictions)[0], states[0])
        return TransducerHypothesis(self._start.prediction, self._start.state)

    def decode(self, hypotheses: list, frames: list) -> list:
        """Advance each hypothesis over its encoder frames ``[T_i, D_enc]``; returns, per stream, the
        emitted ``(token_id, frame offset within its frames)`` in order."""
        blank, unk, most, window = self.blank_id, self.unk_id, self.max_symbols_per_frame, self._window
        emitted: list = [[] for _ in hypotheses]
        ends = [int(f.shape[0]) for f in frames]
        pos = [0] * len(hypotheses)
        count = [0] * len(hypotheses)  # tokens already emitted on frame pos[i]
        active = [i for i, n in enumerate(ends) if n]
        while active:
            spans = [(i, pos[i], min(ends[i], pos[i] + window)) for i in active]
            if len(spans) == 1:
                i, a, b = spans[0]
                enc = frames[i][a:b]
                # ndarray.repeat, not np.broadcast_to: the join copies its inputs anyway, and
                # broadcast_to's Python wrapper cost more than the joiner call (measured, T=11).
                pred = hypotheses[i].prediction[None].repeat(b - a, axis=0)
            else:
                enc = np.concatenate([frames[i][a:b] for i, a, b in spans])
                pred = np.repeat(np.stack([hypotheses[i].prediction for i, _, _ in spans]),
                                 [b - a for _, a, b in spans], axis=0)
            best = np.asarray(self._join(enc, pred)).argmax(axis=-1)
            if unk is not None:
                best[best == unk] = blank
            # Python lists: the per-stream loop below indexes them (a numpy scalar and a nonzero() per
            # stream were most of this loop's own time in a 16-stream batch, cProfile).
            ids = best.tolist()
            nonblank = [x != blank for x in ids]
            tokens, who, active, row = [], [], [], 0
            for i, a, b in spans:
                k = (0 if nonblank[row] else -1) if b - a == 1 else _first_true(nonblank, row, row + b - a)
                if k < 0:
                    pos[i], count[i] = b, 0
                else:
                    t, token = a + k, ids[row + k]
                    emitted[i].append((token, t))
                    tokens.append(token)
                    who.append(i)
                    symbols = (count[i] if k == 0 else 0) + 1
                    pos[i], count[i] = (t, symbols) if symbols < most else (t + 1, 0)
                row += b - a
                if pos[i] < ends[i]:
                    active.append(i)
            if who:
                predictions, states = self._predict(np.array(tokens, np.int64), [hypotheses[i].state for i in who])
                for j, i in enumerate(who):
                    hypotheses[i].prediction, hypotheses[i].state = predictions[j], states[j]
        return emitted


class TransducerGreedyDecoder:
    """Streaming greedy search for an RNN-T / transducer, one stream (:class:`TransducerSearch`'s rules).

    For each encoder frame, the joiner scores (frame, predictor output); while the best
    class is not blank (and fewer than ``max_symbols_per_frame`` were emitted on this
    frame), the token is emitted and the predictor advances on it. The predictor output,
    its state and the frame counter survive across ``accept`` calls, so chunking never
    changes the result.

    Args:
        blank_id: the blank's index in the joiner output.
        max_symbols_per_frame: the most tokens emitted on one encoder frame (>= 1).
        predictor_step: ``(token_id, pred_state) -> (pred_out, new_pred_state)``; it is
            first called with ``blank_id`` (the start-of-sequence context, as in icefall).
        joiner: ``(enc_frame [D], pred_out) -> logits [V]``.
        initial_pred_state: the predictor state at the start of a stream (never mutated
            by this class; ``reset()`` starts again from it).
        vocabulary: optional token strings for ``DecodedToken.text`` (else the id).
    """

    def __init__(
        self,
        blank_id: int,
        max_symbols_per_frame: int = 3,
        *,
        predictor_step: PredictorStep,
        joiner: Joiner,
        initial_pred_state: Any,
        vocabulary: Sequence[str] | None = None,
        separator: str = " ",
    ):
        if not callable(predictor_step) or not callable(joiner):
            raise InvalidInputError("predictor_step and joiner must be callables")
        _check_count("blank_id", blank_id, 0)

        def join(enc, pred):  # frame by frame, as the callable takes them (a window of one frame)
            rows = [np.asarray(joiner(e, p)) for e, p in zip(enc, pred)]
            for logits in rows:
                if logits.ndim != 1 or not blank_id < logits.shape[0]:
                    raise InvalidInputError(f"joiner must return logits [V] with V > blank_id={blank_id}; "
                                            f"got shape {logits.shape}")
            return np.stack(rows)

        def predict(tokens, states):
            pairs = [predictor_step(int(t), s) for t, s in zip(tokens, states)]
            return [p for p, _ in pairs], [s for _, s in pairs]

        search = TransducerSearch(blank_id, max_symbols_per_frame, join=join, predict=predict,
                                  initial_state=initial_pred_state, window_frames=1)
        self._setup(search, vocabulary, separator)

    @classmethod
    def over(cls, search: TransducerSearch, *, vocabulary: Sequence[str] | None = None,
             separator: str = " ") -> "TransducerGreedyDecoder":
        """One stream of an existing (e.g. ONNX-backed, batched) :class:`TransducerSearch`."""
        decoder = cls.__new__(cls)
        decoder._setup(search, vocabulary, separator)
        return decoder

    def _setup(self, search: TransducerSearch, vocabulary, separator: str) -> None:
        self._search = search
        self._vocabulary = None if vocabulary is None else _check_vocabulary(vocabulary, search.blank_id)
        self._separator = separator
        self._clock = _FrameClock()
        self._encoder_dim: int | None = None
        self.reset()

    @property
    def blank_id(self) -> int:
        return self._search.blank_id

    def reset(self) -> None:
        """Start a new stream: predictor back to its initial state primed with blank."""
        self._hypothesis = self._search.start()
        self._tokens: list[DecodedToken] = []
        self._clock.reset()

    def accept(self, encoder_frames: np.ndarray, start_frame: int | None = None) -> list[DecodedToken]:
        """Decode encoder output ``[T, D]``; return the tokens emitted on these frames."""
        encoder_frames = _check_matrix("encoder_frames", encoder_frames, self._encoder_dim, "encoder output")
        self._encoder_dim = encoder_frames.shape[1]
        first_frame = self._clock.begin(start_frame, encoder_frames.shape[0])
        (found,) = self._search.decode([self._hypothesis], [encoder_frames])
        emitted = [DecodedToken(token_id, first_frame + offset, self._token_text(token_id))
                   for token_id, offset in found]
        self._tokens.extend(emitted)
        return emitted

    def result(self) -> DecodingResult:
        """All tokens since the last reset, with their frames and joined text."""
        return _result(self._tokens, self._separator)

    def _token_text(self, token_id: int) -> str:
        if self._vocabulary is None:
            return str(token_id)
        if token_id >= len(self._vocabulary):
            raise InvalidInputError(
                f"joiner produced token {token_id} outside the vocabulary of {len(self._vocabulary)}"
            )
        return self._vocabulary[token_id]


# ---------------------------------------------------------------------- keyword spotting
@dataclass(frozen=True)
class KeywordEvent:
    """A keyword detection: class, absolute frame where the smoothed score crossed, score."""

    keyword: str
    class_id: int
    frame_index: int
    score: float


class KeywordSpotter:
    """Keyword detection from per-step class posteriors, one event per occurrence.

    Posteriors are smoothed by a causal moving average over the last ``smoothing_frames``
    steps (fewer at the very start of a stream). A keyword fires when its smoothed score
    reaches ``threshold``; it then must fall below the threshold before it can fire again
    (one event per occurrence however long it stays high), and after any detection no
    keyword fires for ``refractory_frames`` steps (suppresses confusable neighbours and
    echoes; a keyword above threshold during that period must also fall below it first).

    Args:
        class_names: name of each posterior column (C entries).
        threshold: smoothed posterior needed to fire, in (0, 1].
        smoothing_frames: moving-average window (>= 1; 1 = no smoothing).
        refractory_frames: steps after a detection during which nothing fires (>= 0).
        background_id: the non-keyword class (never fires), or None.
    """

    def __init__(
        self,
        class_names: Sequence[str],
        threshold: float,
        smoothing_frames: int,
        refractory_frames: int,
        background_id: int | None,
    ):
        self._class_names = _check_vocabulary(class_names, None)
        if background_id is not None:
            _check_index("background_id", background_id, len(self._class_names))
        numeric = isinstance(threshold, (int, float, np.floating)) and not isinstance(threshold, bool)
        if not numeric or not 0.0 < threshold <= 1.0:
            raise InvalidInputError(f"threshold must be a number in (0, 1]; got {threshold!r}")
        self._threshold = float(threshold)
        self._smoothing_frames = _check_count("smoothing_frames", smoothing_frames, 1)
        self._refractory_frames = _check_count("refractory_frames", refractory_frames, 0)
        self._background_id = background_id
        keyword_ids = [c for c in range(len(self._class_names)) if c != background_id]
        self._keyword_ids = np.array(keyword_ids, dtype=np.int64)
        self._clock = _FrameClock()
        self.reset()

    @property
    def class_names(self) -> tuple[str, ...]:
        return self._class_names

    def reset(self) -> None:
        """Forget the smoothing window, the refractory timer and past events."""
        # History of the last smoothing_frames - 1 posteriors: the window carried across chunks.
        self._history = np.zeros((0, len(self._class_names)), dtype=np.float64)
        self._armed = np.ones(len(self._class_names), dtype=bool)
        self._blocked_until_frame = 0  # absolute frame from which detections are allowed
        self._events: list[KeywordEvent] = []
        self._clock.reset()

    @property
    def events(self) -> tuple[KeywordEvent, ...]:
        """All detections since the last reset."""
        return tuple(self._events)

    def _smooth(self, posteriors: np.ndarray) -> np.ndarray:
        """Moving averages ``[T, C]`` of a chunk; carries the last window - 1 rows forward."""
        num_history = self._history.shape[0]
        stacked = np.concatenate([self._history, posteriors.astype(np.float64)], axis=0)
        csum = np.concatenate([np.zeros((1, stacked.shape[1])), np.cumsum(stacked, axis=0)])
        ends = np.arange(num_history + 1, stacked.shape[0] + 1)
        starts = np.maximum(ends - self._smoothing_frames, 0)
        keep = min(self._smoothing_frames - 1, stacked.shape[0])
        self._history = stacked[stacked.shape[0] - keep :].copy()
        return (csum[ends] - csum[starts]) / (ends - starts)[:, None]

    def accept(self, posteriors: np.ndarray, start_frame: int | None = None) -> list[KeywordEvent]:
        """Process posteriors ``[T, C]`` (each in [0, 1]); return the detections they cause."""
        posteriors = _check_matrix("posteriors", posteriors, len(self._class_names), "class posteriors")
        if posteriors.size and (posteriors.min() < -1e-6 or posteriors.max() > 1 + 1e-6):
            raise InvalidInputError(
                f"posteriors must be probabilities in [0, 1] (softmax outputs); got values in "
                f"[{posteriors.min():.3g}, {posteriors.max():.3g}]"
            )
        first_frame = self._clock.begin(start_frame, posteriors.shape[0])
        smoothed = self._smooth(posteriors)

        events = []
        keywords = self._keyword_ids
        for offset, scores in enumerate(smoothed):
            frame_index = first_frame + offset
            above = scores[keywords] >= self._threshold
            # Re-arm a keyword once its score has dropped below the threshold.
            self._armed[keywords[~above]] = True
            if frame_index < self._blocked_until_frame:
                # An occurrence that starts inside the refractory period is suppressed as a
                # whole, not reported late when the period ends.
                self._armed[keywords[above]] = False
                continue
            ready = keywords[above & self._armed[keywords]]
            if ready.size == 0:
                continue
            class_id = int(ready[np.argmax(scores[ready])])
            self._armed[class_id] = False
            self._blocked_until_frame = frame_index + 1 + self._refractory_frames
            name = self._class_names[class_id]
            events.append(KeywordEvent(name, class_id, frame_index, float(scores[class_id])))
        self._events.extend(events)
        return events
