"""What the parity proof feeds an audio-in model (``card.audio_input``): speech-like audio in ragged sample chunks.

An audio-in graph takes PCM samples (its input's time axis counts samples), so the proof's
"frames" are samples: 60 s are 960 000 of them. Its chunkings:

- ``ragged samples``: random lengths from 1 sample to 3 nominal chunks, a third of them shorter
  than a frame hop and a third shorter than a window (chunks that complete no frame, one frame,
  or a frame but no model step), so every carried count is exercised;
- ``nominal``: ``frames_per_step`` samples per call (the steady-state chunk).

One sample per call over the whole signal (the "min-chunk" plan of a features-in model) would be
960 000 calls; single samples are part of the ragged plan instead.

The signal (:func:`synthetic_audio`) has what breaks a frontend: harmonic voiced stretches with
moving pitch from -50 to -4 dBFS, noise bursts, quiet background noise, and digital silence
(exact zeros, where the log floor decides the features), as 16-bit PCM, like every capture.

Each voiced stretch carries a noise floor 35 to 65 dB below its own level (room, microphone and
converter noise: every capture has one). Why it matters: kaldi-native-fbank's FFT is only
float32-accurate (measured: errors of ~1e-8 of a frame's largest bin, also on identical input),
so a mel band ~85 dB below a frame's peak bin errs by ~3e-4 in knf's log-mel, and the built-in
model turns that into ~2e-4 on a logit: with floors 40 to 80 dB down, one output frame of 749
in 60 s exceeded 1e-4 (1.9e-4), every one computed exactly by the in-graph frontend (float64
spectrum) and off in knf. ``docs/browser.md`` has the measurements.
"""

from __future__ import annotations

import numpy as np

from ..spec import ModelCard


def synthetic_audio(samples: int, *, sample_rate_hz: int, batch: int = 1, seed: int = 0) -> np.ndarray:
    """``[batch, samples]`` float32 16-bit PCM values in [-1, 1]: voiced chirps, bursts, background, digital silence."""
    rng = np.random.default_rng(seed)
    out = np.zeros((batch, samples), dtype=np.float32)
    for b in range(batch):
        x = np.zeros(samples, dtype=np.float64)
        t = 0
        while t < samples:
            n = min(int(rng.uniform(0.1, 0.9) * sample_rate_hz), samples - t)
            kind = rng.choice(["voiced", "voiced", "burst", "background", "silence"])
            if kind == "voiced":
                tau = np.arange(n) / sample_rate_hz
                f0, f1 = rng.uniform(80, 320, size=2)
                phase = 2 * np.pi * (f0 * tau + 0.5 * (f1 - f0) / max(tau[-1], 1e-3) * tau ** 2)
                env = np.sin(np.pi * np.arange(n) / n) ** 2
                level = 10 ** (rng.uniform(-50, -4) / 20)
                seg = level * env * sum(rng.uniform(0.2, 1.0) / k * np.sin(k * phase) for k in range(1, 12))
                seg += level * 10 ** (-rng.uniform(35, 65) / 20) * rng.standard_normal(n)
            elif kind == "burst":
                seg = 10 ** (rng.uniform(-40, -14) / 20) * rng.standard_normal(n) * np.hanning(n)
            elif kind == "background":
                seg = 10 ** (rng.uniform(-90, -60) / 20) * rng.standard_normal(n)
            else:
                seg = np.zeros(n)
            x[t:t + n] = seg
            t += n
        out[b] = np.round(np.clip(x, -1.0, 32767 / 32768) * 32768) / 32768
    return out


def audio_chunk_plan(card: ModelCard, total_samples: int, seed: int = 0) -> dict:
    """Chunk lengths (in samples) per chunking name; each plan covers ``total_samples`` exactly."""
    s = card.streaming
    fe = card.feature_frontend or {}
    rate = s.sample_rate_hz
    hop = max(1, int(rate * fe.get("frame_shift_ms", 10.0) / 1000.0))
    window = max(hop + 1, int(rate * fe.get("frame_length_ms", 25.0) / 1000.0))
    nominal = max(1, s.frames_per_step)
    rng = np.random.default_rng(seed)
    # First the edge cases, for certain: single samples, one short of a window, exactly a hop, ...
    lengths = [1, 1, 1, 2, 3, window - 1, 1, hop - 1, hop, hop + 1, window, window + 1, nominal - 1, nominal + 1]
    covered = sum(lengths)
    while covered < total_samples:
        kind = rng.integers(3)
        high = hop if kind == 0 else window if kind == 1 else 3 * nominal
        lengths.append(int(rng.integers(1, high + 1)))
        covered += lengths[-1]
    return {"ragged samples": _cover(lengths, total_samples), "nominal": _cover([nominal], total_samples)}


def _cover(pattern: list, total: int) -> list:
    out, covered, i = [], 0, 0
    while covered < total:
        out.append(pattern[i % len(pattern)])
        covered += out[-1]
        i += 1
    out[-1] -= covered - total
    return [n for n in out if n > 0]
