"""Causal strided convolution: time subsampling that streams.

Output frame ``j`` of a convolution with kernel ``K`` and stride ``s`` reads the input frames
``[(j+1)*s - K, (j+1)*s)``: its window ends on the last frame of its own stride block, so it
needs no look-ahead, and a chunk whose length is a multiple of ``s`` yields exactly
``T / s`` frames. The ``K - s`` input frames before a chunk are the state.
"""

from __future__ import annotations

from torch import nn

from ..errors import InvalidInputError
from .layers import LeftContextConv


class StridedCausalConv1d(LeftContextConv):
    """Causal 1-D convolution with stride. x [B, C_in, T] -> y [B, C_out, T / stride].

    ``T`` must be a multiple of ``stride`` in ``step`` (the model's ``frame_multiple`` says so).
    State: ``buf`` [B, C_in, kernel_size - stride], the input frames the next chunk's first
    output window reaches back to; zeros at the start of a stream, which is the zero padding of
    the offline forward. No state when ``kernel_size == stride`` (plain frame stacking).
    """

    state_description = "left context of the strided conv: the last input frames"

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int):
        super().__init__()
        if stride < 1 or kernel_size < stride:
            raise InvalidInputError(f"kernel_size ({kernel_size}) must be at least stride ({stride}) >= 1: a "
                                    "smaller kernel would skip input frames")
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride)
        self.stride = stride
        self.context_frames = kernel_size - stride


class Conv2dSubsampling4(nn.Module):
    """icefall's 4x convolutional subsampling with right context. x [B, T, F] -> y [B, T', D].

    Three "valid" 2-D convolutions over (time, frequency): kernel 3 stride 1, kernel 3 stride 2,
    kernel 3 stride 2 (each followed by ReLU), then a linear layer over channels x frequency::

        T' = ((T - 3) // 2 - 1) // 2        (T = 4 n + 7  ->  T' = n)

    Output frame ``j`` reads the input frames ``[4 j, 4 j + 8]``, so a streaming step takes its
    chunk of ``4 n`` frames plus ``LOOKAHEAD_FRAMES`` (7) more, yields ``n`` frames and advances
    by ``4 n`` (the next step recomputes the overlapping frames). No state: the overlap is the
    context. This is the encoder front of icefall's LSTM transducer
    (``lstm_transducer_stateless2``), which sherpa-onnx feeds ``T = decode_chunk_len + 7`` frames
    per step; 5 frames of right context would do, but 7 is that convention (icefall's
    ``pad_length``), so a chunk of ``4 n + 7`` frames is what both runtimes feed.
    """

    LOOKAHEAD_FRAMES = 7
    FACTOR = 4

    def __init__(self, in_features: int, out_dim: int, channels: tuple = (8, 32, 64)):
        super().__init__()
        c1, c2, c3 = channels
        self.conv = nn.Sequential(nn.Conv2d(1, c1, 3), nn.ReLU(), nn.Conv2d(c1, c2, 3, stride=2), nn.ReLU(),
                                  nn.Conv2d(c2, c3, 3, stride=2), nn.ReLU())
        freq = ((in_features - 3) // 2 - 1) // 2
        if freq < 1:
            raise InvalidInputError(f"Conv2dSubsampling4 needs at least 7 features per frame; got {in_features}")
        self.out = nn.Linear(c3 * freq, out_dim)

    @staticmethod
    def output_frames(frames: int) -> int:
        """Output frames for ``frames`` input frames (0 below 9)."""
        return max(((frames - 3) // 2 - 1) // 2, 0)

    def forward(self, x):
        y = self.conv(x.unsqueeze(1))                    # [B, C, T', F']
        b, c, t, f = y.shape
        return self.out(y.permute(0, 2, 1, 3).reshape(b, t, c * f))
