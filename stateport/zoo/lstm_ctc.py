"""``lstm-ctc``: unidirectional LSTM encoder + CTC head over log-mel frames (80 bins by default).

The simplest streaming recogniser: state is the LSTM's ``h`` and ``c`` per layer. With the
default ``subsampling=1`` any chunk length works (no look-ahead), so streaming equals
offline exactly. ``subsampling=s`` stacks ``s`` frames into one LSTM step (a stride-``s``
convolution with kernel ``s``: no state, no look-ahead), so chunks are multiples of ``s``.

Why stack: a lower frame rate (30 ms instead of 10 ms) is the usual choice for LSTM-CTC
models (Pundak & Sainath, "Lower Frame Rate Neural Network Acoustic Models", 2016): the
recurrence spans a digit in a third of the steps, and training and inference cost a third.
"""

from __future__ import annotations

from torch import nn

from ..errors import InvalidInputError
from ..nn import RunningMeanNorm, StreamingLSTM, StreamingModule
from ..nn.subsampling import StridedCausalConv1d
from .common import BLANK_ID, DIGIT_VOCABULARY, FeatureNorm, fbank_frontend
from .registry import register


@register("lstm-ctc", description="LSTM encoder + CTC head over 80-dim log-mel frames",
          sizes={"tiny": {"hidden_size": 32, "num_layers": 1},
                 "default": {"hidden_size": 192, "num_layers": 2}})
class LstmCtc(StreamingModule):
    """x [B, T, input_dim] log-mel -> logits [B, T / subsampling, V].

    State: ``encoder_h``/``encoder_c`` [L, B, H]; with ``online_cmn_frames`` also
    ``cmn_mean`` [B, input_dim] and ``cmn_count`` [B, 1] (float64, kept at end of speech).
    """

    input_name = "features"
    output_names = ("logits",)

    def __init__(self, *, hidden_size: int, num_layers: int, input_dim: int = 80,
                 vocabulary: list | None = None, frames_per_step: int = 16, dropout: float = 0.0,
                 high_freq_hz: float = 0.0, subsampling: int = 1,
                 online_cmn_frames: float = 0.0):
        super().__init__()
        if not isinstance(subsampling, int) or subsampling < 1:
            raise InvalidInputError(f"subsampling must be an int >= 1, got {subsampling!r}")
        self.vocabulary = list(vocabulary or DIGIT_VOCABULARY)
        self.input_dim = input_dim
        self.norm = FeatureNorm(input_dim)
        # online_cmn_frames > 0: subtract the running mean (prior worth that many frames).
        self.cmn = RunningMeanNorm(input_dim, online_cmn_frames) if online_cmn_frames > 0 else None
        # Stacked frames are projected to the LSTM's width (kernel == stride: no state).
        self.stack = (StridedCausalConv1d(input_dim, hidden_size, subsampling, stride=subsampling)
                      if subsampling > 1 else None)
        lstm_input = hidden_size if self.stack is not None else input_dim
        self.encoder = StreamingLSTM(lstm_input, hidden_size, num_layers, dropout=dropout)  # between layers, training only
        self.head = nn.Linear(hidden_size, len(self.vocabulary))
        s = self.streaming
        s.subsampling = s.frame_multiple = s.min_frames = subsampling
        s.frames_per_step = max(frames_per_step // subsampling, 1) * subsampling
        s.frontend = fbank_frontend(input_dim, high_freq_hz)
        s.output_kind, s.output_port = "ctc", "logits"
        s.vocabulary, s.blank_id = self.vocabulary, BLANK_ID

    def step(self, x, *state):
        x = self.norm(x)
        if self.cmn is not None:
            n = len(self.cmn.state_decls())  # states come in layer order: the normaliser's first
            x, *cmn_state = self.cmn.step(x, *state[:n])
            state = state[n:]
        h, c = state
        if self.stack is not None:
            (x,) = self.stack.step(x.transpose(1, 2))
            x = x.transpose(1, 2)
        y, h, c = self.encoder.step(x, h, c)
        if self.cmn is not None:
            return (self.head(y), *cmn_state, h, c)
        return self.head(y), h, c
