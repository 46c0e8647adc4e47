"""Torch twin of the runtime frontend: the same Kaldi fbank / MFCC, batched, differentiable.

Training computes features with this module (on CPU or GPU, inside the data pipeline or
the model); the deployed client computes them with ``stateport.runtime.frontend``
(kaldi_native_fbank). Both read the same ``FrontendConfig``, and
``tests/nn/test_torch_frontend.py`` checks they agree, so a model trained on these
features sees the same numbers on the device.

Kaldi's recipe, per frame (``L`` = frame length, ``N_fft`` = next power of two >= L):
remove the DC offset, (raw log energy), preemphasis ``y[i] = x[i] - c x[i-1]`` with
``y[0] = x[0] - c x[0]``, window, zero-pad to ``N_fft``, power spectrum, triangular mel
filters on ``1127 ln(1 + f / 700)`` (or librosa's Slaney filters), ``log(max(., float32 eps))``;
MFCC: orthonormal DCT-II of the log-mel energies, c0 replaced by the log energy when
``use_energy``, then Kaldi's lifter ``1 + Q/2 sin(pi i / Q)``.

Two ways to compute the spectrum: ``dft="fft"`` (``torch.fft.rfft``, float32: training on any
device) and ``dft="matmul"`` (one matrix product, evaluated only on the FFT bins the mel filters
touch, in ``compute_dtype``): every runtime has MatMul, so this is
the form an audio-in graph exports (:mod:`stateport.nn.audio_in`). The steps before the spectrum
(DC removal, preemphasis, window) are float32 as Kaldi computes them, so the spectrum sees the
same rounded samples kaldi-native-fbank does. Why float64 for the spectrum: a float32 DFT errs
by ~1e-8 of a frame's largest bin, which is ~1e-3 in log units for a bin 100 dB below it;
kaldi-native-fbank's own FFT has that float32 error (measured on identical input), so in float64
the twin's difference to knf is knf's error alone rather than the sum of two
(``tests/nn/test_torch_frontend.py``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from stateport.errors import InvalidInputError
from stateport.runtime.frontend import FrontendConfig, knf_frame_options, knf_mel_options

__all__ = ["TorchFrontend", "mel_banks", "kaldi_mel_banks", "slaney_mel_banks", "kaldi_window", "kaldi_dct_matrix",
           "kaldi_lifter", "dft_basis", "kaldi_reference_features", "knf_mel_matrix", "knf_window", "DFT_MODES"]

DFT_MODES = ("fft", "matmul")


def _mel_scale(freq_hz: np.ndarray) -> np.ndarray:
    return 1127.0 * np.log(1.0 + freq_hz / 700.0)


def kaldi_window(config: FrontendConfig) -> np.ndarray:
    """Analysis window ``[L]`` float64 (Kaldi's symmetric definitions, denominator L - 1;
    "hann-periodic": denominator L)."""
    length = config.frame_length_samples
    a = 2.0 * math.pi / (length - 1) if length > 1 else 0.0
    n = np.arange(length, dtype=np.float64)
    if config.window == "hann-periodic":
        return 0.5 - 0.5 * np.cos(2.0 * math.pi / length * n)
    if config.window == "povey":
        return (0.5 - 0.5 * np.cos(a * n)) ** 0.85
    if config.window == "hann":
        return 0.5 - 0.5 * np.cos(a * n)
    if config.window == "hamming":
        return 0.54 - 0.46 * np.cos(a * n)
    raise InvalidInputError(f"window must be one of povey, hann, hann-periodic, hamming; got {config.window!r}")


def mel_banks(config: FrontendConfig) -> np.ndarray:
    """The config's mel filters ``[num_mel_bins, N_fft // 2 + 1]`` float64."""
    return slaney_mel_banks(config) if config.mel_filters == "slaney" else kaldi_mel_banks(config)


