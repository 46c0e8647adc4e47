"""``quartznet``: a causal QuartzNet/Jasper-style 1-D CNN + CTC head over 80-dim log-mel frames.

Layout (QuartzNet, Kriman et al. 2020, made causal and without striding)::

    features [B, T, 80] -> FeatureNorm (-> RunningMeanNorm with online_cmn_frames) -> [B, 80, T]
    prologue   C1: separable conv (k, dilation 1) -> BN -> ReLU
    blocks     B_1..B_n, each: ``repeat`` separable sub-blocks (depthwise causal conv with
               dilation -> pointwise 1x1 -> BN), ReLU between them; the block input, through a
               pointwise 1x1 + BN, is added before the last ReLU (the residual)
    epilogue   C2: separable conv (dilated) -> BN -> ReLU;  C3: pointwise 1x1 to 2x the channels -> BN -> ReLU
    head       pointwise 1x1 -> logits [B, T, V] over the digit vocabulary (CTC, blank 0)

Every depthwise conv is a :class:`~stateport.nn.CausalConv1d` whose state is its left-padding
buffer ``[B, C, (k - 1) * dilation]``; the model finds them by itself (``state_decls``), so the
card lists one ``..._buf`` state per separable conv. Stride is 1 everywhere (no subsampling),
so any chunk length works and streaming equals offline exactly.

BatchNorm runs in eval mode (a fixed per-channel affine from its running statistics); the
statistics are buffers that ``step`` never changes, as the exporter requires.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InvalidInputError
from ..nn import CausalConv1d, RunningMeanNorm, StreamingLayer, StreamingModule
from .common import BLANK_ID, DIGIT_VOCABULARY, FeatureNorm, fbank_frontend
from .registry import register
from .routing import StateRouter


class SeparableConvBN(StreamingLayer):
    """Depthwise causal conv -> pointwise 1x1 -> BatchNorm. x [B, C_in, T] -> y [B, C_out, T].

    State: the depthwise conv's left-padding buffer ``buf`` [B, C_in, (kernel_size - 1) * dilation].
    No activation here: QuartzNet adds the residual before the block's last ReLU.
    """

    def __init__(self, in_channels: int, out_channels: int, *, kernel_size: int, dilation: int = 1):
        super().__init__()
        self.depthwise = CausalConv1d(in_channels, in_channels, kernel_size, dilation=dilation,
                                      groups=in_channels, bias=False)
        self.pointwise = nn.Conv1d(in_channels, out_channels, 1, bias=False)
        self.norm = nn.BatchNorm1d(out_channels)

    @property
    def context_frames(self) -> int:
        return self.depthwise.context_frames

    def state_decls(self):
        return self.depthwise.state_decls()

    def step(self, x, *state):
        y, *new_state = self.depthwise.step(x, *state)
        return (self.norm(self.pointwise(y)), *new_state)


class PointwiseBN(nn.Module):
    """Pointwise 1x1 conv -> BatchNorm (no time context, no state). [B, C_in, T] -> [B, C_out, T]."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, 1, bias=False)
        self.norm = nn.BatchNorm1d(out_channels)

    def forward(self, x):
        return self.norm(self.conv(x))


class QuartzBlock(nn.Module):
    """``repeat`` separable sub-blocks with a residual. [B, C_in, T] -> [B, C_out, T]."""

    def __init__(self, in_channels: int, out_channels: int, *, kernel_size: int, dilation: int, repeat: int):
        super().__init__()
        self.sub = nn.ModuleList(
            SeparableConvBN(in_channels if i == 0 else out_channels, out_channels, kernel_size=kernel_size,
                            dilation=dilation)
            for i in range(repeat))
        self.residual = PointwiseBN(in_channels, out_channels)

    def run(self, x: torch.Tensor, route: StateRouter) -> torch.Tensor:
        y = x
        for i, sub in enumerate(self.sub):
            y = route(sub, y)
            if i < len(self.sub) - 1:
                y = torch.relu(y)
        return torch.relu(y + self.residual(x))


def _int_list(name: str, value, n: int | None = None) -> list[int]:
    if isinstance(value, int):
        value = [value] * (n or 1)
    values = list(value)
    if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
        raise InvalidInputError(f"quartznet {name} must be positive integers, got {value!r}")
    if n is not None and len(values) != n:
        raise InvalidInputError(f"quartznet {name} needs {n} entries (one per block), got {len(values)}")
    return values


