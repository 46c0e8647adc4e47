"""TorchFrontend (training) computes the same features as the runtime frontend (knf)."""

import numpy as np
import pytest
import torch

from stateport.errors import InvalidInputError
from stateport.nn.frontend import TorchFrontend, kaldi_mel_banks, kaldi_reference_features
from stateport.runtime.frontend import FrontendConfig, compute_features

SAMPLE_RATE_HZ = 16000


def speech_like_batch(batch: int = 3, duration_s: float = 2.0, seed: int = 0) -> np.ndarray:
    """[B, N] float32: harmonic chirps + noise bursts + background noise + digital silence."""
    rng = np.random.default_rng(seed)
    n = int(duration_s * SAMPLE_RATE_HZ)
    t = np.arange(n) / SAMPLE_RATE_HZ
    rows = []
    for b in range(batch):
        x = 0.003 * (b + 1) * rng.standard_normal(n)
        for start_s in (0.1, 0.8, 1.3):
            dur_s = 0.4
            f0, f1 = rng.uniform(90, 300, size=2)
            seg = (t >= start_s) & (t < start_s + dur_s)
            tau = t[seg] - start_s
            phase = 2 * np.pi * (f0 * tau + 0.5 * (f1 - f0) / dur_s * tau**2)
            env = np.sin(np.pi * tau / dur_s) ** 2
            x[seg] += env * sum(0.4 / k * np.sin(k * phase) for k in range(1, 10))
        burst = (t >= 0.55) & (t < 0.7)
        x[burst] += 0.2 * rng.standard_normal(burst.sum())
        x[int(1.75 * SAMPLE_RATE_HZ) : int(1.9 * SAMPLE_RATE_HZ)] = 0.0
        rows.append(x)
    # Odd length so the last frames of snip_edges=False mirror a partial hop.
    return np.stack(rows)[:, : n - 37].astype(np.float32)


CONFIGS = {
    "fbank80": FrontendConfig(),
    "fbank80_no_snip": FrontendConfig(snip_edges=False),
    "fbank40_energy_hamming": FrontendConfig(num_mel_bins=40, use_energy=True, window="hamming",
                                             high_freq_hz=-400.0, energy_floor=1.0),
    "fbank64_hann_no_dc": FrontendConfig(num_mel_bins=64, window="hann", remove_dc_offset=False,
                                         preemphasis=0.0, low_freq_hz=60.0, high_freq_hz=7000.0),
    # Google's speech-embedding frontend (librosa's filters and periodic hann window).
    "fbank32_slaney_hann_periodic": FrontendConfig(num_mel_bins=32, window="hann-periodic", mel_filters="slaney",
                                                   remove_dc_offset=False, preemphasis=0.0, low_freq_hz=60.0,
                                                   high_freq_hz=3800.0, input_scale=32767.0),
    "mfcc13": FrontendConfig(kind="mfcc", num_mel_bins=23),
    "mfcc13_energy_no_snip": FrontendConfig(kind="mfcc", num_mel_bins=23, use_energy=True, snip_edges=False),
    "mfcc40_no_lifter_8k": FrontendConfig(kind="mfcc", sample_rate_hz=8000, num_mel_bins=40,
                                          num_ceps=40, cepstral_lifter=0.0, high_freq_hz=3800.0),
}

# Measured (torch 2.13 CPU, knf 1.23, both float32) on these signals, max |diff| over all
# rows, frames and features: log-mel fbank 9.7e-5 (fbank80), 3.0e-4 (fbank80_no_snip),
# 8.8e-5 (with energy column), 1.6e-4 (hann, no DC removal); MFCC 1.5e-4 (mfcc13),
# 1.7e-4 (with energy, no snip), 5.0e-5 (8 kHz, no lifter); short/mirrored signals <= 7.5e-5.
# The largest differences sit in mel bins 1-2 (the narrow 20-60 Hz filters) of loud frames,
# where float32 rounding of the much larger total energy dominates; 99.9 % of values agree
# within 8e-5. The DFT as a matrix product (float32 or float64, what audio-in graphs export)
# measures within the same bounds: the differences are knf's own float32 FFT rounding
# (test_float64_twin_is_exact). Tolerance: 1e-3.
TOLERANCE = 1e-3


# The three ways to compute the spectrum: rfft in float32 (training), the DFT as a matrix product
# in float32, and in float64 (what audio-in graphs export, stateport.nn.audio_in).
MODES = {"fft": {}, "matmul32": {"dft": "matmul"}, "matmul64": {"dft": "matmul", "compute_dtype": torch.float64}}


@pytest.fixture(scope="module")
def waveforms():
    return speech_like_batch()


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_torch_frontend_matches_runtime_frontend(waveforms, name, mode):
    config = CONFIGS[name]
    signal = waveforms
    if config.sample_rate_hz != SAMPLE_RATE_HZ:
        signal = waveforms[:, ::2].copy()  # content does not matter, only the rate label
    frontend = TorchFrontend(config, **MODES[mode])
    with torch.no_grad():
        batched = frontend(torch.from_numpy(signal)).numpy()
    num_frames = config.num_frames(signal.shape[1])
    assert batched.shape == (signal.shape[0], num_frames, config.num_features)
    for b in range(signal.shape[0]):
        reference = compute_features(signal[b], config)
        max_diff = float(np.abs(batched[b] - reference).max())
        assert max_diff <= TOLERANCE, (name, b, max_diff)