def kaldi_mel_banks(config: FrontendConfig) -> np.ndarray:
    """Triangular mel filters ``[num_mel_bins, N_fft // 2 + 1]`` float64, as Kaldi builds them.

    Kaldi evaluates the triangles on FFT bins ``0 .. N_fft/2 - 1`` only: the Nyquist column
    stays zero.
    """
    fft_size = config.fft_size_samples
    num_bins = config.num_mel_bins
    fft_bin_width_hz = config.sample_rate_hz / fft_size
    mel_low = _mel_scale(np.float64(config.low_freq_hz))
    mel_high = _mel_scale(np.float64(config.effective_high_freq_hz))
    mel_delta = (mel_high - mel_low) / (num_bins + 1)
    left = mel_low + np.arange(num_bins)[:, None] * mel_delta
    center = left + mel_delta
    right = center + mel_delta
    mel = _mel_scale(fft_bin_width_hz * np.arange(fft_size // 2, dtype=np.float64))[None, :]
    rising = (mel - left) / (center - left)
    falling = (right - mel) / (right - center)
    weights = np.where(mel <= center, rising, falling)
    weights = np.where((mel > left) & (mel < right), weights, 0.0)
    return np.concatenate([weights, np.zeros((num_bins, 1))], axis=1)


def _slaney_mel(freq_hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa's default): linear below 1 kHz, logarithmic above."""
    linear = freq_hz / (200.0 / 3.0)
    log_part = 15.0 + np.log(np.maximum(freq_hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(freq_hz >= 1000.0, log_part, linear)


def _slaney_hz(mel: np.ndarray) -> np.ndarray:
    linear = mel * (200.0 / 3.0)
    log_part = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0))
    return np.where(mel >= 15.0, log_part, linear)


def slaney_mel_banks(config: FrontendConfig) -> np.ndarray:
    """librosa's default mel filters ``[num_mel_bins, N_fft // 2 + 1]`` float64.

    Triangles between mel-equidistant edges on Slaney's scale, evaluated on every FFT bin
    (Nyquist included), each scaled by ``2 / (right - left)`` Hz so that it has unit area.
    """
    fft_size = config.fft_size_samples
    fft_hz = np.linspace(0.0, 0.5 * config.sample_rate_hz, fft_size // 2 + 1)
    edges_mel = np.linspace(_slaney_mel(np.float64(config.low_freq_hz)),
                            _slaney_mel(np.float64(config.effective_high_freq_hz)), config.num_mel_bins + 2)
    edges_hz = _slaney_hz(edges_mel)
    widths = np.diff(edges_hz)
    ramps = edges_hz[:, None] - fft_hz[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    return weights * (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]


def kaldi_dct_matrix(num_ceps: int, num_mel_bins: int) -> np.ndarray:
    """Orthonormal DCT-II rows ``[num_ceps, num_mel_bins]`` float64 (Kaldi ComputeDctMatrix)."""
    k = np.arange(num_ceps, dtype=np.float64)[:, None]
    n = np.arange(num_mel_bins, dtype=np.float64)[None, :]
    dct = np.sqrt(2.0 / num_mel_bins) * np.cos(math.pi / num_mel_bins * (n + 0.5) * k)
    dct[0, :] = np.sqrt(1.0 / num_mel_bins)
    return dct


def kaldi_lifter(num_ceps: int, cepstral_lifter: float) -> np.ndarray:
    """Cepstral lifter coefficients ``[num_ceps]`` float64 (all ones when Q == 0)."""
    if cepstral_lifter == 0.0:
        return np.ones(num_ceps)
    i = np.arange(num_ceps, dtype=np.float64)
    return 1.0 + 0.5 * cepstral_lifter * np.sin(math.pi * i / cepstral_lifter)


def mel_support(banks: np.ndarray) -> tuple[int, int]:
    """First and last FFT bin (inclusive) where any mel filter is non-zero."""
    used = np.flatnonzero(np.any(banks != 0.0, axis=0))
    return int(used[0]), int(used[-1])


def dft_basis(config: FrontendConfig, first_bin: int, last_bin: int) -> np.ndarray:
    """Real DFT ``[L, 2 K]`` float64 for bins ``first_bin..last_bin`` (K of them).

    ``frames [.., L] @ basis`` gives ``[re | im]`` of the zero-padded ``N_fft``-point DFT of
    the frames (only the first L rows of the DFT matrix meet non-zero samples).
    """
    length, fft_size = config.frame_length_samples, config.fft_size_samples
    n = np.arange(length, dtype=np.int64)[:, None]
    k = np.arange(first_bin, last_bin + 1, dtype=np.int64)[None, :]
    # Reduce n k mod N in integers first: exact angles, no float64 error growing with n k.
    angle = (2.0 * math.pi / fft_size) * ((n * k) % fft_size).astype(np.float64)
    return np.concatenate([np.cos(angle), -np.sin(angle)], axis=1)


class TorchFrontend(nn.Module):
    """Batched Kaldi fbank / MFCC: waveforms ``[B, N]`` float in [-1, 1] -> ``[B, T, F]``.

    ``T = config.num_frames(N)`` and ``F = config.num_features``. No trainable parameters;
    the window, mel filters, DCT and lifter are non-persistent buffers (derived from the
    config, so they follow ``.to(device)`` and stay out of ``state_dict``). All rows of a
    batch have the same length N: with ``snip_edges=False`` the last frames mirror the end
    of the row, so zero-padded rows give different tail frames than their unpadded audio.

    ``dft``: "fft" (``torch.fft.rfft``) or "matmul" (the windowed DFT as one matrix product,
    exportable everywhere); ``compute_dtype``: the dtype of the spectrum and mel energies
    (float64 with "matmul" matches kaldi-native-fbank most closely; see the module docstring).
    :meth:`features_of_frames` is the per-frame part, for callers that frame the audio
    themselves (a streaming graph).
    """

    def __init__(self, config: FrontendConfig, *, dft: str = "fft", compute_dtype: torch.dtype = torch.float32):
        super().__init__()
        if not isinstance(config, FrontendConfig):
            raise InvalidInputError(f"TorchFrontend expects a FrontendConfig; got {type(config).__name__}")
        if dft not in DFT_MODES:
            raise InvalidInputError(f"TorchFrontend dft must be one of {list(DFT_MODES)}; got {dft!r}")
        if compute_dtype not in (torch.float32, torch.float64):
            raise InvalidInputError(f"TorchFrontend compute_dtype must be torch.float32 or torch.float64; "
                                    f"got {compute_dtype}")
        if dft == "fft" and compute_dtype != torch.float32:
            raise InvalidInputError("TorchFrontend: dft='fft' computes in float32; use dft='matmul' for float64")
        self.config = config
        self.dft = dft
        self.compute_dtype = compute_dtype
        f32 = torch.float32
        # kaldi-native-fbank's own window and mel filters (float32, as it computes them).
        banks = knf_mel_matrix(config).astype(np.float64)
        self.register_buffer("window", torch.tensor(knf_window(config), dtype=f32), persistent=False)
        if dft == "matmul":
            first, last = mel_support(banks)
            self.num_dft_bins = last - first + 1
            self.register_buffer("dft_basis", torch.tensor(dft_basis(config, first, last), dtype=compute_dtype),
                                 persistent=False)
            self.register_buffer("mel_banks", torch.tensor(banks[:, first:last + 1].T, dtype=compute_dtype),
                                 persistent=False)  # [K, num_mel_bins]
        else:
            self.register_buffer("mel_banks", torch.tensor(banks.T, dtype=f32), persistent=False)
        if config.kind == "mfcc":
            dct = kaldi_dct_matrix(config.num_ceps, config.num_mel_bins)
            lifter = kaldi_lifter(config.num_ceps, config.cepstral_lifter)
            self.register_buffer("dct", torch.tensor(dct, dtype=f32), persistent=False)
            self.register_buffer("lifter", torch.tensor(lifter, dtype=f32), persistent=False)
        self.log_floor = config.log_floor

    def extra_repr(self) -> str:
        c = self.config
        return (f"kind={c.kind}, num_features={c.num_features}, snip_edges={c.snip_edges}, dft={self.dft}, "
                f"compute_dtype={self.compute_dtype}")

    def frame_indices(self, num_samples: int, device=None) -> torch.Tensor:
        """Sample index of every window position ``[T, L]`` (long), mirrored at both ends."""
        c = self.config
        num_frames = c.num_frames(num_samples)
        starts = torch.arange(num_frames, device=device) * c.frame_shift_samples
        if not c.snip_edges:
            starts = starts + (c.frame_shift_samples // 2 - c.frame_length_samples // 2)
        idx = starts[:, None] + torch.arange(c.frame_length_samples, device=device)[None, :]
        if not c.snip_edges and num_frames > 0:
            # Kaldi mirrors out-of-range samples (s < 0 -> -s - 1, s >= N -> 2N - 1 - s),
            # repeatedly for very short signals: that is a reflection with period 2N.
            idx = torch.remainder(idx, 2 * num_samples)
            idx = torch.where(idx >= num_samples, 2 * num_samples - 1 - idx, idx)
        return idx

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        """``[B, N]`` float -> ``[B, T, F]`` float32 features."""
        if not isinstance(waveforms, torch.Tensor):
            raise InvalidInputError(
                f"TorchFrontend expects float waveforms [B, N]; got {type(waveforms).__name__}"
            )
        if waveforms.dim() != 2 or not waveforms.is_floating_point():
            raise InvalidInputError(
                f"TorchFrontend expects float waveforms [B, N]; got shape "
                f"{tuple(waveforms.shape)} dtype {waveforms.dtype}"
            )
        c = self.config
        batch, num_samples = waveforms.shape
        x = waveforms.to(torch.float32) * c.input_scale
        idx = self.frame_indices(num_samples, device=x.device)
        if idx.shape[0] == 0:
            return x.new_zeros(batch, 0, c.num_features)
        return self.features_of_frames(x[:, idx])  # frames [B, T, L]

    def features_of_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames ``[..., L]`` scaled by ``input_scale`` -> features ``[..., F]`` float32.

        With ``compute_dtype`` float64 every step is computed in float64 and rounded to float32
        where Kaldi computes in float32 (DC removal, preemphasis, window: one rounding per
        operation, so the values are those float32 arithmetic gives), and the spectrum and mel
        energies are not rounded. The frontend is then one float64 island in an exported graph,
        which fp16 converters and int8 quantizers leave alone.
        """
        c = self.config
        wide = self.compute_dtype == torch.float64
        to32 = _round_to_float32 if wide else (lambda t: t)
        frames = frames.to(self.compute_dtype)
        if c.remove_dc_offset:
            if wide:  # the mean as Kaldi computes it: a float32 sum in sample order, divided in float32
                mean = to32(kaldi_float32_sum(frames) / frames.shape[-1])
            else:
                mean = frames.mean(dim=-1)
            frames = to32(frames - mean[..., None])
        log_energy = None
        if c.use_energy:  # raw energy: before preemphasis and window (Kaldi raw_energy)
            energy = kaldi_float32_sum(to32(frames * frames)) if wide else frames.pow(2).sum(dim=-1)
            log_energy = torch.log(energy.clamp_min(self.log_floor)).to(torch.float32)
            if c.energy_floor > 0:
                log_energy = log_energy.clamp_min(math.log(c.energy_floor))
        if c.preemphasis != 0.0:
            previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)
            frames = to32(frames - to32(float(np.float32(c.preemphasis)) * previous))

        frames = to32(frames * self.window.to(self.compute_dtype))
        if self.dft == "matmul":
            spectrum = frames @ self.dft_basis  # [..., 2 K]: re | im
            re, im = spectrum[..., :self.num_dft_bins], spectrum[..., self.num_dft_bins:]
            power = re * re + im * im
        else:
            spectrum = torch.fft.rfft(frames, n=c.fft_size_samples, dim=-1)
            power = spectrum.real.pow(2) + spectrum.imag.pow(2)  # [..., N_fft/2 + 1]
        # The log in the same dtype: mel energies of int16-scaled audio reach 1e11, past float16's
        # range, so a graph converted to float16 outside the float64 island must only see logs.
        log_mel = torch.log((power @ self.mel_banks).clamp_min(self.log_floor)).to(torch.float32)

        if c.kind == "fbank":
            if log_energy is not None:
                return torch.cat([log_energy[..., None], log_mel], dim=-1)
            return log_mel
        ceps = log_mel @ self.dct.T
        if log_energy is not None:
            ceps = torch.cat([log_energy[..., None], ceps[..., 1:]], dim=-1)
        return ceps * self.lifter


def knf_window(config: FrontendConfig) -> np.ndarray:
    """kaldi-native-fbank's analysis window ``[L]`` for ``config``: float32, as knf stores it."""
    import kaldi_native_fbank as knf

    return np.asarray(knf.FeatureWindowFunction(knf_frame_options(config)).window, dtype=np.float32)


def knf_mel_matrix(config: FrontendConfig) -> np.ndarray:
    """kaldi-native-fbank's mel filters ``[num_mel_bins, N_fft / 2 + 1]`` float32 for ``config``.

    knf computes them in float32 (Kaldi's filters differ from :func:`kaldi_mel_banks`' float64
    ones by up to 1e-5, which is large near a triangle's foot); the twin and the reference use knf's.
    """
    import kaldi_native_fbank as knf

    banks = np.asarray(knf.MelBanks(knf_mel_options(config), knf_frame_options(config)).get_matrix(), np.float32)
    out = np.zeros((config.num_mel_bins, config.fft_size_samples // 2 + 1), np.float32)
    out[:, :banks.shape[1]] = banks
    return out


def kaldi_reference_features(samples: np.ndarray, config: FrontendConfig, *, rfft=None) -> np.ndarray:
    """Features of a whole signal ``[N]`` -> ``[T, F]`` float32, computed as kaldi-native-fbank computes
    them except for the FFT, which is exact (float64): the offline reference of audio-in graphs.

    Numpy only, independent of :class:`TorchFrontend`: knf's window and mel matrix (its own float32
    constants), its float32 steps in its order (the scaling, DC removal with a float32 sum in sample
    order, raw energy, preemphasis, window), then the power spectrum and mel energies in float64.
    ``rfft(frames [T, N_fft] float32) -> complex [T, N_fft / 2 + 1]`` replaces the exact FFT:
    with knf's own (``knf.Rfft``) this returns knf's features bit for bit
    (``tests/nn/test_torch_frontend.py``), so the two differ by knf's FFT alone, which is
    float32-accurate (errors of ~1e-8 of a frame's largest bin). ``snip_edges=True`` only.
    """
    c = config
    if not c.snip_edges:
        raise InvalidInputError("kaldi_reference_features frames with snip_edges=True only")
    length, shift, fft_size = c.frame_length_samples, c.frame_shift_samples, c.fft_size_samples
    scaled = np.multiply(np.asarray(samples, np.float32), np.float32(c.input_scale), dtype=np.float32)
    num_frames = c.num_frames(scaled.shape[0])
    if num_frames == 0:
        return np.zeros((0, c.num_features), np.float32)
    frames = scaled[np.arange(num_frames)[:, None] * shift + np.arange(length)[None, :]]
    if c.remove_dc_offset:
        total = np.cumsum(frames, axis=1, dtype=np.float32)[:, -1]  # numpy's float32 cumsum runs in order
        frames = frames - (total / np.float32(length)).astype(np.float32)[:, None]
    log_energy = None
    if c.use_energy:
        energy = np.cumsum(frames * frames, axis=1, dtype=np.float32)[:, -1]
        log_energy = np.log(np.maximum(energy, np.float32(c.log_floor)))
        if c.energy_floor > 0:
            log_energy = np.maximum(log_energy, np.float32(math.log(c.energy_floor)))
    if c.preemphasis != 0.0:
        previous = np.concatenate([frames[:, :1], frames[:, :-1]], axis=1)
        frames = frames - np.float32(c.preemphasis) * previous
    padded = np.zeros((num_frames, fft_size), np.float32)
    padded[:, :length] = frames * knf_window(c)
    spectrum = rfft(padded) if rfft is not None else np.fft.rfft(padded.astype(np.float64), axis=1)
    power = spectrum.real.astype(np.float64) ** 2 + spectrum.imag.astype(np.float64) ** 2
    log_mel = np.log(np.maximum(power @ knf_mel_matrix(c).T.astype(np.float64), c.log_floor)).astype(np.float32)
    if c.kind == "fbank":
        return log_mel if log_energy is None else np.concatenate([log_energy[:, None], log_mel], axis=1)
    ceps = log_mel @ kaldi_dct_matrix(c.num_ceps, c.num_mel_bins).T.astype(np.float32)
    if log_energy is not None:
        ceps[:, 0] = log_energy
    return (ceps * kaldi_lifter(c.num_ceps, c.cepstral_lifter).astype(np.float32)).astype(np.float32)


def kaldi_float32_sum(x: torch.Tensor) -> torch.Tensor:
    """``x [..., L]`` (float32 values, any float dtype) summed over the last axis as Kaldi sums a frame:
    in float32, in sample order (its DC removal and raw energy). Returns ``[...]`` in ``x``'s dtype.

    Why it matters: that sum errs by up to ~1.5 on 400 int16-scale samples, a DC offset the
    window's main lobe carries into the lowest mel bands, which preemphasis has left ~100 dB
    below a loud frame's peak: the exact mean moved a trained lstm-ctc's logits by 2.6e-4 from
    kaldi-native-fbank's. In an exported graph this is ONNX ``CumSum``, which ONNX Runtime
    accumulates in float32 in order (measured: equal to this loop bit for bit); torch's own
    cumsum accumulates in float64, so eager torch runs the loop.
    """
    x32 = x.to(torch.float32)
    if torch.onnx.is_in_onnx_export():
        # Back to x's dtype before taking the last sum: a float16 conversion of the graph leaves
        # float64 alone, and these sums (up to 1e7) overflow float16.
        return torch.cumsum(x32, dim=-1).to(x.dtype)[..., -1]
    total = x32[..., 0]
    for i in range(1, x32.shape[-1]):
        total = total + x32[..., i]
    return total.to(x.dtype)


def _round_to_float32(t: torch.Tensor) -> torch.Tensor:
    """A float64 tensor rounded to the nearest float32 values, kept in float64."""
    return t.to(torch.float32).to(torch.float64)
