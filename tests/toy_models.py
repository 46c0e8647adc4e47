"""Small streaming models built in code, one per kind of state, for the tests."""

from __future__ import annotations

import torch
from torch import nn

from stateport.nn import CausalConv1d, StreamingGRU, StreamingLSTM, StreamingLSTMCell, StreamingModule


class _Base(StreamingModule):
    input_name = "features"
    output_names = ("logits",)

    def __init__(self, input_dim: int = 12, classes: int = 5, frames_per_step: int = 8):
        super().__init__()
        self.input_dim = input_dim
        self.streaming.frames_per_step = frames_per_step
        self.streaming.output_kind = "ctc"
        self.streaming.vocabulary = ["<blank>"] + [f"t{i}" for i in range(1, classes)]
        self.streaming.blank_id = 0


class LstmModel(_Base):
    architecture = "toy-lstm"

    def __init__(self, hidden: int = 24, layers: int = 2, **kw):
        super().__init__(**kw)
        self.rnn = StreamingLSTM(self.input_dim, hidden, layers)
        self.head = nn.Linear(hidden, len(self.streaming.vocabulary))

    def step(self, x, h, c):
        y, h, c = self.rnn.step(x, h, c)
        return self.head(y), h, c


class GruModel(_Base):
    architecture = "toy-gru"

    def __init__(self, hidden: int = 24, layers: int = 2, **kw):
        super().__init__(**kw)
        self.rnn = StreamingGRU(self.input_dim, hidden, layers)
        self.head = nn.Linear(hidden, len(self.streaming.vocabulary))

    def step(self, x, h):
        y, h = self.rnn.step(x, h)
        return self.head(y), h


class LstmCellModel(_Base):
    architecture = "toy-lstmcell"

    def __init__(self, hidden: int = 24, **kw):
        super().__init__(**kw)
        self.cell = StreamingLSTMCell(self.input_dim, hidden)
        self.head = nn.Linear(hidden, len(self.streaming.vocabulary))

    def step(self, x, h, c):
        y, h, c = self.cell.step(x, h, c)
        return self.head(y), h, c


class CausalConvModel(_Base):
    """Two dilated causal convs with a residual: two left-padding buffers found automatically."""

    architecture = "toy-causal-conv"

    def __init__(self, channels: int = 16, **kw):
        super().__init__(**kw)
        self.conv1 = CausalConv1d(self.input_dim, channels, 3, dilation=1)
        self.conv2 = CausalConv1d(channels, channels, 3, dilation=2)
        self.point = CausalConv1d(channels, len(self.streaming.vocabulary), 1)  # kernel 1: no state

    def step(self, x, b1, b2):
        z = x.transpose(1, 2)
        y1, b1 = self.conv1.step(z, b1)
        y2, b2 = self.conv2.step(torch.relu(y1), b2)
        (y,) = self.point.step(torch.relu(y2) + y1)
        return y.transpose(1, 2), b1, b2


class MutatingModel(_Base):
    """Keeps a frame counter in a buffer without declaring it: the export must refuse it."""

    architecture = "toy-mutating"

    def __init__(self, **kw):
        super().__init__(**kw)
        self.rnn = StreamingGRU(self.input_dim, 8)
        self.head = nn.Linear(8, len(self.streaming.vocabulary))
        self.register_buffer("frames_seen", torch.zeros(()))

    def step(self, x, h):
        self.frames_seen += x.shape[1]
        y, h = self.rnn.step(x, h)
        return self.head(y), h


ALL_KINDS = {"lstm": LstmModel, "gru": GruModel, "lstmcell": LstmCellModel, "causal-conv": CausalConvModel}


def build(kind: str, seed: int = 0) -> StreamingModule:
    torch.manual_seed(seed)
    return ALL_KINDS[kind]().eval()


class Counters(nn.Module):
    """State on ``self`` of two non-float kinds, for declare_step: a frame counter kept once for the whole
    batch (batch-uniform int64) and a per-stream 'has been loud' latch (bool). Features [B, T, features]."""

    def __init__(self, features: int = 8):
        super().__init__()
        self.register_buffer("frames", torch.zeros((), dtype=torch.long))
        self.register_buffer("started", torch.zeros(1, dtype=torch.bool))
        self.proj = nn.Linear(features, features)

    def forward(self, x):
        t = self.frames + torch.arange(x.shape[1])
        on = self.started.unsqueeze(1) | ((x.abs().amax(-1) > 2.5).long().cumsum(1) > 0)
        y = self.proj(x) + (t.to(x.dtype) / 1000).unsqueeze(-1) + on.unsqueeze(-1).to(x.dtype)
        self.frames = self.frames + x.shape[1]
        self.started = on[:, -1]
        return y
