"""Deterministic test inputs for the parity proof.

Log-mel-like feature tracks: alternating stretches of low, flat "silence" and louder,
slowly varying "speech" with spectral structure, so recurrent state sees both long quiet
stretches and busy ones (the conditions under which state handling breaks).
"""

from __future__ import annotations

import numpy as np


def synthetic_features(frames: int, dim: int, *, batch: int = 1, seed: int = 0) -> np.ndarray:
    """[batch, frames, dim] float32, roughly unit-scale like normalised log-mel features."""
    rng = np.random.default_rng(seed)
    out = np.empty((batch, frames, dim), dtype=np.float32)
    for b in range(batch):
        t = 0
        while t < frames:
            n = int(rng.integers(20, 150))
            speech = rng.random() < 0.6
            level = rng.normal(0.5, 0.3) if speech else -1.5
            shape = np.sin(np.linspace(0, rng.uniform(1, 6) * np.pi, dim) + rng.uniform(0, np.pi))
            noise = rng.normal(0, 0.6 if speech else 0.15, size=(n, dim))
            # AR(1) smoothing over time: speech spectra change smoothly from frame to frame.
            for i in range(1, n):
                noise[i] = 0.7 * noise[i - 1] + 0.3 * noise[i]
            seg = level + (0.8 * shape if speech else 0.0) + noise
            m = min(n, frames - t)
            out[b, t:t + m] = seg[:m]
            t += m
    return out
