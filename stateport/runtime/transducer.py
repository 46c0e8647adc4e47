"""Greedy transcription over an exported transducer: the encoder, predictor and joiner graphs.

numpy + onnxruntime only. :class:`TransducerGraphs` opens the three files of one export
(``encoder.onnx``, ``predictor.onnx``, ``joiner.onnx``) and checks from their cards that they
belong together (output kinds, vocabulary, blank id, the joiner's input sizes).
:class:`StreamingTransducer` is one stream: the encoder state is carried across feature chunks
and :class:`~stateport.runtime.decoders.TransducerGreedyDecoder` carries the predictor state
across encoder frames, so any chunking gives the transcript of :func:`transcribe`, which runs
the encoder over the whole utterance in one call.
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import InvalidInputError, ModelFileError
from .decoders import DecodedToken, DecodingResult, TransducerGreedyDecoder
from .session import OnnxStepSession

GRAPH_KINDS = {"encoder": "transducer_encoder", "predictor": "transducer_predictor", "joiner": "transducer_joiner"}


class TransducerGraphs:
    """The three sessions of one exported transducer.

    Joiner inputs, in card order: one encoder frame [1, D_enc], then one prediction [1, D_pred].
    The predictor takes token ids [1, U] (int64) and returns a prediction [1, U, D_pred].
    """

    def __init__(self, *, encoder: OnnxStepSession, predictor: OnnxStepSession, joiner: OnnxStepSession):
        self.encoder, self.predictor, self.joiner = encoder, predictor, joiner
        for name, session in (("encoder", encoder), ("predictor", predictor), ("joiner", joiner)):
            kind = session.card.output.kind
            if kind != GRAPH_KINDS[name]:
                raise ModelFileError(f"the {name} graph's card says output kind {kind!r}; "
                                     f"expected {GRAPH_KINDS[name]!r}")
        outputs = [s.card.output for s in (encoder, predictor, joiner)]
        if any(o.vocabulary != outputs[0].vocabulary or o.blank_id != outputs[0].blank_id for o in outputs):
            raise ModelFileError("the encoder, predictor and joiner cards disagree on the vocabulary or blank id: "
                                 "they are not from the same export")
        self.vocabulary = list(outputs[0].vocabulary)
        self.blank_id = int(outputs[0].blank_id)

        self._encoder_port = encoder.card.output.port
        self._prediction_port = predictor.card.output.port
        self._logits_port = joiner.card.output.port
        tokens = predictor.card.inputs
        if len(tokens) != 1 or not np.issubdtype(np.dtype(tokens[0].dtype), np.integer):
            raise ModelFileError("the predictor graph must take one integer input (token ids)")
        self._tokens_port = tokens[0].name
        if len(joiner.card.inputs) != 2:
            raise ModelFileError("the joiner graph must take two inputs: an encoder frame, then a prediction")
        self._joiner_encoder_port, self._joiner_prediction_port = (p.name for p in joiner.card.inputs)
        enc_dim = _last_dim(encoder.card, self._encoder_port)
        pred_dim = _last_dim(predictor.card, self._prediction_port)
        want = [p.shape[-1] for p in joiner.card.inputs]
        if want != [enc_dim, pred_dim]:
            raise ModelFileError(f"the joiner takes sizes {want}, but the encoder gives {enc_dim} and the predictor "
                                 f"{pred_dim}")

    @classmethod
    def from_directory(cls, path: str | os.PathLike, *, threads: int = 1, optimization: str | None = None,
                       allow_uncertified: bool = False) -> "TransducerGraphs":
        """Open ``path/encoder.onnx``, ``path/predictor.onnx`` and ``path/joiner.onnx`` (each checked on
        load: card against graph, certificate unless ``allow_uncertified``)."""
        path = os.fspath(path)
        if not os.path.isdir(path):
            raise ModelFileError(f"{path!r} is not a directory: a transducer export is a directory holding "
                                 f"{', '.join(f'{n}.onnx' for n in GRAPH_KINDS)}")
        missing = [f"{n}.onnx" for n in GRAPH_KINDS if not os.path.isfile(os.path.join(path, f"{n}.onnx"))]
        if missing:
            raise ModelFileError(f"{path!r} lacks {', '.join(missing)}: a transducer export holds "
                                 f"{', '.join(f'{n}.onnx' for n in GRAPH_KINDS)}")
        sessions = {name: OnnxStepSession(os.path.join(path, f"{name}.onnx"), threads=threads,
                                          optimization=optimization, allow_uncertified=allow_uncertified)
                    for name in GRAPH_KINDS}
        return cls(**sessions)

    # -- the two callables the greedy decoder drives ---------------------------------------
    def predictor_step(self, token_id: int, state: dict) -> tuple[np.ndarray, dict]:
        """Advance the predictor on one token: ``(prediction [D_pred], new_state)``."""
        outputs, new_state = self.predictor.run({self._tokens_port: np.array([[token_id]], dtype=np.int64)}, state)
        return outputs[self._prediction_port][0, 0], new_state

    def join(self, encoder_frame: np.ndarray, prediction: np.ndarray) -> np.ndarray:
        """Score one (encoder frame [D_enc], prediction [D_pred]) pair: logits [V]."""
        feeds = {self._joiner_encoder_port: np.asarray(encoder_frame, dtype=np.float32)[None],
                 self._joiner_prediction_port: np.asarray(prediction, dtype=np.float32)[None]}
        outputs, _ = self.joiner.run(feeds, None)
        return outputs[self._logits_port][0]

    def new_decoder(self, *, max_symbols_per_frame: int = 3) -> TransducerGreedyDecoder:
        """A greedy decoder driving these graphs, its predictor at a fresh state."""
        return TransducerGreedyDecoder(self.blank_id, max_symbols_per_frame, predictor_step=self.predictor_step,
                                       joiner=self.join, initial_pred_state=self.predictor.init_state(1),
                                       vocabulary=self.vocabulary)

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

    def __init__(self, graphs: TransducerGraphs, *, max_symbols_per_frame: int = 3):
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


def transcribe(graphs: TransducerGraphs, features: np.ndarray, *, max_symbols_per_frame: int = 3) -> DecodingResult:
    """Offline: the encoder over the whole utterance in one call (only the features fed), then greedy search."""
    outputs = graphs.encoder.offline(_one_stream(features))
    decoder = graphs.new_decoder(max_symbols_per_frame=max_symbols_per_frame)
    decoder.accept(graphs.encoder_frames(outputs))
    return decoder.result()
