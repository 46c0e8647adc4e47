"""The seed article's streaming LSTM, exactly as printed there, declared for stateport.

    stateport export --module examples/seed_streaming_lstm.py:model -o streaming_asr.onnx

gives the ports the article names: audio_chunk, h_in, c_in -> logits, h_out, c_out.
"""

import torch.nn as nn

from stateport.nn import declare_step


class StreamingLSTM(nn.Module):
    def __init__(self, input_dim, hidden_dim):
        super().__init__()
        self.lstm = nn.LSTMCell(input_dim, hidden_dim)
        self.fc = nn.Linear(hidden_dim, 10)  # Output chars

    def forward(self, x_chunk, h_prev, c_prev):
        # x_chunk: [Batch, 1, Features] - One frame
        h_new, c_new = self.lstm(x_chunk, (h_prev, c_prev))
        output = self.fc(h_new)
        return output, h_new, c_new


# The declaration: one input frame [batch, 80], one output, two states (h, c) of [batch, 256].
# The naming rule turns state "h" into the port pair h_in -> h_out.
model = declare_step(StreamingLSTM(input_dim=80, hidden_dim=256),
                     input=("audio_chunk", ("batch", 80)),
                     outputs=["logits"],
                     states={"h": ("batch", 256), "c": ("batch", 256)})
