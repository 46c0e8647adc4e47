"""sherpa-onnx: a transducer as the folder sherpa-onnx's online recognizer loads, each graph certified.

::

    DIR/encoder.onnx   x [N, T, 80], h [L, N, H], c [L, N, H] -> encoder_out, next h, next c
                       metadata model_type=lstm, T, decode_chunk_len, num_encoder_layers,
                       d_model, rnn_hidden_size                                   (+ the card)
    DIR/decoder.onnx   context [N, C] int64 (-1 before the first token) -> decoder_out [N, J]
                       metadata vocab_size, context_size                          (+ the card)
    DIR/joiner.onnx    encoder_out [N, J], decoder_out [N, J] -> logits [N, V]
                       metadata joiner_dim                                        (+ the card)
    DIR/tokens.txt     "symbol id" per line, blank first (id 0)

The files are ONNX files of the ``onnx`` backend (same export, same parity proof, the stateport
card in ``metadata_props["stateport"]``) with the metadata entries sherpa-onnx's
``OnlineLstmTransducerModel`` reads beside it, so ``stateport verify DIR``,
``stateport.Recognizer.from_file(DIR)`` and ``sherpa_onnx.OnlineRecognizer.from_transducer(...,
model_type="lstm")`` all open the same folder. sherpa-onnx feeds its inputs by position, so
the graph's port order (signal, then h, then c) is the contract; their names are ours.

What maps (checked here, each refusal a typed error saying why):

- the architecture: a transducer whose graphs are an encoder, a *stateless* decoder (output
  kind ``transducer_decoder``: the last C tokens in, no state) and a joiner. An LSTM predictor
  (``rnnt``) carries recurrent state, which sherpa-onnx's transducer decoders have no port for;
- the encoder: LSTM state only (``h``, ``c`` as [L, N, H], batch on axis 1), 4x subsampling
  (sherpa-onnx places transducer timestamps at 4 feature frames per encoder frame), batch
  and chunk dynamic; ``T`` is the card's ``frames_per_step`` and ``decode_chunk_len`` its
  ``frames_advanced_per_step`` (the rest is look-ahead, recomputed by the next chunk);
- the frontend: the fbank sherpa-onnx computes with its default ``FeatureExtractorConfig``
  (:func:`stateport.zoo.lstm_transducer.sherpa_fbank_frontend`); any other frontend would be
  computed differently by every sherpa-onnx app, silently;
- the vocabulary: blank at id 0 (sherpa-onnx hard-codes it), no whitespace inside a token
  (``tokens.txt`` is whitespace-separated).

CTC models: see docs/sherpa-onnx.md (sherpa-onnx's online CTC types, and which contract a
stateport CTC export could meet).
"""

from __future__ import annotations

import os

from ...errors import UnsupportedError
from ...spec import ModelCard
from . import onnx_file
from .common import Artifact, ExportSettings

MODEL_TYPE = "lstm"
TOKENS_FILE = "tokens.txt"
GRAPH_KINDS = {"encoder": "transducer_encoder", "decoder": "transducer_decoder", "joiner": "transducer_joiner"}
SUBSAMPLING = 4
BLANK_ID = 0


def graphs(model) -> dict:
    """The graphs to write, ``name -> StreamingModule``; UnsupportedError saying why for a model that does not map."""
    from ...nn.protocol import MultiGraphModule

    name = getattr(model, "architecture", type(model).__name__)
    if not isinstance(model, MultiGraphModule):
        kind = getattr(getattr(model, "streaming", None), "output_kind", None)
        raise UnsupportedError(
            f"sherpa-onnx: {name!r} is one graph with output kind {kind!r}; this export writes sherpa-onnx's "
            "online transducer (encoder, stateless decoder, joiner: e.g. --arch lstm-transducer). A CTC model "
            "maps to none of sherpa-onnx's online CTC types as they are (see docs/sherpa-onnx.md)")
    found = model.graphs()
    kinds = {g: m.streaming.output_kind for g, m in found.items()}
    if "predictor" in found or "transducer_predictor" in kinds.values():
        raise UnsupportedError(
            f"sherpa-onnx: {name!r} has a predictor with its own recurrent state; sherpa-onnx's transducer decoder "
            "is stateless (it takes the last context_size tokens and has no state ports), so that state would "
            "be dropped. Use a transducer with a stateless decoder (--arch lstm-transducer)")
    if kinds != GRAPH_KINDS:
        raise UnsupportedError(f"sherpa-onnx: {name!r} has graphs {kinds}; a sherpa-onnx transducer is "
                               f"{GRAPH_KINDS}")
    vocabularies = {tuple(m.streaming.vocabulary) for m in found.values()}
    blanks = {m.streaming.blank_id for m in found.values()}
    if len(vocabularies) != 1 or len(blanks) != 1:
        raise UnsupportedError(f"sherpa-onnx: the graphs of {name!r} disagree on the vocabulary or blank id")
    (vocabulary,), (blank,) = vocabularies, blanks
    if blank != BLANK_ID:
        raise UnsupportedError(f"sherpa-onnx: blank must be token 0 (sherpa-onnx hard-codes it); {name!r} has "
                               f"blank_id {blank}")
    spaced = [t for t in vocabulary if not t or any(ch.isspace() for ch in t)]
    if spaced:
        raise UnsupportedError(f"sherpa-onnx: tokens.txt is whitespace-separated, so a token cannot be empty or "
                               f"contain whitespace; {name!r} has {spaced[:3]}")
    return found


