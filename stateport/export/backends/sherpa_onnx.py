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

A CTC model (one graph, output kind ``ctc``) is written in the contract of sherpa-onnx's
online NeMo CTC model (``OnlineRecognizer.from_nemo_ctc``), the one online CTC type whose state
is opaque to the runtime (:class:`NemoCtcLayout`)::

    DIR/model.onnx     audio_signal [N, 80, T], length [N] int64, cache_last_channel [N, 1, 1, K],
                       cache_last_time [N, 1, 1, 1], cache_last_channel_len [N] int64
                       -> logprobs [N, T', V], frame_index [N, T'], the three caches
                       metadata window_size, chunk_shift, subsampling_factor, vocab_size,
                       cache_last_channel_dim1..3, cache_last_time_dim1..3      (+ the card)
    DIR/tokens.txt

sherpa-onnx zero-fills the caches, stacks them on axis 0 and feeds them back: the model's own
states (each zero-initialised) travel packed in ``cache_last_channel``. It computes NeMo's
features for this type (:func:`sherpa_nemo_fbank`: hann window, Slaney mel filters 0 Hz to
Nyquist, no DC removal), so the model must have been trained on those; the zipformer2 and WeNet
CTC types fix their state layout (per-layer attention caches sherpa-onnx builds and masks
itself), which an arbitrary streaming model cannot meet honestly (docs/sherpa-onnx.md).
"""

from __future__ import annotations

import dataclasses
import os

import torch

from ...errors import UnsupportedError
from ...nn import InputSpec, MultiGraphModule, StateDecl, StreamingModule
from ...runtime.frontend import FrontendConfig
from ...spec import BATCH_DIM, TIME_DIM, ModelCard
from ...zoo.lstm_transducer import sherpa_fbank_frontend
from . import onnx_file
from .common import Artifact, ExportSettings

MODEL_TYPE = "lstm"
TOKENS_FILE = "tokens.txt"
CTC_BLANK_NAMES = ("<blk>", "<blank>", "<eps>")  # sherpa-onnx's CTC decoder finds the blank by one of these
GRAPH_KINDS = {"encoder": "transducer_encoder", "decoder": "transducer_decoder", "joiner": "transducer_joiner"}
SUBSAMPLING = 4
BLANK_ID = 0


def graphs(model) -> dict:
    """The graphs to write, ``name -> StreamingModule``; UnsupportedError saying why for a model that does not map."""
    name = getattr(model, "architecture", type(model).__name__)
    if not isinstance(model, MultiGraphModule):
        kind = getattr(getattr(model, "streaming", None), "output_kind", None)
        if kind == "ctc":
            return {"model": NemoCtcLayout(model)}
        raise UnsupportedError(
            f"sherpa-onnx: {name!r} is one graph with output kind {kind!r}; sherpa-onnx runs online transducers "
            "(encoder, stateless decoder, joiner: e.g. --arch lstm-transducer) and CTC models")
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
    if role not in METADATA:
        raise UnsupportedError(f"sherpa-onnx: graph {role!r} is not one of {', '.join(METADATA)}")
    proto, card = onnx_file.to_onnx(model, settings)
    card.provenance.backend = "sherpa-onnx"
    # sherpa-onnx feeds the state inputs by position among the graph's *required* inputs; ONNX
    # Runtime does not list an input that has an initializer (our default state for an offline
    # call) as one, so the defaults go: the states become plain inputs.
    states = {s.name for s in card.states}
    kept = [t for t in proto.graph.initializer if t.name not in states]
    del proto.graph.initializer[:]
    proto.graph.initializer.extend(kept)
    entries = METADATA[role](card)
    for key, value in entries.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, str(value)
    return Artifact(card, lambda path, card_to_write: onnx_file.save_onnx(proto, card_to_write, path),
                    notes=[f"sherpa-onnx {role} metadata: " + ", ".join(f"{k}={v}" for k, v in entries.items())])


def _refuse(card: ModelCard, why: str):
    raise UnsupportedError(f"sherpa-onnx: {card.name}: {why}")


def _check_frontend(card: ModelCard, make_theirs, what: str) -> None:
    """The card's frontend must be the one sherpa-onnx computes for this model type (``make_theirs(bins)``)."""
    if not card.frontend:
        _refuse(card, "the card has no frontend: sherpa-onnx computes the features from audio itself")
    ours = FrontendConfig.from_dict(card.frontend).to_dict()
    theirs = make_theirs(ours["num_mel_bins"])
    differ = {k: (ours[k], theirs[k]) for k in theirs if ours.get(k) != theirs[k]}
    if differ:
        _refuse(card, f"the model was trained on features sherpa-onnx does not compute for {what} (field: ours vs "
                      "sherpa-onnx's): " + ", ".join(f"{k}: {a!r} vs {b!r}" for k, (a, b) in differ.items()))


