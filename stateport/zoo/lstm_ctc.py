"""``lstm-ctc``: unidirectional LSTM encoder + CTC head over 80-dim log-mel frames.

The simplest streaming recogniser: state is the LSTM's ``h`` and ``c`` per layer. Any chunk
length works (no subsampling, no look-ahead), so streaming equals offline exactly.
"""

from __future__ import annotations

from torch import nn

from ..nn import StreamingLSTM, StreamingModule
from .common import BLANK_ID, DIGIT_VOCABULARY, FeatureNorm, fbank_frontend
from .registry import register


@register("lstm-ctc", description="LSTM encoder + CTC head over 80-dim log-mel frames",
          sizes={"tiny": {"hidden_size": 32, "num_layers": 1},
                 "default": {"hidden_size": 192, "num_layers": 2}})
class LstmCtc(StreamingModule):
    """x [B, T, 80] log-mel -> logits [B, T, V]. State: ``encoder_h``/``encoder_c`` [L, B, H]."""

    input_name = "features"
    output_names = ("logits",)

    def __init__(self, *, hidden_size: int, num_layers: int, input_dim: int = 80,
                 vocabulary: list | None = None, frames_per_step: int = 16, dropout: float = 0.0):
        super().__init__()
        self.vocabulary = list(vocabulary or DIGIT_VOCABULARY)
        self.input_dim = input_dim
        self.norm = FeatureNorm(input_dim)
        self.encoder = StreamingLSTM(input_dim, hidden_size, num_layers, dropout=dropout)  # between layers, training only
        self.head = nn.Linear(hidden_size, len(self.vocabulary))
        s = self.streaming
        s.frames_per_step = frames_per_step
        s.frontend = fbank_frontend(input_dim)
        s.output_kind, s.output_port = "ctc", "logits"
        s.vocabulary, s.blank_id = self.vocabulary, BLANK_ID

    def step(self, x, h, c):
        y, h, c = self.encoder.step(self.norm(x), h, c)
        return self.head(y), h, c
