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
