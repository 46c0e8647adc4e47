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


# Each further input of a multi-input model gets its own stream of values, far from the seeds
# the proof uses for its other streams (seed + 1, + 2, ...).
_INPUT_SEED_STRIDE = 7919


def synthetic_inputs(card, frames: int, *, batch: int = 1, seed: int = 0) -> dict:
    """One sequence per input port of ``card``, keyed by port name.

    A float input of shape ``[B, T, F]`` (or a frame-wise ``[B, F]``, which gains the frame axis
    1) gets :func:`synthetic_features`; an integer input (token ids) gets uniform values in its
    ``value_range``; an input without a time axis in a model that has one is a single value fed
    with every step. The first input uses ``seed`` itself, so a single-input model sees exactly
    ``synthetic_features(frames, F, batch=batch, seed=seed)``.
    """
    from ..errors import UnsupportedError

    if card.audio_input:  # PCM in: speech-like audio, ``frames`` samples
        from .audio_in import proof_audio

        return {card.inputs[0].name: proof_audio(frames, sample_rate_hz=card.streaming.sample_rate_hz,
                                                     batch=batch, seed=seed)}
    frame_wise = card.streaming.frames_per_step == 0
    out = {}
    for i, port in enumerate(card.inputs):
        s = seed + _INPUT_SEED_STRIDE * i
        if port.side_role is not None:
            # Computed, not drawn: the whole utterance is one chunk starting the stream.
            value = frames if port.side_role == "chunk_length" else 0
            out[port.name] = np.full((batch,), value, dtype=np.dtype(port.dtype))
            continue
        shape = []
        for axis, d in enumerate(port.shape):
            if axis == 0:
                shape.append(batch)
            elif axis == port.time_axis:
                shape.append(frames)
            elif isinstance(d, int):
                shape.append(d)
            else:
                raise UnsupportedError(f"input {port.name!r}: symbolic dimension {d!r} on axis {axis} has no size "
                                       "to generate test inputs with")
        if frame_wise:
            shape.insert(1, frames)
        dtype = np.dtype(port.dtype)
        if np.issubdtype(dtype, np.integer):
            low, high = port.value_range or (0, max(len(card.output.vocabulary), 2))
            out[port.name] = np.random.default_rng(s).integers(low, high, size=shape).astype(dtype)
        elif len(shape) == 3 and (frame_wise or port.time_axis == 1):
            out[port.name] = synthetic_features(shape[1], shape[2], batch=batch, seed=s).astype(dtype)
        else:
            out[port.name] = np.random.default_rng(s).standard_normal(shape).astype(dtype)
    return out
