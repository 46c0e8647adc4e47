"""``conformer``: chunked Conformer encoder with limited left context + CTC head over 80-dim log-mel.

Layout (Gulati et al. 2020, made streamable)::

    features [B, T, 80] -> FeatureNorm
    subsampling   S = 2**n causal strided convs (kernel 3, stride 2, ReLU), then a linear
                  projection to d_model: [B, T / S, D] (S = 1: the projection alone)
    blocks        N x conformer block, each on [B, T', D]:
                    x + 1/2 FFN(x)                      (macaron half-step: LN, Linear, SiLU, Linear)
                    x + MHSA(LN(x))                     chunked attention, limited left context
                    x + Conv(x)                         LN, pointwise to 2D, GLU, causal depthwise
                                                        conv, LayerNorm, SiLU, pointwise
                    x + 1/2 FFN(x), then LayerNorm
    head          Linear -> logits [B, T / S, V] over the digit vocabulary (CTC, blank 0)

Attention: chunks of ``chunk_encoder_frames`` (C) encoder frames, each query attending to its
whole chunk plus ``left_context_encoder_frames`` (L) frames before the chunk (the pattern and its
picture: :mod:`stateport.nn.attention`). No absolute positional encoding: it would depend on
the frame index since the stream started; the causal depthwise conv gives position information.
The conv module normalises with LayerNorm, not BatchNorm, so nothing depends on batch statistics.

Streaming contract: a chunk of input frames must be a whole number of attention chunks,
``frame_multiple = min_frames = frames_per_step = C * S`` input frames; any multiple works, and
one call over a whole utterance from a fresh state is the offline result. The offline result
depends on ``C`` (it is part of the architecture), and the look-ahead is 0 beyond the chunk, so
the algorithmic latency is one chunk (``C * S`` frames) plus the frontend window.

State (found automatically, named by module path): per strided conv its left context
``subsample_convs_<i>_buf`` [B, C_in, 1]; per block ``blocks_<i>_attn_k`` / ``_v`` [B, L, D],
``blocks_<i>_attn_valid`` [B, 1] and ``blocks_<i>_conv_depthwise_buf`` [B, D, kernel - 1].
Every state shape is fixed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InvalidInputError
from ..nn import CausalConv1d, ChunkedSelfAttention, RunningMeanNorm, StreamingModule, StridedCausalConv1d
from .common import BLANK_ID, DIGIT_VOCABULARY, FeatureNorm, fbank_frontend
from .registry import register
from .routing import StateRouter


def _apply(layer: nn.Module, x: torch.Tensor, route: StateRouter | None) -> torch.Tensor:
    """Offline (``route`` None): the layer's own forward; streaming: its step with its state slice."""
    return layer(x) if route is None else route(layer, x)


class FeedForward(nn.Module):
    """Pre-norm feed-forward module. [B, T, D] -> [B, T, D]."""

    def __init__(self, d_model: int, ff_dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, ff_dim), nn.SiLU(),
                                 nn.Linear(ff_dim, d_model))

    def forward(self, x):
        return self.net(x)


class ConvModule(nn.Module):
    """LN -> pointwise to 2D -> GLU -> causal depthwise conv -> LayerNorm -> SiLU -> pointwise. [B, T, D].

    The depthwise conv is a :class:`~stateport.nn.CausalConv1d`; its state is the left-padding
    buffer [B, D, kernel_size - 1].
    """

    def __init__(self, d_model: int, kernel_size: int):
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.pointwise_in = nn.Linear(d_model, 2 * d_model)
        self.depthwise = CausalConv1d(d_model, d_model, kernel_size, groups=d_model)
        # LayerNorm over channels, frame by frame: BatchNorm's batch statistics would make a
        # chunk's output depend on the other frames in the batch.
        self.conv_norm = nn.LayerNorm(d_model)
        self.pointwise_out = nn.Linear(d_model, d_model)

    def run(self, x: torch.Tensor, route: StateRouter | None) -> torch.Tensor:
        y = F.glu(self.pointwise_in(self.norm(x)), dim=-1).transpose(1, 2)
        y = _apply(self.depthwise, y, route).transpose(1, 2)
        return self.pointwise_out(F.silu(self.conv_norm(y)))


class ConformerBlock(nn.Module):
    """Macaron FFN, chunked MHSA, conv module, FFN, final LayerNorm. [B, T, D] -> [B, T, D]."""

    def __init__(self, d_model: int, *, num_heads: int, ff_dim: int, conv_kernel_size: int, chunk_frames: int,
                 left_context_frames: int):
        super().__init__()
        self.ff1 = FeedForward(d_model, ff_dim)
        self.attn_norm = nn.LayerNorm(d_model)
        self.attn = ChunkedSelfAttention(d_model, num_heads, chunk_frames=chunk_frames,
                                         left_context_frames=left_context_frames)
        self.conv = ConvModule(d_model, conv_kernel_size)
        self.ff2 = FeedForward(d_model, ff_dim)
        self.out_norm = nn.LayerNorm(d_model)

    def run(self, x: torch.Tensor, route: StateRouter | None) -> torch.Tensor:
        x = x + 0.5 * self.ff1(x)
        x = x + _apply(self.attn, self.attn_norm(x), route)
        x = x + self.conv.run(x, route)
        x = x + 0.5 * self.ff2(x)
        return self.out_norm(x)