@pytest.mark.parametrize("num_samples", [1, 100, 399, 400, 401, 559])
def test_short_signals_and_mirroring(waveforms, num_samples):
    for snip_edges in (True, False):
        config = FrontendConfig(snip_edges=snip_edges)
        x = waveforms[:1, 3000 : 3000 + num_samples]
        with torch.no_grad():
            out = TorchFrontend(config)(torch.from_numpy(x)).numpy()[0]
        reference = compute_features(x[0], config)
        assert out.shape == reference.shape == (config.num_frames(num_samples), 80)
        if out.size:
            assert float(np.abs(out - reference).max()) <= TOLERANCE


def knf_rfft(frames: np.ndarray) -> np.ndarray:
    """kaldi-native-fbank's own FFT of float32 frames ``[T, N]`` -> complex ``[T, N / 2 + 1]``."""
    import kaldi_native_fbank as knf

    rfft = knf.Rfft(frames.shape[1])
    out = np.empty((frames.shape[0], frames.shape[1] // 2 + 1), np.complex128)
    for i, frame in enumerate(frames):
        packed = np.asarray(rfft.compute(frame.tolist()), np.float32)  # R0, R(N/2), R1, I1, R2, I2, ...
        out[i].real = np.concatenate([packed[:1], packed[2::2], packed[1:2]])
        out[i].imag = np.concatenate([[0.0], packed[3::2], [0.0]])
    return out


SNIPPED = sorted(name for name, c in CONFIGS.items() if c.snip_edges)


@pytest.mark.parametrize("name", [n for n in SNIPPED if CONFIGS[n].kind == "fbank"])
def test_reference_is_knf_but_for_its_fft(waveforms, name):
    """The audio-in proof's reference: knf's computation with an exact FFT. Given knf's own FFT it
    returns knf's features up to float32 rounding of what follows the FFT (which it keeps in
    float64); the exact FFT is what moves it further (knf's FFT is float32-accurate). Log-mel
    only: an MFCC's float32 DCT sums in another order than knf's (1.5e-5 on near-zero terms)."""
    config = CONFIGS[name]
    row = waveforms[0] if config.sample_rate_hz == SAMPLE_RATE_HZ else waveforms[0, ::2].copy()
    knf_features = compute_features(row, config)
    with_knf_fft = kaldi_reference_features(row, config, rfft=knf_rfft)
    scale = np.maximum(1.0, np.abs(knf_features))
    assert float((np.abs(with_knf_fft - knf_features) / scale).max()) <= 1e-6
    assert float(np.abs(kaldi_reference_features(row, config) - knf_features).max()) <= TOLERANCE


@pytest.mark.parametrize("name", SNIPPED)
def test_float64_twin_computes_the_reference(waveforms, name):
    """The float64 twin (what audio-in graphs export) equals the numpy reference: measured bit for
    bit on these signals; asserted to float32 rounding."""
    config = CONFIGS[name]
    row = waveforms[1] if config.sample_rate_hz == SAMPLE_RATE_HZ else waveforms[1, ::2].copy()
    frontend = TorchFrontend(config, dft="matmul", compute_dtype=torch.float64)
    with torch.no_grad():
        got = frontend(torch.from_numpy(row[None]))[0].numpy()
    reference = kaldi_reference_features(row, config)
    assert float((np.abs(got - reference) / np.maximum(1.0, np.abs(reference))).max()) <= 1e-6


def test_mel_banks_are_kaldi_triangles():
    banks = kaldi_mel_banks(FrontendConfig())
    assert banks.shape == (80, 257)
    assert np.all(banks >= 0) and np.all(banks <= 1)
    assert np.all(banks[:, -1] == 0)  # Kaldi never uses the Nyquist bin
    assert np.all(banks.sum(axis=1) > 0)  # no empty filter


def test_no_parameters_no_state_and_gradients_flow(waveforms):
    frontend = TorchFrontend(FrontendConfig())
    assert list(frontend.parameters()) == []
    assert frontend.state_dict() == {}
    x = torch.from_numpy(waveforms[:1, :4000]).requires_grad_(True)
    frontend(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_input_validation():
    frontend = TorchFrontend(FrontendConfig())
    with pytest.raises(InvalidInputError, match=r"\[B, N\]"):
        frontend(torch.zeros(100))
    with pytest.raises(InvalidInputError, match=r"\[B, N\]"):
        frontend(torch.zeros(2, 100, dtype=torch.int16))
    assert frontend(torch.zeros(2, 100)).shape == (2, 0, 80)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ["fbank80_no_snip", "mfcc13_energy_no_snip"])
def test_torch_frontend_on_cuda_matches_runtime_frontend(waveforms, name):
    config = CONFIGS[name]
    frontend = TorchFrontend(config).to("cuda")
    with torch.no_grad():
        batched = frontend(torch.from_numpy(waveforms).to("cuda")).cpu().numpy()
    for b in range(waveforms.shape[0]):
        reference = compute_features(waveforms[b], config)
        assert float(np.abs(batched[b] - reference).max()) <= TOLERANCE
