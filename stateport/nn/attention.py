"""Chunked multi-head self-attention with a fixed-size left-context key/value cache.

The attention pattern (chunk size ``C``, left context ``L`` frames, both in this layer's frames):
frame ``t`` lies in chunk ``c = t // C`` and attends to the frames ``[c*C - L, (c+1)*C)``,
clipped at 0: its whole own chunk (including the frames after it in that chunk: this is why a
chunk is the model's latency) plus exactly ``L`` frames before the chunk starts. Every query of
a chunk sees the same keys. Example, ``C = 2``, ``L = 3`` (``#`` = visible key)::

                keys (frames) ->
                0 1 2 3 4 5 6 7
    chunk 0     # #                 frames 0-1: own chunk, nothing earlier exists
    chunk 1     # # # #             frames 2-3: own chunk + frames 0-1 (fewer than L exist)
    chunk 2       # # # # #         frames 4-5: own chunk + the L frames 1-3
    chunk 3           # # # # #     frames 6-7: own chunk + the L frames 3-5

Streaming: the state is the keys and values of the last ``L`` frames before the step
(``k``/``v`` [B, L, D], oldest first; fixed size, so every shape is static for NPU compilers)
and ``valid`` [B, 1], how many of those cached frames are real: a fresh stream starts with a
zero cache and ``valid = 0``, and the attention masks the slots that hold no frame yet. A step
takes any whole number of chunks ``T = n*C`` and attends ``[cache ; chunk]`` with the mask
above, so one call over a whole utterance from a fresh state (the ONNX offline mode) and any
chunking aligned to ``C`` give the offline result. The offline reference (:meth:`forward`)
builds the ``[T, T]`` mask chunk by chunk from the definition, independently of the step's
arithmetic. The chunk size is part of the model: a step run with another ``C`` computes a
different function, and the parity proof reports it.

``valid`` is a float (NPU runtimes often lack int64) compared with a half-frame margin, so a
quantised state that is off by less than half a frame still masks the same slots. It counts
the same frames in every layer; each layer keeps its own copy to stay self-contained (one
value per layer).

No positional encoding depends on the absolute frame index (that would not stream); the
conformer's convolution module supplies position information.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import InvalidInputError
from ..spec import BATCH_DIM
from .protocol import StateDecl, StreamingLayer


class ChunkedSelfAttention(StreamingLayer):
    """Multi-head self-attention over chunks of ``chunk_frames`` with ``left_context_frames`` of history.

    x [B, T, D] -> y [B, T, D], ``T`` a multiple of ``chunk_frames`` in ``step`` (any ``T`` in
    ``forward``, whose last chunk may be partial). State: ``k``, ``v`` [B, L, D] and
    ``valid`` [B, 1] (see the module docstring).
    """

    def __init__(self, d_model: int, num_heads: int, *, chunk_frames: int, left_context_frames: int):
        super().__init__()
        if d_model % num_heads:
            raise InvalidInputError(f"d_model={d_model} must be a multiple of num_heads={num_heads}")
        if chunk_frames < 1 or left_context_frames < 1:
            raise InvalidInputError(f"chunk_frames ({chunk_frames}) and left_context_frames "
                                    f"({left_context_frames}) must be at least 1")
        self.d_model, self.num_heads = d_model, num_heads
        self.head_dim = d_model // num_heads
        self.chunk_frames, self.left_context_frames = chunk_frames, left_context_frames
        self.scale = 1.0 / math.sqrt(self.head_dim)
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def state_decls(self):
        cache = (BATCH_DIM, self.left_context_frames, self.d_model)
        return [StateDecl("k", cache, description="keys of the last L frames before the step, oldest first"),
                StateDecl("v", cache, description="values of the last L frames before the step, oldest first"),
                StateDecl("valid", (BATCH_DIM, 1),
                          description="how many cached frames are real (0..L); the other slots are masked")]

    # -- shared attention ------------------------------------------------------------------
    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """[B, S, D] -> [B, H, S, D/H]."""
        return x.unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)

    def _attend(self, q, k, v, visible) -> torch.Tensor:
        """q [B, T, D], k/v [B, S, D], visible bool broadcastable to [B, H, T, S] -> [B, T, D]."""
        scores = torch.matmul(self._heads(q), self._heads(k).transpose(-1, -2)) * self.scale
        # Every query sees at least its own chunk, so no row is all -inf (no NaN from softmax).
        scores = scores.masked_fill(~visible, float("-inf"))
        y = torch.matmul(torch.softmax(scores, dim=-1), self._heads(v))
        return self.out_proj(y.transpose(1, 2).flatten(2))

    # -- streaming -------------------------------------------------------------------------
    def step(self, x, k_cache, v_cache, valid):
        C, L = self.chunk_frames, self.left_context_frames
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        keys = torch.cat([k_cache, k], dim=1)  # [B, L + T, D]
        values = torch.cat([v_cache, v], dim=1)
        # Positions relative to the step's first frame: cache slots are -L..-1, the chunk 0..T-1.
        query_pos = torch.arange(x.shape[1], device=x.device)
        key_pos = torch.arange(keys.shape[1], device=x.device) - L
        chunk_start = torch.div(query_pos, C, rounding_mode="floor") * C
        in_window = (key_pos[None, :] >= (chunk_start - L)[:, None]) & (key_pos[None, :] < (chunk_start + C)[:, None])
        # Slot p < 0 holds a real frame iff it is one of the last `valid` ones: p >= -valid.
        real = (key_pos[None, :].to(valid.dtype) + valid + 0.5) >= 0  # [B, L + T]
        y = self._attend(q, keys, values, in_window[None, None] & real[:, None, None, :])
        frames = torch.ones_like(x[:, :, :1]).sum(dim=1)  # [B, 1]: the step's frame count, as data
        new_valid = torch.clamp(valid + frames, max=float(L))
        return y, keys[:, -L:], values[:, -L:], new_valid

    # -- offline reference -----------------------------------------------------------------
    @staticmethod
    def chunk_mask(frames: int, chunk_frames: int, left_context_frames: int) -> torch.Tensor:
        """The [T, T] boolean pattern of the module docstring, built chunk by chunk."""
        mask = torch.zeros(frames, frames, dtype=torch.bool)
        for start in range(0, frames, chunk_frames):
            end = min(start + chunk_frames, frames)
            mask[start:end, max(0, start - left_context_frames):end] = True
        return mask

    def forward(self, x):
        visible = self.chunk_mask(x.shape[1], self.chunk_frames, self.left_context_frames).to(x.device)
        return self._attend(self.q_proj(x), self.k_proj(x), self.v_proj(x), visible)