def _encoder_metadata(card: ModelCard) -> dict:
    st = card.streaming
    if len(card.inputs) != 1 or card.inputs[0].time_axis != 1 or card.inputs[0].dtype != "float32":
        _refuse(card, "the encoder must take one float input [N, T, features] (sherpa-onnx feeds fbank frames)")
    _check_frontend(card, sherpa_fbank_frontend, "a transducer")
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


def _ctc_metadata(card: ModelCard) -> dict:
    _check_frontend(card, sherpa_nemo_fbank, "NeMo CTC models")
    st, out = card.streaming, card.output
    if out.vocabulary[out.blank_id] not in CTC_BLANK_NAMES:
        _refuse(card, f"sherpa-onnx's CTC decoder finds the blank by its name in tokens.txt ({', '.join(CTC_BLANK_NAMES)}); "
                      f"this blank is {out.vocabulary[out.blank_id]!r}")
    channel, time = (s.shape[1:] for s in card.states[:2])
    return {"model_type": "nemo_ctc", "model_author": "stateport", "window_size": st.frames_per_step,
            "chunk_shift": st.frames_advanced_per_step, "subsampling_factor": st.subsampling,
            "vocab_size": len(out.vocabulary),
            **{f"cache_last_channel_dim{i + 1}": d for i, d in enumerate(channel)},
            **{f"cache_last_time_dim{i + 1}": d for i, d in enumerate(time)}}


METADATA = {"encoder": _encoder_metadata, "decoder": _decoder_metadata, "joiner": _joiner_metadata,
            "model": _ctc_metadata}


def folder_files(cards: dict) -> dict:
    """Files written beside the graphs, ``name -> text``: ``tokens.txt`` (``symbol id`` per line)."""
    vocabulary = next(iter(cards.values())).output.vocabulary
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


# ---------------------------------------------------------------------- CTC: the NeMo CTC contract
def sherpa_nemo_fbank(num_mel_bins: int = 80) -> dict:
    """The card frontend sherpa-onnx computes for an online NeMo CTC model.

    Measured with sherpa-onnx 2.0.1 (a probe graph that returns its input features as tokens):
    kaldi-native-fbank with a periodic hann window, Slaney mel filters from 0 Hz to Nyquist, no
    DC removal, pre-emphasis 0.97, dither 0, frames centred, samples in [-1, 1] (max |diff| to
    this configuration 0.002, the probe's resolution; the povey window differs by 0.3).
    """
    return FrontendConfig(kind="fbank", sample_rate_hz=16000, num_mel_bins=num_mel_bins, window="hann-periodic",
                          mel_filters="slaney", low_freq_hz=0.0, high_freq_hz=0.0, remove_dc_offset=False,
                          snip_edges=False, input_scale=1.0).to_dict()