@register("quartznet", description="causal QuartzNet-style separable 1-D CNN + CTC head over 80-dim log-mel",
          sizes={"tiny": {"prologue_channels": 16, "prologue_kernel": 5,
                          "block_channels": [16, 24], "block_kernels": [3, 5], "block_dilations": [1, 2],
                          "repeat": 1, "epilogue_channels": 32, "epilogue_kernel": 3, "epilogue_dilation": 2},
                 "default": {"prologue_channels": 128, "prologue_kernel": 11,
                             "block_channels": [128, 128, 192, 192, 256], "block_kernels": [5, 7, 9, 11, 13],
                             "block_dilations": [1, 1, 2, 2, 2], "repeat": 2,
                             "epilogue_channels": 384, "epilogue_kernel": 13, "epilogue_dilation": 2}})
class QuartzNetCtc(StreamingModule):
    """x [B, T, 80] log-mel -> logits [B, T, V]. State: one ``*_buf`` [B, C, (k - 1) * d] per separable conv.

    The receptive field (``receptive_field_frames``) is all past context: no look-ahead.
    """

    input_name = "features"
    output_names = ("logits",)

    def __init__(self, *, prologue_channels: int, prologue_kernel: int, block_channels: list,
                 block_kernels: list, block_dilations: list, repeat: int, epilogue_channels: int,
                 epilogue_kernel: int, epilogue_dilation: int = 1, input_dim: int = 80,
                 vocabulary: list | None = None, frames_per_step: int = 16, high_freq_hz: float = 0.0,
                 online_cmn_frames: float = 0.0):
        super().__init__()
        channels = _int_list("block_channels", block_channels)
        kernels = _int_list("block_kernels", block_kernels, len(channels))
        dilations = _int_list("block_dilations", block_dilations, len(channels))
        if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
            raise InvalidInputError(f"quartznet repeat must be a positive integer, got {repeat!r}")
        self.vocabulary = list(vocabulary or DIGIT_VOCABULARY)
        self.input_dim = input_dim

        self.norm = FeatureNorm(input_dim)
        # Registered before the convs, so its states come first (as in lstm-ctc).
        self.cmn = RunningMeanNorm(input_dim, online_cmn_frames) if online_cmn_frames > 0 else None
        self.prologue = SeparableConvBN(input_dim, prologue_channels, kernel_size=prologue_kernel)
        blocks, c_in = [], prologue_channels
        for c_out, k, d in zip(channels, kernels, dilations):
            blocks.append(QuartzBlock(c_in, c_out, kernel_size=k, dilation=d, repeat=repeat))
            c_in = c_out
        self.blocks = nn.ModuleList(blocks)
        self.epilogue = SeparableConvBN(c_in, epilogue_channels, kernel_size=epilogue_kernel,
                                        dilation=epilogue_dilation)
        self.epilogue_pointwise = PointwiseBN(epilogue_channels, 2 * epilogue_channels)
        self.head = nn.Conv1d(2 * epilogue_channels, len(self.vocabulary), 1)

        self._init_weights()

        s = self.streaming
        s.frames_per_step = frames_per_step
        s.frontend = fbank_frontend(input_dim, high_freq_hz)
        s.output_kind, s.output_port = "ctc", "logits"
        s.vocabulary, s.blank_id = self.vocabulary, BLANK_ID

    def _init_weights(self) -> None:
        """LeCun-normal convs (std 1/sqrt(fan_in)): the signal keeps its scale through the depth.

        torch's default init shrinks it at every layer: measured at the default size, the
        untrained output varied by 1e-4 over time, too little for a parity check at 1e-4 to
        tell a wrong state from a right one. He init (gain sqrt 2) overshoots instead, because
        each residual adds its branch: logits reached 20 and float32 rounding alone came to
        5e-5. With gain 1 the untrained logits stay below 1, like lstm-ctc's.
        """
        for module in self.modules():
            if isinstance(module, nn.Conv1d) and module is not self.head:
                nn.init.kaiming_normal_(module.weight, nonlinearity="linear")

    @property
    def receptive_field_frames(self) -> int:
        """Frames of input (this one included) that one output frame depends on."""
        return 1 + sum(layer.context_frames for _, layer in self.streaming_layers())

    def step(self, x, *state):
        """x [B, T, 80] + one buffer per separable conv -> (logits [B, T, V], *new buffers)."""
        route = StateRouter(self, state)
        x = self.norm(x)
        if self.cmn is not None:
            x = route(self.cmn, x)
        y = torch.relu(route(self.prologue, x.transpose(1, 2)))
        for block in self.blocks:
            y = block.run(y, route)
        y = torch.relu(route(self.epilogue, y))
        y = torch.relu(self.epilogue_pointwise(y))
        return (self.head(y).transpose(1, 2), *route.new_state())
