"""Pieces shared by the built-in architectures: vocabulary, frontend, feature normalisation."""

from __future__ import annotations

import torch
from torch import nn

from ..vocabulary import BLANK_ID, DIGIT_VOCABULARY  # noqa: F401  (the built-in models recognise digit strings)


def fbank_frontend(num_mel_bins: int = 80) -> dict:
    """The card's frontend: Kaldi-compatible fbank, 25 ms windows every 10 ms at 16 kHz."""
    from ..runtime.frontend import FrontendConfig

    return FrontendConfig(kind="fbank", sample_rate_hz=16000, num_mel_bins=num_mel_bins).to_dict()


class FeatureNorm(nn.Module):
    """Fixed per-dimension mean/std normalisation of input features (set from training data).

    The statistics are buffers that never change during ``step``: normalisation, not state.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def forward(self, x):
        return (x - self.mean) / self.std
