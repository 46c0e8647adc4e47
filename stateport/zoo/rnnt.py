"""``rnnt``: an LSTM transducer (RNN-T) exported as three graphs: encoder, predictor, joiner.

::

    encoder    features [B, T, 80] -> FeatureNorm -> stack S frames [B, T/S, S*80]
               -> LSTM -> Linear -> encoder_frames [B, T/S, D_enc]      state: LSTM h, c
    predictor  tokens [B, U] int64 -> Embedding -> LSTM -> prediction [B, U, D_pred]
                                                                        state: LSTM h, c
    joiner     encoder_frame [B, D_enc], prediction [B, D_pred]
               -> tanh(W_e enc + W_p pred) -> Linear -> logits [B, V]   no state

The decoding loop (greedy search, :class:`stateport.runtime.decoders.TransducerGreedyDecoder`)
drives the graphs separately: the encoder streams over audio; for each encoder frame the joiner
scores (frame, prediction) and, while the best class is not blank, the token is emitted and the
predictor advances on it, carrying its own LSTM state. So they are three graphs with three cards
(output kinds ``transducer_encoder`` / ``transducer_predictor`` / ``transducer_joiner``, each
with the vocabulary and blank id). Port names line up across graphs: the encoder's output
``encoder_frames`` gives the joiner's ``encoder_frame`` one frame at a time, and the predictor's
``prediction`` is the joiner's ``prediction``. The predictor starts from blank (the
start-of-sequence context, as in icefall) and its token axis ``U`` is dynamic (1 in the loop).

Frame stacking (``stack_frames`` S) subsamples without state: a chunk must be a multiple of S
frames (``frame_multiple``).

Random-weight initialisation (a checkpoint replaces it): ``init_gain`` draws the encoder
projection and the joiner's linear layers LeCun-normal times the gain, and ``blank_bias`` is
added to the blank logit. With torch's default uniform init the joiner's logits barely depend on
the encoder frame, so a random model emits either nothing or the same token on every frame;
with these, the random tiny model emits a mix of blanks and many different tokens that follow
the audio, so tests of the decoding loop decide something on every frame.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..nn import InputSpec, MultiGraphModule, StreamingLSTM, StreamingModule
from ..spec import BATCH_DIM
from .common import BLANK_ID, DIGIT_VOCABULARY, FeatureNorm, fbank_frontend
from .common import output_contract as _output_contract
from .registry import register

TOKEN_DIM = "U"  # the predictor's time axis counts tokens


class TransducerEncoder(StreamingModule):
    """features [B, T, 80] -> encoder_frames [B, T / S, D_enc]. State: ``lstm_h``/``lstm_c`` [L, B, H]."""

    input_name = "features"
    output_names = ("encoder_frames",)

    def __init__(self, *, input_dim: int, stack_frames: int, hidden_size: int, num_layers: int, output_dim: int,
                 vocabulary: list, frames_per_step: int):
        super().__init__()
        self.input_dim = input_dim
        self.stack_frames = stack_frames
        self.norm = FeatureNorm(input_dim)
        self.lstm = StreamingLSTM(stack_frames * input_dim, hidden_size, num_layers)
        self.proj = nn.Linear(hidden_size, output_dim)
        s = self.streaming
        s.frames_per_step = frames_per_step
        s.frame_multiple = s.min_frames = stack_frames
        s.subsampling = stack_frames
        s.frontend = fbank_frontend(input_dim)
        _output_contract(self, "transducer_encoder", "encoder_frames", vocabulary)

    def step(self, x, h, c):
        x = self.norm(x)
        # [B, T, F] -> [B, T / S, S * F]: S consecutive frames side by side (no state needed).
        stacked = x.reshape(x.shape[0], -1, self.stack_frames * self.input_dim)
        y, h, c = self.lstm.step(stacked, h, c)
        return self.proj(y), h, c


class TransducerPredictor(StreamingModule):
    """tokens [B, U] int64 -> prediction [B, U, D_pred]. State: ``lstm_h``/``lstm_c`` [1, B, H]."""

    output_names = ("prediction",)

    def __init__(self, *, vocabulary: list, embedding_dim: int, hidden_size: int):
        super().__init__()
        self.vocab_size = len(vocabulary)
        self.embedding = nn.Embedding(self.vocab_size, embedding_dim)
        self.lstm = StreamingLSTM(embedding_dim, hidden_size, 1)
        s = self.streaming
        s.frames_per_step = 1  # one token per step in the greedy loop; any U works
        _output_contract(self, "transducer_predictor", "prediction", vocabulary)

    def input_specs(self):
        return [InputSpec("tokens", (BATCH_DIM, TOKEN_DIM), torch.int64, time_axis=1,
                          value_range=(0, self.vocab_size),
                          description="token ids the predictor advances on (blank first, as start context)")]

    def step(self, tokens, h, c):
        y, h, c = self.lstm.step(self.embedding(tokens), h, c)
        return y, h, c


class TransducerJoiner(StreamingModule):
    """encoder_frame [B, D_enc], prediction [B, D_pred] -> logits [B, V]. No state.

    ``forward`` also takes sequences ([B, N, D] each), scoring N pairs at once.
    """

    output_names = ("logits",)
    time_axis = None

    def __init__(self, *, vocabulary: list, encoder_dim: int, prediction_dim: int, joiner_dim: int):
        super().__init__()
        self.encoder_dim, self.prediction_dim = encoder_dim, prediction_dim
        self.encoder_proj = nn.Linear(encoder_dim, joiner_dim)
        self.prediction_proj = nn.Linear(prediction_dim, joiner_dim)
        self.out = nn.Linear(joiner_dim, len(vocabulary))
        self.streaming.frames_per_step = 0  # frame-wise: one (frame, prediction) pair per call
        _output_contract(self, "transducer_joiner", "logits", vocabulary)

    def input_specs(self):
        return [InputSpec("encoder_frame", (BATCH_DIM, self.encoder_dim), description="one encoder frame"),
                InputSpec("prediction", (BATCH_DIM, self.prediction_dim), description="the predictor output")]

    def step(self, encoder_frame, prediction):
        return (self.out(torch.tanh(self.encoder_proj(encoder_frame) + self.prediction_proj(prediction))),)

    def forward(self, encoder_frame, prediction):
        return self.step(encoder_frame, prediction)


@register("rnnt", description="LSTM transducer (RNN-T): encoder, predictor and joiner exported as three graphs",
          sizes={"tiny": {"stack_frames": 2, "encoder_hidden_size": 32, "encoder_layers": 1, "encoder_dim": 32,
                          "embedding_dim": 16, "predictor_hidden_size": 32, "joiner_dim": 32, "init_gain": 2.0,
                          "blank_bias": 2.0},
                 "default": {"stack_frames": 4, "encoder_hidden_size": 256, "encoder_layers": 2, "encoder_dim": 256,
                             "embedding_dim": 128, "predictor_hidden_size": 256, "joiner_dim": 256,
                             "init_gain": 2.0, "blank_bias": 2.0}})
class Transducer(MultiGraphModule):
    """The whole transducer; ``graphs()`` are its encoder, predictor and joiner (see the module docstring)."""

    def __init__(self, *, stack_frames: int, encoder_hidden_size: int, encoder_layers: int, encoder_dim: int,
                 embedding_dim: int, predictor_hidden_size: int, joiner_dim: int, init_gain: float = 1.0,
                 blank_bias: float = 0.0, input_dim: int = 80, vocabulary: list | None = None,
                 frames_per_step: int = 16):
        super().__init__()
        self.vocabulary = list(vocabulary or DIGIT_VOCABULARY)
        self.blank_id = BLANK_ID
        frames_per_step += (-frames_per_step) % stack_frames  # a whole number of stacks
        self.encoder = TransducerEncoder(input_dim=input_dim, stack_frames=stack_frames,
                                         hidden_size=encoder_hidden_size, num_layers=encoder_layers,
                                         output_dim=encoder_dim, vocabulary=self.vocabulary,
                                         frames_per_step=frames_per_step)
        self.predictor = TransducerPredictor(vocabulary=self.vocabulary, embedding_dim=embedding_dim,
                                             hidden_size=predictor_hidden_size)
        self.joiner = TransducerJoiner(vocabulary=self.vocabulary, encoder_dim=encoder_dim,
                                       prediction_dim=predictor_hidden_size, joiner_dim=joiner_dim)
        with torch.no_grad():  # see the module docstring: an init that decodes like a model
            for linear in (self.encoder.proj, self.joiner.encoder_proj, self.joiner.prediction_proj, self.joiner.out):
                linear.weight.normal_(0.0, init_gain / math.sqrt(linear.in_features))
            self.joiner.out.bias[BLANK_ID] += blank_bias

    def graphs(self) -> dict:
        return {"encoder": self.encoder, "predictor": self.predictor, "joiner": self.joiner}

    @torch.no_grad()
    def greedy_decode(self, features: torch.Tensor, *, max_symbols_per_frame: int = 3) -> list[int]:
        """Torch reference of greedy search over one utterance ``features`` [1, T, 80] -> token ids.

        Written out plainly (no shared code with the runtime's decoder) so that the two can check
        each other: encoder over the whole utterance, predictor primed with blank, for each frame
        at most ``max_symbols_per_frame`` non-blank tokens.
        """
        (enc,) = self.encoder(features)
        state = self.predictor.init_state(1)
        pred, *state = self.predictor.step(torch.tensor([[self.blank_id]]), *state)
        tokens = []
        for t in range(enc.shape[1]):
            for _ in range(max_symbols_per_frame):
                (logits,) = self.joiner.step(enc[:, t], pred[:, 0])
                token = int(logits[0].argmax())
                if token == self.blank_id:
                    break
                tokens.append(token)
                pred, *state = self.predictor.step(torch.tensor([[token]]), *state)
        return tokens
