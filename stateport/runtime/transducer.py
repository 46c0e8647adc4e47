"""Greedy transcription over an exported transducer: the encoder, predictor (or decoder) and joiner graphs.

numpy + onnxruntime only. :class:`TransducerGraphs` opens the three files of one export and
checks from their cards that they belong together (output kinds, vocabulary, blank id, the
joiner's input sizes). Two kinds of prediction network:

- ``predictor.onnx`` (``stateport export --arch rnnt``): an LSTM over the emitted tokens with its
  own state ports, fed one token per call;
- ``decoder.onnx`` (``--arch lstm-transducer``, also written by ``--backend sherpa-onnx``): a
  *stateless* decoder fed the last ``context_size`` tokens (``-1`` before the first one), as in
  icefall and sherpa-onnx. Its greedy search follows sherpa-onnx's rules (one token per encoder
  frame, ``<unk>`` scored as blank) unless the caller sets ``max_symbols_per_frame``.

Both are driven by one :class:`~stateport.runtime.decoders.TransducerSearch`, batched over
streams and over the frames of a chunk. :class:`StreamingTransducer` is one stream: the encoder
state is carried across feature chunks and the search carries the predictor's across encoder
frames, so any chunking gives the transcript of :func:`transcribe`, which runs the encoder over
the whole utterance in one call.
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import InvalidInputError, ModelFileError
from .decoders import DecodedToken, DecodingResult, TransducerGreedyDecoder, TransducerSearch
from .session import OnnxStepSession

# Graph file stem -> card output kind; the prediction network is one of the middle two.
GRAPH_KINDS = {"encoder": "transducer_encoder", "predictor": "transducer_predictor",
               "decoder": "transducer_decoder", "joiner": "transducer_joiner"}
PREDICTION_GRAPHS = ("predictor", "decoder")
UNK = "<unk>"  # scored as blank with a stateless decoder (sherpa-onnx's rule)
TOKENS_FILE = "tokens.txt"  # a sherpa-onnx folder's token table (checked against the cards)
# Greedy search: the most tokens on one encoder frame, per prediction network (an explicit
# RecognizerOptions.max_symbols_per_frame overrides it). sherpa-onnx emits one per frame.
DEFAULT_MAX_SYMBOLS = {"predictor": 3, "decoder": 1}


class TransducerGraphs:
    """The three sessions of one exported transducer, and the greedy search over them.

    Joiner inputs, in card order: one encoder frame [N, D_enc], then one prediction [N, D_pred].
    The predictor takes token ids [N, U] (int64) and returns a prediction [N, U, D_pred] (with
    its state); a stateless decoder takes a context [N, C] (int64) and returns [N, D_pred].
    """

    def __init__(self, *, encoder: OnnxStepSession, predictor: OnnxStepSession, joiner: OnnxStepSession):
        self.encoder, self.predictor, self.joiner = encoder, predictor, joiner
        self.prediction_graph = "decoder" if predictor.card.output.kind == GRAPH_KINDS["decoder"] else "predictor"
        for name, session in (("encoder", encoder), (self.prediction_graph, predictor), ("joiner", joiner)):
            kind = session.card.output.kind
            if kind != GRAPH_KINDS[name]:
                raise ModelFileError(f"the {name} graph's card says output kind {kind!r}; "
                                     f"expected {GRAPH_KINDS[name]!r}")
        outputs = [s.card.output for s in (encoder, predictor, joiner)]
        if any(o.vocabulary != outputs[0].vocabulary or o.blank_id != outputs[0].blank_id for o in outputs):
            raise ModelFileError(f"the encoder, {self.prediction_graph} and joiner cards disagree on the vocabulary "
                                 "or blank id: they are not from the same export")
        self.vocabulary = list(outputs[0].vocabulary)
        self.blank_id = int(outputs[0].blank_id)
        self.stateless = self.prediction_graph == "decoder"

        self._encoder_port = encoder.card.output.port
        self._prediction_port = predictor.card.output.port
        self._logits_port = joiner.card.output.port
        tokens = predictor.card.inputs
        if len(tokens) != 1 or not np.issubdtype(np.dtype(tokens[0].dtype), np.integer):
            raise ModelFileError(f"the {self.prediction_graph} graph must take one integer input (token ids)")
        self._tokens_port = tokens[0].name
        if self.stateless:
            if predictor.card.states or len(tokens[0].shape) != 2 or not isinstance(tokens[0].shape[1], int):
                raise ModelFileError("the decoder graph must be stateless and take a context [N, context_size]")
            self.context_size = int(tokens[0].shape[1])
        if len(joiner.card.inputs) != 2:
            raise ModelFileError("the joiner graph must take two inputs: an encoder frame, then a prediction")
        self._joiner_encoder_port, self._joiner_prediction_port = (p.name for p in joiner.card.inputs)
        enc_dim = _last_dim(encoder.card, self._encoder_port)
        pred_dim = _last_dim(predictor.card, self._prediction_port)
        want = [p.shape[-1] for p in joiner.card.inputs]
        if want != [enc_dim, pred_dim]:
            raise ModelFileError(f"the joiner takes sizes {want}, but the encoder gives {enc_dim} and the "
                                 f"{self.prediction_graph} {pred_dim}")
        self._joiner_names = [self._logits_port]
        self._predictor_names = predictor.card.output_names
        self._predictor_states = [(s.name, s.batch_axis) for s in predictor.card.states]
        self._searches: dict = {}

    @classmethod
    def from_directory(cls, path: str | os.PathLike, *, threads: int = 1, optimization: str | None = None,
                       allow_uncertified: bool = False) -> "TransducerGraphs":
        """Open ``path/encoder.onnx``, ``path/predictor.onnx`` (or ``decoder.onnx``) and ``path/joiner.onnx``
        (each checked on load: card against graph, certificate unless ``allow_uncertified``)."""
        path = os.fspath(path)
        expected = "encoder.onnx, predictor.onnx (or decoder.onnx), joiner.onnx"
        if not os.path.isdir(path):
            raise ModelFileError(f"{path!r} is not a directory: a transducer export is a directory holding {expected}")
        present = [n for n in PREDICTION_GRAPHS if os.path.isfile(os.path.join(path, f"{n}.onnx"))]
        missing = [f"{n}.onnx" for n in ("encoder", "joiner") if not os.path.isfile(os.path.join(path, f"{n}.onnx"))]
        if missing or len(present) != 1:
            what = ", ".join(missing + (["predictor.onnx or decoder.onnx"] if not present else []))
            raise ModelFileError(f"{path!r} " + (f"lacks {what}" if what else "holds both predictor.onnx and "
                                                 "decoder.onnx") + f": a transducer export holds {expected}")
        files = {"encoder": "encoder", "predictor": present[0], "joiner": "joiner"}
        sessions = {role: OnnxStepSession(os.path.join(path, f"{stem}.onnx"), threads=threads,
                                          optimization=optimization, allow_uncertified=allow_uncertified)
                    for role, stem in files.items()}
        graphs = cls(**sessions)
        graphs._check_tokens_file(os.path.join(path, TOKENS_FILE))
        return graphs

    def _check_tokens_file(self, path: str) -> None:
        """A sherpa-onnx folder's tokens.txt must name the cards' vocabulary (else the runtimes' texts differ)."""
        if not os.path.isfile(path):
            return
        with open(path, encoding="utf-8") as f:
            rows = [line.split() for line in f if line.strip()]
        table = {}
        for row in rows:
            if len(row) != 2 or not row[1].lstrip("-").isdigit():
                raise ModelFileError(f"{path!r}: expected lines 'symbol id'; got {' '.join(row)!r}")
            table[int(row[1])] = row[0]
        if [table.get(i) for i in range(len(self.vocabulary))] != self.vocabulary or len(table) != len(self.vocabulary):
            raise ModelFileError(f"{path!r} does not list the cards' vocabulary of {len(self.vocabulary)} tokens "
                                 "(id by id): it was edited or belongs to another model")

    # -- the batched callables the search drives -------------------------------------------
    def join(self, frames: np.ndarray, predictions: np.ndarray) -> np.ndarray:
        """Score (encoder frame, prediction) pairs: frames [N, D_enc], predictions [N, D_pred] -> logits [N, V]."""
        feeds = {self._joiner_encoder_port: np.ascontiguousarray(frames, dtype=np.float32),
                 self._joiner_prediction_port: np.ascontiguousarray(predictions, dtype=np.float32)}
        return self.joiner.run_prepared(feeds)[0]

    def predict(self, tokens: np.ndarray, states: list) -> tuple:
        """Advance the prediction network of ``n`` streams on one token each: (predictions [n, D], states).

        A stateless decoder's "state" is its context (a tuple of the last C ids); an LSTM
        predictor's is its state arrays (batch 1 each), stacked for the call and split after.
        """
        if self.stateless:
            contexts = [context[1:] + (int(t),) for context, t in zip(states, tokens.tolist())]
            out = self.predictor.run_prepared({self._tokens_port: np.array(contexts, np.int64)})[0]
            return out, contexts
        feeds = {self._tokens_port: tokens.reshape(-1, 1)}
        for name, axis in self._predictor_states:
            feeds[name] = np.concatenate([s[name] for s in states], axis=axis) if len(states) > 1 else states[0][name]
        values = self.predictor.run_prepared(feeds)
        prediction = values[0][:, 0]
        n = len(states)
        split = [{name: np.take(v, [k], axis=axis) for (name, axis), v in zip(self._predictor_states, values[1:])}
                 for k in range(n)] if n > 1 else [dict(zip((nm for nm, _ in self._predictor_states), values[1:]))]
        return prediction, split

    def initial_prediction_state(self):
        """The prediction network's state of a fresh stream (a context of -1 ids, or zero arrays)."""
        if self.stateless:
            return (-1,) * self.context_size  # the search shifts blank in: [-1, ..., -1, blank]
        return self.predictor.init_state(1)

    def search(self, max_symbols_per_frame: int | None = None) -> TransducerSearch:
        """The greedy search over these graphs (one per rule set, shared by every stream).

        ``max_symbols_per_frame`` None: the prediction network's convention (:data:`DEFAULT_MAX_SYMBOLS`).
        """
        most = DEFAULT_MAX_SYMBOLS[self.prediction_graph] if max_symbols_per_frame is None else max_symbols_per_frame
        if most not in self._searches:
            unk = self.vocabulary.index(UNK) if self.stateless and UNK in self.vocabulary else None
            self._searches[most] = TransducerSearch(self.blank_id, most, join=self.join, predict=self.predict,
                                                    initial_state=self.initial_prediction_state(), unk_id=unk)
        return self._searches[most]

    def new_decoder(self, *, max_symbols_per_frame: int | None = None) -> TransducerGreedyDecoder:
        """A one-stream greedy decoder driving these graphs, its prediction network at a fresh start."""
        return TransducerGreedyDecoder.over(self.search(max_symbols_per_frame), vocabulary=self.vocabulary)

    def encoder_frames(self, outputs: dict) -> np.ndarray:
        """The encoder output of one stream, [T', D_enc], from an encoder call's outputs."""
        return outputs[self._encoder_port][0]


def _last_dim(card, port_name: str):
    return next(p.shape[-1] for p in card.outputs if p.name == port_name)


def _one_stream(features: np.ndarray) -> np.ndarray:
    """[T, F] or [1, T, F] -> [1, T, F]."""
    features = np.asarray(features)
    if features.ndim == 2:
        features = features[None]
    if features.ndim != 3 or features.shape[0] != 1:
        raise InvalidInputError(f"features: expected one stream [T, F] or [1, T, F], got shape {features.shape}")
    return features


class StreamingTransducer:
    """One stream of greedy transducer decoding over feature chunks.

    ``accept_features(chunk)`` runs the encoder on the chunk ([T, F] or [1, T, F]; T a multiple
    of the encoder card's ``frame_multiple``) with its state carried, then decodes the new
    encoder frames; it returns the tokens emitted on them (with absolute encoder frame indices).
    """

    def __init__(self, graphs: TransducerGraphs, *, max_symbols_per_frame: int | None = None):
        self.graphs = graphs
        self._decoder = graphs.new_decoder(max_symbols_per_frame=max_symbols_per_frame)
        self.reset()

    def reset(self) -> None:
        """Start a new stream: fresh encoder state, predictor back at its start."""
        self._encoder_state = self.graphs.encoder.init_state(1)
        self._decoder.reset()

    def accept_features(self, features: np.ndarray) -> list[DecodedToken]:
        outputs, self._encoder_state = self.graphs.encoder.run(_one_stream(features), self._encoder_state)
        return self._decoder.accept(self.graphs.encoder_frames(outputs))

    def result(self) -> DecodingResult:
        """Every token since the last reset."""
        return self._decoder.result()


def transcribe(graphs: TransducerGraphs, features: np.ndarray, *,
               max_symbols_per_frame: int | None = None) -> DecodingResult:
    """Offline: the encoder over the whole utterance in one call (only the features fed), then greedy search."""
    outputs = graphs.encoder.offline(_one_stream(features))
    decoder = graphs.new_decoder(max_symbols_per_frame=max_symbols_per_frame)
    decoder.accept(graphs.encoder_frames(outputs))
    return decoder.result()
