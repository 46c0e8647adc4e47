"""Pieces shared by the built-in architectures: vocabulary, frontend, feature normalisation."""

from __future__ import annotations

import torch
from torch import nn

from ..vocabulary import BLANK_ID, DIGIT_VOCABULARY  # noqa: F401  (the built-in models recognise digit strings)


def fbank_frontend(num_mel_bins: int = 80, high_freq_hz: float = 0.0) -> dict:
    """The card's frontend: Kaldi-compatible fbank, 25 ms windows every 10 ms at 16 kHz.

    high_freq_hz: the top mel-filter edge (0 = Nyquist, 8 kHz). A model trained on
    telephone-band recordings (FSDD is 8 kHz) uses ~3.8 kHz, so the band it never heard in
    real speech cannot tell real from synthetic speech (see ``stateport.train``).
    """
    from ..runtime.frontend import FrontendConfig

    return FrontendConfig(kind="fbank", sample_rate_hz=16000, num_mel_bins=num_mel_bins,
                          high_freq_hz=high_freq_hz).to_dict()


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


class InputNoise(nn.Module):
    """Training-time regulariser of normalised inputs: Gaussian noise of std ``noise_std``, then
    dropout ``dropout``. The identity in eval mode, so exports carry no trace of it.

    Why: a head trained over a fixed pool of frozen-embedding batches (``--pool-batches``)
    learns that pool by heart (training CTC loss 0.001); noise makes each pass over the pool
    see slightly different inputs.
    """

    def __init__(self, noise_std: float = 0.0, dropout: float = 0.0):
        super().__init__()
        self.noise_std = float(noise_std)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        if not self.training:
            return x
        if self.noise_std > 0:
            x = x + self.noise_std * torch.randn_like(x)
        return self.dropout(x)


def output_contract(module, kind: str, port: str, vocabulary: list) -> None:
    """Set a token model's output contract on ``module.streaming``: kind, port, vocabulary, blank id 0."""
    s = module.streaming
    s.output_kind, s.output_port = kind, port
    s.vocabulary, s.blank_id = list(vocabulary), BLANK_ID