def convert(model, settings: ExportSettings) -> Artifact:
    """The ONNX export of one graph plus the metadata sherpa-onnx reads from it."""
    settings.refuse("sherpa-onnx")
    if settings.static:
        raise UnsupportedError("sherpa-onnx: --static is not offered (sherpa-onnx batches streams: the batch axis "
                               "stays dynamic)")
    role = settings.provenance.get("graph")
    if role not in GRAPH_KINDS:
        raise UnsupportedError(f"sherpa-onnx: graph {role!r} is not one of {', '.join(GRAPH_KINDS)}")
    proto, card = onnx_file.to_onnx(model, settings)
    card.provenance.backend = "sherpa-onnx"
    # sherpa-onnx feeds the state inputs by position among the graph's *required* inputs; ONNX
    # Runtime does not list an input that has an initializer (our default state for an offline
    # call) as one, so the defaults go: the states become plain inputs.
    states = {s.name for s in card.states}
    kept = [t for t in proto.graph.initializer if t.name not in states]
    del proto.graph.initializer[:]
    proto.graph.initializer.extend(kept)
    entries = {"encoder": _encoder_metadata, "decoder": _decoder_metadata, "joiner": _joiner_metadata}[role](card)
    for key, value in entries.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, str(value)
    return Artifact(card, lambda path, card_to_write: onnx_file.save_onnx(proto, card_to_write, path),
                    notes=[f"sherpa-onnx {role} metadata: " + ", ".join(f"{k}={v}" for k, v in entries.items())])


def _refuse(card: ModelCard, why: str):
    raise UnsupportedError(f"sherpa-onnx: {card.name}: {why}")


def _encoder_metadata(card: ModelCard) -> dict:
    from ...runtime.frontend import FrontendConfig
    from ...zoo.lstm_transducer import sherpa_fbank_frontend

    st = card.streaming
    if len(card.inputs) != 1 or card.inputs[0].time_axis != 1 or card.inputs[0].dtype != "float32":
        _refuse(card, "the encoder must take one float input [N, T, features] (sherpa-onnx feeds fbank frames)")
    if not card.frontend:
        _refuse(card, "the encoder's card has no frontend: sherpa-onnx computes the features from audio itself")
    ours, theirs = FrontendConfig.from_dict(card.frontend).to_dict(), sherpa_fbank_frontend(
        FrontendConfig.from_dict(card.frontend).num_mel_bins)
    differ = {k: (ours[k], theirs[k]) for k in theirs if ours.get(k) != theirs[k]}
    if differ:
        _refuse(card, "the model was trained on features sherpa-onnx does not compute (field: ours vs "
                      "sherpa-onnx's): " + ", ".join(f"{k}: {a!r} vs {b!r}" for k, (a, b) in differ.items()))
    if st.subsampling != SUBSAMPLING:
        _refuse(card, f"sherpa-onnx's transducer places an encoder frame every {SUBSAMPLING} feature frames; "
                      f"this encoder subsamples by {st.subsampling}")
    states = card.states
    if (len(states) != 2 or any(s.dtype != "float32" or len(s.shape) != 3 or s.batch_axis != 1 for s in states)
            or states[0].shape[0] != states[1].shape[0]):
        _refuse(card, "sherpa-onnx's LSTM encoder carries exactly two states, h then c, each float [L, N, H] "
                      f"(batch on axis 1); this encoder has {[(s.name, s.shape) for s in states]}")
    h, c = states
    return {"model_type": MODEL_TYPE, "version": 1, "model_author": "stateport",
            "T": st.frames_per_step, "decode_chunk_len": st.frames_advanced_per_step,
            "num_encoder_layers": h.shape[0], "d_model": h.shape[2], "rnn_hidden_size": c.shape[2]}


def _decoder_metadata(card: ModelCard) -> dict:
    (port,) = card.inputs if len(card.inputs) == 1 else (None,)
    if (port is None or card.states or port.dtype != "int64" or port.time_axis is not None or len(port.shape) != 2
            or not isinstance(port.shape[1], int) or not port.value_range or port.value_range[0] > -1):
        _refuse(card, "the decoder must be stateless and take one int64 context [N, context_size] that accepts the "
                      "-1 ids sherpa-onnx puts before the first token")
    return {"vocab_size": len(card.output.vocabulary), "context_size": port.shape[1]}


def _joiner_metadata(card: ModelCard) -> dict:
    if len(card.inputs) != 2 or card.states or any(len(p.shape) != 2 for p in card.inputs):
        _refuse(card, "the joiner must take two vectors [N, D] (an encoder frame, a decoder output) and no state")
    return {"joiner_dim": card.inputs[0].shape[1]}


def folder_files(cards: dict) -> dict:
    """Files written beside the graphs, ``name -> text``: ``tokens.txt`` (``symbol id`` per line)."""
    vocabulary = cards["decoder"].output.vocabulary
    return {TOKENS_FILE: "".join(f"{token} {i}\n" for i, token in enumerate(vocabulary))}


def extra_file_names() -> tuple:
    return (TOKENS_FILE,)


# Reading, running and re-certifying the graphs is the ONNX backend's job: they are ONNX files.
read_card = onnx_file.read_card
write_card = onnx_file.write_card
make_runner = onnx_file.make_runner


def sherpa_paths(folder: str | os.PathLike) -> dict:
    """The keyword arguments of ``sherpa_onnx.OnlineRecognizer.from_transducer`` for an export folder."""
    folder = os.fspath(folder)
    return {"tokens": os.path.join(folder, TOKENS_FILE), "encoder": os.path.join(folder, "encoder.onnx"),
            "decoder": os.path.join(folder, "decoder.onnx"), "joiner": os.path.join(folder, "joiner.onnx"),
            "model_type": MODEL_TYPE}
