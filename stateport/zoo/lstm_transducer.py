"""``lstm-transducer``: icefall's LSTM transducer with a stateless decoder, in sherpa-onnx's layout.

::

    encoder  features [B, T, 80] -> FeatureNorm -> Conv2dSubsampling4 (4x, 7 frames look-ahead)
             -> LSTM -> Linear -> encoder_out [B, (T - 7) / 4, J]          state: LSTM h, c
    decoder  context [B, C] int64 (the last C tokens, -1 = none yet)
             -> Embedding (zero for -1) -> depthwise Conv1d over the C tokens -> ReLU
             -> Linear -> decoder_out [B, J]                                no state
    joiner   encoder_out [B, J], decoder_out [B, J] -> Linear(tanh(enc + dec)) -> logits [B, V]

It is the model family sherpa-onnx runs as ``model_type=lstm`` (icefall's
``lstm_transducer_stateless2``): the encoder's and decoder's projections into the joiner's space
are part of those graphs (icefall's ONNX export folds them in the same way), so the joiner is
one ``tanh`` and one linear layer per (frame, context) pair. The decoder is *stateless*: its
input is the last ``context_size`` emitted tokens, so a client keeps a short token history
instead of a recurrent state, and the graph must accept the ``-1`` ids sherpa-onnx puts in
front of the first token (the initial context is ``[-1, ..., -1, blank]``).

The encoder streams with overlapping chunks: a step takes ``T = chunk + 7`` frames, emits
``chunk / 4`` frames and advances by ``chunk`` (the card's ``frames_per_step`` /
``frames_advanced_per_step`` / ``lookahead_frames``), which is sherpa-onnx's ``T`` /
``decode_chunk_len``. Its frontend is the fbank sherpa-onnx computes with its default settings
(80 bins, 25/10 ms, povey window, dither 0, ``snip_edges`` false, 20 Hz to Nyquist - 400 Hz,
samples in [-1, 1]), so ``stateport export --backend sherpa-onnx`` can hand it over as is.

Greedy search (the runtime's :class:`stateport.runtime.decoders.TransducerSearch`, with the
rules sherpa-onnx applies to this family): at most one token per encoder frame, the initial
context above, ``<unk>`` scored as blank, the decoder re-run only after a token is emitted.

Random-weight initialisation (``LstmTransducer._init_untrained``; a checkpoint replaces it):
``init_gain`` and ``blank_bias`` are chosen so that an untrained model emits a mix of blanks and
several tokens that follows the audio, so a test of the decoding loop decides something on most
frames.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..nn import InputSpec, MultiGraphModule, StreamingLSTM, StreamingModule
from ..nn.subsampling import Conv2dSubsampling4
from ..spec import BATCH_DIM
from .common import BLANK_ID, DIGIT_VOCABULARY, FeatureNorm
from .common import output_contract as _output_contract
from .registry import register

UNK = "<unk>"  # sherpa-onnx scores this token as blank


def sherpa_fbank_frontend(num_mel_bins: int = 80) -> dict:
    """The card frontend sherpa-onnx computes with its default ``FeatureExtractorConfig``.

    kaldi-native-fbank, 16 kHz, 25 ms povey windows every 10 ms, dither 0, frames centred
    (``snip_edges`` false), mel filters from 20 Hz to Nyquist - 400 Hz, on samples in [-1, 1]
    (sherpa-onnx's ``normalize_samples=True``: no int16 scaling).
    """
    from ..runtime.frontend import FrontendConfig

    return FrontendConfig(kind="fbank", sample_rate_hz=16000, num_mel_bins=num_mel_bins, snip_edges=False,
                          low_freq_hz=20.0, high_freq_hz=-400.0, input_scale=1.0).to_dict()


class LstmTransducerEncoder(StreamingModule):
    """features [B, T, 80] -> encoder_out [B, (T - 7) / 4, J]. State: ``lstm_h``/``lstm_c`` [L, B, H]."""

    input_name = "features"
    output_names = ("encoder_out",)

    def __init__(self, *, input_dim: int, conv_channels: tuple, hidden_size: int, num_layers: int,
                 joiner_dim: int, vocabulary: list, chunk_frames: int):
        super().__init__()
        self.input_dim = input_dim
        self.norm = FeatureNorm(input_dim)
        self.subsampling = Conv2dSubsampling4(input_dim, hidden_size, tuple(conv_channels))
        self.lstm = StreamingLSTM(hidden_size, hidden_size, num_layers)
        self.proj = nn.Linear(hidden_size, joiner_dim)
        s = self.streaming
        look, factor = Conv2dSubsampling4.LOOKAHEAD_FRAMES, Conv2dSubsampling4.FACTOR
        s.lookahead_frames = look
        s.frame_multiple = s.subsampling = factor
        s.min_frames = factor + look
        s.frames_per_step = max(chunk_frames // factor, 1) * factor + look
        s.frontend = sherpa_fbank_frontend(input_dim)
        _output_contract(self, "transducer_encoder", "encoder_out", vocabulary)

    def step(self, x, h, c):
        y, h, c = self.lstm.step(self.subsampling(self.norm(x)), h, c)
        return self.proj(y), h, c


class StatelessDecoder(StreamingModule):
    """context [B, C] int64 -> decoder_out [B, J]. No state: the context is the last C tokens.

    A ``-1`` id contributes a zero embedding (the positions before the first token).
    """

    output_names = ("decoder_out",)
    time_axis = None

    def __init__(self, *, vocabulary: list, embedding_dim: int, context_size: int, joiner_dim: int):
        super().__init__()
        self.vocab_size, self.context_size = len(vocabulary), context_size
        self.embedding = nn.Embedding(self.vocab_size, embedding_dim)
        # icefall's context conv: depthwise over the C tokens, no bias (none with C = 1).
        self.conv = (nn.Conv1d(embedding_dim, embedding_dim, context_size, groups=embedding_dim, bias=False)
                     if context_size > 1 else None)
        self.proj = nn.Linear(embedding_dim, joiner_dim)
        self.streaming.frames_per_step = 0  # one context per call
        _output_contract(self, "transducer_decoder", "decoder_out", vocabulary)

    def input_specs(self):
        return [InputSpec("context", (BATCH_DIM, self.context_size), torch.int64,
                          value_range=(-1, self.vocab_size),
                          description="the last context_size token ids, oldest first; -1 where there is none yet")]

    def step(self, context):
        e = self.embedding(context.clamp(min=0)) * (context >= 0).unsqueeze(-1).to(torch.float32)  # [B, C, E]
        if self.conv is not None:
            e = self.conv(e.permute(0, 2, 1)).permute(0, 2, 1)                                       # [B, 1, E]
        return (self.proj(torch.relu(e[:, -1])),)

    def forward(self, context):
        """One context [B, C], or a sequence of them [B, N, C] -> [B, N, J] (N calls at once)."""
        if context.dim() == 2:
            return self.step(context)
        (y,) = self.step(context.reshape(-1, context.shape[-1]))
        return (y.reshape(context.shape[0], context.shape[1], -1),)


class Joiner(StreamingModule):
    """encoder_out [B, J], decoder_out [B, J] -> logits [B, V]: ``Linear(tanh(enc + dec))``. No state.

    ``forward`` also takes sequences ([B, N, J] each), scoring N pairs at once.
    """

    output_names = ("logits",)
    time_axis = None

    def __init__(self, *, vocabulary: list, joiner_dim: int):
        super().__init__()
        self.joiner_dim = joiner_dim
        self.out = nn.Linear(joiner_dim, len(vocabulary))
        self.streaming.frames_per_step = 0
        _output_contract(self, "transducer_joiner", "logits", vocabulary)

    def input_specs(self):
        return [InputSpec("encoder_out", (BATCH_DIM, self.joiner_dim), description="one encoder frame"),
                InputSpec("decoder_out", (BATCH_DIM, self.joiner_dim), description="the decoder output")]

    def step(self, encoder_out, decoder_out):
        return (self.out(torch.tanh(encoder_out + decoder_out)),)

    def forward(self, encoder_out, decoder_out):
        return self.step(encoder_out, decoder_out)


@register("lstm-transducer",
          description="LSTM transducer with a stateless decoder (icefall / sherpa-onnx model_type=lstm): encoder, "
                      "decoder and joiner exported as three graphs",
          sizes={"tiny": {"conv_channels": (4, 8, 8), "hidden_size": 48, "num_layers": 1, "joiner_dim": 48,
                          "embedding_dim": 32, "context_size": 2, "init_gain": 2.0, "blank_bias": 0.0},
                 "small": {"conv_channels": (8, 16, 32), "hidden_size": 128, "num_layers": 2, "joiner_dim": 128,
                           "embedding_dim": 64, "context_size": 2, "init_gain": 2.0, "blank_bias": 1.0},
                 "default": {"conv_channels": (8, 32, 64), "hidden_size": 320, "num_layers": 2, "joiner_dim": 320,
                             "embedding_dim": 320, "context_size": 2, "init_gain": 2.0, "blank_bias": 1.0}})
class LstmTransducer(MultiGraphModule):
    """The whole transducer; ``graphs()`` are its encoder, decoder and joiner (see the module docstring).

    ``chunk_frames``: the frames a step advances over (a multiple of 4); a step takes 7 more.
    """

    def __init__(self, *, conv_channels: tuple, hidden_size: int, num_layers: int, joiner_dim: int,
                 embedding_dim: int, context_size: int = 2, init_gain: float = 1.0, blank_bias: float = 0.0,
                 input_dim: int = 80, vocabulary: list | None = None, chunk_frames: int = 32):
        super().__init__()
        self.vocabulary = list(vocabulary or DIGIT_VOCABULARY)
        self.blank_id = BLANK_ID
        self.encoder = LstmTransducerEncoder(input_dim=input_dim, conv_channels=conv_channels,
                                             hidden_size=hidden_size, num_layers=num_layers, joiner_dim=joiner_dim,
                                             vocabulary=self.vocabulary, chunk_frames=chunk_frames)
        self.decoder = StatelessDecoder(vocabulary=self.vocabulary, embedding_dim=embedding_dim,
                                        context_size=context_size, joiner_dim=joiner_dim)
        self.joiner = Joiner(vocabulary=self.vocabulary, joiner_dim=joiner_dim)
        with torch.no_grad():  # an init that decodes like a model (see the module docstring)
            self._init_untrained(init_gain, blank_bias)

    def _init_untrained(self, gain: float, blank_bias: float) -> None:
        """Weights under which an untrained model's greedy output follows the audio.

        With torch's default init the LSTM sees an almost constant input (log-mel around -8 with
        a spread of 5, through convolutions that shrink it), its output barely moves and the
        joiner's choice depends on the decoder alone. So: the feature normaliser gets those
        typical statistics (a checkpoint replaces them), the convolutions He-normal init, the
        LSTM's input weights and the three projections LeCun-normal times ``gain`` (the LSTM's
        1.5 times that), and ``blank_bias`` on the blank logit.
        """
        enc = self.encoder
        enc.norm.mean.fill_(-8.0)
        enc.norm.std.fill_(5.0)
        for conv in enc.subsampling.conv:
            if isinstance(conv, nn.Conv2d):
                nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
                conv.bias.zero_()
        out = enc.subsampling.out
        out.weight.normal_(0.0, 1.0 / math.sqrt(out.in_features))
        out.bias.zero_()
        for name, weight in enc.lstm.lstm.named_parameters():
            if name.startswith("weight_ih"):
                weight.normal_(0.0, 1.5 * gain / math.sqrt(weight.shape[1]))
        for linear in (enc.proj, self.decoder.proj, self.joiner.out):
            linear.weight.normal_(0.0, gain / math.sqrt(linear.in_features))
        self.joiner.out.bias[BLANK_ID] += blank_bias

    def graphs(self) -> dict:
        return {"encoder": self.encoder, "decoder": self.decoder, "joiner": self.joiner}

    @torch.no_grad()
    def greedy_decode(self, features: torch.Tensor) -> list[int]:
        """Torch reference of greedy search over one utterance ``features`` [1, T, 80] -> token ids.

        sherpa-onnx's rules, written out plainly (no code shared with the runtime, so the two check
        each other): encoder over the whole utterance; context ``[-1, ..., -1, blank]``; for each
        frame one joiner call, and a non-blank best (``<unk>`` counts as blank) is emitted, shifts
        into the context and re-runs the decoder; then the next frame.
        """
        (enc,) = self.encoder(features)
        unk = self.vocabulary.index(UNK) if UNK in self.vocabulary else None
        context = [-1] * (self.decoder.context_size - 1) + [self.blank_id]
        (dec,) = self.decoder.step(torch.tensor([context]))
        tokens = []
        for t in range(enc.shape[1]):
            (logits,) = self.joiner.step(enc[:, t], dec)
            token = int(logits[0].argmax())
            if token in (self.blank_id, unk):
                continue
            tokens.append(token)
            context = context[1:] + [token]
            (dec,) = self.decoder.step(torch.tensor([context]))
        return tokens
