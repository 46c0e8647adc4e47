"""A GRU that keeps its recurrent state in a batch-1 buffer, the way many people write one.

The model code (``StatefulGRU``) is what users arrive with: the hidden state lives on ``self``
(``register_buffer('h', zeros(1, 1, H))``), ``forward`` takes only the audio chunk and
reassigns ``self.h`` after each call, and ``reset()`` starts a new stream. Nothing in it knows
about stateport. The declaration below names the input and the output; stateport finds the
buffer, lifts it to the state port pair ``h_in -> h_out`` (batch axis 1, found by probing)
and restores the module after every call.

    stateport export --module examples/third_party/gru_buffer_state.py:model -o gru.onnx
"""

import torch
import torch.nn as nn


class StatefulGRU(nn.Module):
    def __init__(self, n_mels=40, hidden=64, n_classes=12):
        super().__init__()
        self.gru = nn.GRU(n_mels, hidden, batch_first=True)
        self.head = nn.Linear(hidden, n_classes)
        self.register_buffer("h", torch.zeros(1, 1, hidden))

    def reset(self):
        self.h.zero_()

    def forward(self, x):
        y, h = self.gru(x, self.h)
        self.h = h.detach()
        return self.head(y)


# -- the declaration (2 lines) -------------------------------------------------------------
from stateport.nn import declare_step  # noqa: E402

model = declare_step(StatefulGRU(), input=("features", ("batch", "T", 40)), outputs=["logits"])
