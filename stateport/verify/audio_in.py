"""What the parity proof feeds an audio-in model (``card.audio_input``): recorded speech in ragged sample chunks.

An audio-in graph takes PCM samples (its input's time axis counts samples), so the proof's
"frames" are samples: 60 s are 960 000 of them. Its chunkings:

- ``ragged samples``: random lengths from 1 sample to 3 nominal chunks, a third of them shorter
  than a frame hop and a third shorter than a window (chunks that complete no frame, one frame,
  or a frame but no model step), so every carried count is exercised;
- ``nominal``: ``frames_per_step`` samples per call (the steady-state chunk).

One sample per call over the whole signal (the "min-chunk" plan of a features-in model) would be
960 000 calls; single samples are part of the ragged plan instead.

The signal (:func:`proof_audio`) is made of what a capture holds: recorded speech (the shipped
FSDD clips, resampled to the card's rate, at random levels from -30 to -1 dBFS peak, under room
noise 50 to 70 dB below that peak), noise bursts, quiet background noise and digital silence
(exact zeros, where the log floor decides the features), as 16-bit PCM.

Why recorded speech and not synthetic harmonics: kaldi-native-fbank's FFT is only
float32-accurate (measured: errors of ~1e-8 of a frame's largest bin, also on identical input),
so a mel band ~100 dB below a frame's peak errs by ~1e-3 in knf's log-mel, and a model can carry
that to its logits. Pure harmonics with a white noise floor 35-65 dB down put Kaldi's 20-60 Hz
bands (after preemphasis) ~100 dB below a loud vowel's peak: a trained lstm-ctc's logits then
differed from knf's by up to 1.25e-4 (scaled) on 3 output steps of 1999 in 60 s, the built-in
model's by 1.9e-4 on 1 of 749 (floors 40-80 dB down), each time computed exactly by the in-graph
frontend (float64 spectrum) and off in knf. Recordings do not have such frames; on them both
models stay within 7e-5. ``docs/browser.md`` has the measurements.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from ..spec import ModelCard


CLIPS = Path(__file__).resolve().parents[1] / "assets" / "digits" / "clips"


@functools.lru_cache(maxsize=4)
def _recordings(sample_rate_hz: int) -> tuple:
    """The shipped clips (FSDD speech, 16 kHz), resampled to ``sample_rate_hz``, float64 [-1, 1]."""
    import soundfile as sf

    from ..runtime.resample import resample

    out = []
    for path in sorted(CLIPS.glob("*.wav")):
        x, rate = sf.read(str(path), dtype="float32")
        out.append(np.asarray(resample(x, rate, sample_rate_hz) if rate != sample_rate_hz else x, np.float64))
    return tuple(out)


def proof_audio(samples: int, *, sample_rate_hz: int, batch: int = 1, seed: int = 0) -> np.ndarray:
    """``[batch, samples]`` float32 16-bit PCM values in [-1, 1]: recorded speech under room noise,
    noise bursts, background noise, digital silence."""
    rng = np.random.default_rng(seed)
    speech = _recordings(sample_rate_hz)
    out = np.zeros((batch, samples), dtype=np.float32)
    for b in range(batch):
        x = np.zeros(samples, dtype=np.float64)
        t = 0
        while t < samples:
            kind = rng.choice(["speech", "speech", "speech", "burst", "background", "silence"])
            if kind == "speech":
                clip = speech[int(rng.integers(len(speech)))]
                clip = clip[int(rng.integers(len(clip) // 3)):]  # sometimes from within a word
                peak = 10 ** (rng.uniform(-30, -1) / 20)
                seg = clip * (peak / max(float(np.abs(clip).max()), 1e-9))
                seg += peak * 10 ** (-rng.uniform(50, 70) / 20) * _pink_noise(len(seg), sample_rate_hz, rng)
            else:
                n = int(rng.uniform(0.1, 0.9) * sample_rate_hz)
                if kind == "burst":
                    seg = 10 ** (rng.uniform(-40, -14) / 20) * rng.standard_normal(n) * np.hanning(n)
                elif kind == "background":
                    seg = 10 ** (rng.uniform(-90, -60) / 20) * rng.standard_normal(n)
                else:
                    seg = np.zeros(n)
            n = min(len(seg), samples - t)
            x[t:t + n] = seg[:n]
            t += n
        out[b] = np.round(np.clip(x, -1.0, 32767 / 32768) * 32768) / 32768
    return out


def _pink_noise(n: int, sample_rate_hz: int, rng) -> np.ndarray:
    """``[n]`` noise of unit RMS whose power falls as 1/f above 20 Hz (room, hum and handling noise)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freq_hz = np.fft.rfftfreq(n, 1.0 / sample_rate_hz)
    noise = np.fft.irfft(spectrum / np.sqrt(np.maximum(freq_hz, 20.0)), n)
    return noise / max(float(np.sqrt(np.mean(noise ** 2))), 1e-12)


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


def runtime_frontend_note(reference, x, ref_offline: dict, card: ModelCard) -> str | None:
    """How far kaldi-native-fbank's own features move the reference's offline outputs, as a note.

    ``reference.model.forward_runtime_frontend`` (an audio-in torch model) computes the outputs
    from knf's features instead of the exact-FFT ones the proof compares with.
    """
    model = getattr(reference, "model", None)
    runtime = getattr(model, "forward_runtime_frontend", None)
    if runtime is None:
        return None
    import torch

    name = card.inputs[0].name
    with torch.no_grad():
        outs = runtime(torch.from_numpy(np.ascontiguousarray(x[name])))
    worst, scaled = 0.0, 0.0
    for port, y in zip(card.outputs, outs):
        ref = ref_offline[port.name]
        d = np.abs(y.numpy().astype(np.float64) - ref)
        if d.size:
            worst = max(worst, float(d.max()))
            scaled = max(scaled, float((d / np.maximum(1.0, np.abs(ref))).max()))
    return (f"kaldi-native-fbank's own features (its FFT is float32-accurate) instead of the exact-FFT ones move "
            f"the offline outputs by max |diff| {worst:.3g} (scaled {scaled:.3g}); the graph is compared with the "
            "exact ones")