class NemoCtcLayout(StreamingModule):
    """A CTC streaming model behind sherpa-onnx's online NeMo CTC ports (see the module docstring).

    ``audio_signal [N, F, T]`` (features channel-first, as sherpa-onnx transposes them) and
    ``length [N]`` (the chunk's frame count) in; ``logprobs [N, T', V]`` (log-softmax of the
    model's scores: the same argmax) and ``frame_index [N, T']`` (each row's output frame in
    the stream) out. sherpa-onnx drops the second output whatever it is (NeMo's
    ``encoded_lengths``); a per-frame one keeps it comparable between streaming and offline in
    the parity proof. The model's states, each moved batch-first and flattened, are packed side
    by side in ``cache_last_channel [N, 1, 1, K]``; ``cache_last_time`` is one unused float and
    ``cache_last_channel_len`` counts output frames (sherpa-onnx carries both).
    """

    output_names = ("logprobs", "frame_index")

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.architecture = getattr(model, "architecture", "custom")
        specs = model.input_specs()
        if len(specs) != 1 or specs[0].time_axis != 1 or specs[0].dtype != torch.float32 or len(specs[0].shape) != 3:
            raise UnsupportedError(f"sherpa-onnx: {self.architecture!r} must take one float input [N, T, F] "
                                   "(sherpa-onnx's NeMo CTC feeds features and the chunk length, nothing else)")
        self.input_dim = int(specs[0].shape[2])
        self._decls = model.state_decls()
        bad = [d.name for d in self._decls if d.dtype != torch.float32 or d.init != 0.0 or d.batch_uniform
               or d.valid_length_state or d.grow_axis is not None]
        if bad:
            raise UnsupportedError(
                f"sherpa-onnx: the states {bad} of {self.architecture!r} are not plain zero-initialised float "
                "tensors; sherpa-onnx zero-fills the NeMo caches and knows nothing else about them")
        self._sizes = [int(torch.Size(d.concrete_shape(1)).numel()) for d in self._decls]
        self.cache_floats = max(sum(self._sizes), 1)
        self.streaming = dataclasses.replace(model.streaming, output_port="logprobs")

    def input_specs(self):
        return [InputSpec("audio_signal", (BATCH_DIM, self.input_dim, TIME_DIM), time_axis=2,
                          description="feature frames, channel-first"),
                InputSpec("length", (BATCH_DIM,), torch.int64, side_role="chunk_length")]

    def state_decls(self):
        return [StateDecl("cache_last_channel", (BATCH_DIM, 1, 1, self.cache_floats),
                          description="the model's states, each batch-first and flattened, side by side"),
                StateDecl("cache_last_time", (BATCH_DIM, 1, 1, 1), description="unused (sherpa-onnx carries it)"),
                StateDecl("cache_last_channel_len", (BATCH_DIM,), dtype=torch.int64,
                          description="output frames so far")]

    def step(self, audio_signal, length, channel, time, frames):
        batch = audio_signal.shape[0]
        states, offset = [], 0
        for decl, size in zip(self._decls, self._sizes):
            flat = channel[:, 0, 0, offset:offset + size]
            offset += size
            shape = [d for d in decl.concrete_shape(1)]
            shape.pop(decl.batch_axis)
            states.append(flat.reshape(batch, *shape).movedim(0, decl.batch_axis))
        logits, *new = self.model.step(audio_signal.transpose(1, 2), *states)
        packed = [s.movedim(decl.batch_axis, 0).reshape(batch, -1) for s, decl in zip(new, self._decls)]
        if not packed:
            packed = [channel[:, 0, 0, :1]]
        steps = torch.arange(logits.shape[1], dtype=torch.int64, device=logits.device)
        index = frames[:, None] + steps[None, :]
        # sherpa-onnx feeds ``length`` by position: it must stay a port of the graph, so it is used
        # (times zero: the model's chunk is what the frames are) instead of being pruned by the exporter.
        frames = frames + logits.shape[1] + length * 0
        return (torch.log_softmax(logits, dim=-1), index, torch.cat(packed, dim=1).reshape(batch, 1, 1, -1), time,
                frames)