class ConvSubsampling(nn.Module):
    """Time subsampling by ``subsampling`` (1, 2, 4, 8): stride-2 causal convs, then a projection.

    x [B, T, F] -> [B, T / subsampling, D]; ``T`` a multiple of ``subsampling`` when streaming.
    """

    def __init__(self, input_dim: int, d_model: int, subsampling: int):
        super().__init__()
        if subsampling not in (1, 2, 4, 8):
            raise InvalidInputError(f"subsampling must be 1, 2, 4 or 8, got {subsampling}")
        n = subsampling.bit_length() - 1
        self.convs = nn.ModuleList(StridedCausalConv1d(input_dim if i == 0 else d_model, d_model, 3, stride=2)
                                   for i in range(n))
        self.proj = nn.Linear(d_model if n else input_dim, d_model)

    def run(self, x: torch.Tensor, route: StateRouter | None) -> torch.Tensor:
        y = x.transpose(1, 2)
        for conv in self.convs:
            y = torch.relu(_apply(conv, y, route))
        return self.proj(y.transpose(1, 2))


@register("conformer", description="chunked Conformer (limited left context, 4x conv subsampling) + CTC head",
          sizes={"tiny": {"d_model": 32, "num_heads": 2, "num_layers": 2, "ff_dim": 64, "conv_kernel_size": 5,
                          "chunk_encoder_frames": 4, "left_context_encoder_frames": 8, "subsampling": 4},
                 # small: about the training cost of the built-in lstm-ctc (0.9 M parameters, measured
                 # 0.65 s per 16-utterance step here vs 0.35 s for lstm-ctc and 1.46 s for default).
                 "small": {"d_model": 96, "num_heads": 4, "num_layers": 4, "ff_dim": 384, "conv_kernel_size": 15,
                           "chunk_encoder_frames": 8, "left_context_encoder_frames": 32, "subsampling": 4},
                 "default": {"d_model": 144, "num_heads": 4, "num_layers": 6, "ff_dim": 576, "conv_kernel_size": 15,
                             "chunk_encoder_frames": 8, "left_context_encoder_frames": 32, "subsampling": 4}})
class ConformerCtc(StreamingModule):
    """x [B, T, 80] log-mel -> logits [B, T / S, V]. See the module docstring for layout and state."""

    input_name = "features"
    output_names = ("logits",)

    def __init__(self, *, d_model: int, num_heads: int, num_layers: int, ff_dim: int, conv_kernel_size: int,
                 chunk_encoder_frames: int, left_context_encoder_frames: int, subsampling: int = 4,
                 input_dim: int = 80, vocabulary: list | None = None, high_freq_hz: float = 0.0,
                 online_cmn_frames: float = 0.0):
        super().__init__()
        self.vocabulary = list(vocabulary or DIGIT_VOCABULARY)
        self.input_dim = input_dim
        self.chunk_input_frames = chunk_encoder_frames * subsampling
        self.norm = FeatureNorm(input_dim)
        # Registered first, so its states come first (as in lstm-ctc).
        self.cmn = RunningMeanNorm(input_dim, online_cmn_frames) if online_cmn_frames > 0 else None
        self.subsample = ConvSubsampling(input_dim, d_model, subsampling)
        self.blocks = nn.ModuleList(
            ConformerBlock(d_model, num_heads=num_heads, ff_dim=ff_dim, conv_kernel_size=conv_kernel_size,
                           chunk_frames=chunk_encoder_frames, left_context_frames=left_context_encoder_frames)
            for _ in range(num_layers))
        self.head = nn.Linear(d_model, len(self.vocabulary))
        s = self.streaming
        # A step must hold whole attention chunks: the chunked mask is only equal to the
        # offline one when chunk boundaries fall where the offline chunks do.
        s.frames_per_step = s.frame_multiple = s.min_frames = self.chunk_input_frames
        s.subsampling = subsampling
        s.frontend = fbank_frontend(input_dim, high_freq_hz)
        s.output_kind, s.output_port = "ctc", "logits"
        s.vocabulary, s.blank_id = self.vocabulary, BLANK_ID

    def _run(self, x: torch.Tensor, route: StateRouter | None) -> torch.Tensor:
        x = self.norm(x)
        if self.cmn is not None:
            x = _apply(self.cmn, x, route)
        y = self.subsample.run(x, route)
        for block in self.blocks:
            y = block.run(y, route)
        return self.head(y)

    def step(self, x, *state):
        if not (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()) and x.shape[1] % self.chunk_input_frames:
            raise InvalidInputError(f"a conformer step takes whole chunks: a multiple of {self.chunk_input_frames} "
                                    f"frames, got {x.shape[1]}")
        route = StateRouter(self, state)
        logits = self._run(x, route)
        return (logits, *route.new_state())

    def forward(self, x):
        """Offline reference: every layer's own forward (explicit [T, T] chunk mask, zero padding)."""
        return (self._run(x, None),)
