"""A dilated causal convolution stack (TCN style) that streams with a list of states, one per layer.

The model code (``CausalConvStack``) is written the way such stacks usually are for streaming:
``forward(x, states) -> (y, new_states)`` where ``states`` is a Python list holding, for each
layer, the last ``(kernel - 1) * dilation`` frames of that layer's input, and
``initial_states(batch)`` makes a fresh list. Nothing in it knows about stateport. The
declaration says which argument is the state and where its new value comes back; stateport
flattens the list to the ports ``states_0 ... states_3`` (named by path) and rebuilds it for
every call.

    stateport export --module examples/third_party/causal_conv_stack.py:model -o tcn.onnx
"""

import torch
import torch.nn as nn


class CausalConvStack(nn.Module):
    def __init__(self, n_in=40, channels=64, kernel=3, dilations=(1, 2, 4, 8), n_out=12):
        super().__init__()
        self.channels, self.kernel, self.dilations = channels, kernel, dilations
        self.inp = nn.Conv1d(n_in, channels, 1)
        self.layers = nn.ModuleList(nn.Conv1d(channels, channels, kernel, dilation=d) for d in dilations)
        self.out = nn.Conv1d(channels, n_out, 1)

    def initial_states(self, batch_size):
        return [torch.zeros(batch_size, self.channels, (self.kernel - 1) * d) for d in self.dilations]

    def forward(self, x, states):
        # x: [batch, frames, features]; states: one [batch, channels, context] per layer
        h = self.inp(x.transpose(1, 2))
        new_states = []
        for conv, past in zip(self.layers, states):
            full = torch.cat([past, h], dim=2)
            new_states.append(full[:, :, full.shape[2] - past.shape[2]:])
            h = h + torch.relu(conv(full))
        return self.out(h).transpose(1, 2), new_states


# -- the declaration (4 lines) -------------------------------------------------------------
from stateport.nn import declare_step  # noqa: E402

net = CausalConvStack()
model = declare_step(net, input=("features", ("batch", "T", 40)), outputs=["logits", "states"],
                     states={"states": net.initial_states})
