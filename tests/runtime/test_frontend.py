"""Streaming frontend: any chunking of the audio gives the offline features; config checks."""

import math
import subprocess
import sys

import numpy as np
import pytest

from stateport.errors import InvalidInputError, NonFiniteInputError
from stateport.runtime.frontend import (
    LOG_FLOOR,
    FrontendConfig,
    StreamingFrontend,
    compute_features,
)

SAMPLE_RATE_HZ = 16000


def speech_like_signal(duration_s: float = 3.0, seed: int = 0) -> np.ndarray:
    """Chirps + noise + silence, float32 in [-1, 1] (a few seconds)."""
    rng = np.random.default_rng(seed)
    n = int(duration_s * SAMPLE_RATE_HZ)
    t = np.arange(n) / SAMPLE_RATE_HZ
    x = np.zeros(n)
    # Voiced-ish bursts: harmonic chirps with a syllable envelope.
    for start_s, dur_s, f0, f1 in [(0.2, 0.5, 120, 220), (0.9, 0.4, 200, 140), (1.6, 0.8, 150, 300)]:
        seg = (t >= start_s) & (t < start_s + dur_s)
        tau = t[seg] - start_s
        phase = 2 * np.pi * (f0 * tau + 0.5 * (f1 - f0) / dur_s * tau**2)
        env = np.sin(np.pi * tau / dur_s) ** 2
        x[seg] += env * sum(0.3 / k * np.sin(k * phase) for k in range(1, 8))
    # Fricative-ish noise burst, background noise, and a stretch of exact digital silence.
    seg = (t >= 2.5) & (t < 2.8)
    x[seg] += 0.1 * rng.standard_normal(seg.sum())
    x += 0.003 * rng.standard_normal(n)
    x[int(1.35 * SAMPLE_RATE_HZ) : int(1.5 * SAMPLE_RATE_HZ)] = 0.0
    return x.astype(np.float32)


def stream(signal: np.ndarray, config: FrontendConfig, chunk_sizes, pop_rng=None) -> np.ndarray:
    """Feed ``signal`` in the given chunk sizes (cycled); pop frames along the way."""
    frontend = StreamingFrontend(config)
    popped = []
    pos, k = 0, 0
    while pos < signal.size:
        size = chunk_sizes[k % len(chunk_sizes)]
        frontend.accept_waveform(signal[pos : pos + size])
        pos += size
        k += 1
        if pop_rng is None:
            popped.append(frontend.pop_frames())
        elif pop_rng.random() < 0.3:  # pop late and partially: must not matter
            popped.append(frontend.pop_frames(int(pop_rng.integers(0, 4))))
    frontend.input_finished()
    popped.append(frontend.pop_frames())
    assert frontend.num_frames_ready == 0
    return np.concatenate(popped, axis=0)


CONFIGS = {
    "fbank80": FrontendConfig(),
    # The sherpa-onnx/icefall setting: centred frames, mirrored edges.
    "fbank80_no_snip": FrontendConfig(snip_edges=False),
    "fbank_energy_hamming": FrontendConfig(num_mel_bins=40, use_energy=True, window="hamming",
                                           energy_floor=1.0, high_freq_hz=-400.0),
    "mfcc13_energy": FrontendConfig(kind="mfcc", num_mel_bins=23, use_energy=True),
    "mfcc20_no_snip_hann": FrontendConfig(kind="mfcc", num_mel_bins=40, num_ceps=20,
                                          snip_edges=False, window="hann"),
}


@pytest.fixture(scope="module")
def signal():
    return speech_like_signal()


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_streaming_equals_offline_for_any_chunking(signal, name):
    config = CONFIGS[name]
    offline = compute_features(signal, config)
    assert offline.shape == (config.num_frames(signal.size), config.num_features)
    assert offline.dtype == np.float32 and np.isfinite(offline).all()

    rng = np.random.default_rng(1)
    chunkings = {
        "20ms": [320],
        "odd": list(rng.choice([1, 7, 333, 1601], size=64)),
        "random": list(rng.integers(1, 2000, size=64)),
    }
    for chunking, sizes in chunkings.items():
        streamed = stream(signal, config, sizes, pop_rng=np.random.default_rng(2))
        assert streamed.shape == offline.shape, chunking
        max_diff = float(np.abs(streamed - offline).max())
        assert max_diff <= 1e-5, (chunking, max_diff)


@pytest.mark.parametrize("name", ["fbank80", "fbank80_no_snip", "mfcc13_energy"])
def test_single_sample_chunks_equal_offline(signal, name):
    config = CONFIGS[name]
    offline = compute_features(signal, config)
    streamed = stream(signal, config, [1])
    assert streamed.shape == offline.shape
    assert float(np.abs(streamed - offline).max()) <= 1e-5


@pytest.mark.parametrize("snip_edges", [True, False])
@pytest.mark.parametrize("num_samples", [0, 1, 79, 80, 159, 399, 400, 401, 560, 16037])
def test_frame_count_and_tail_for_short_and_odd_lengths(signal, snip_edges, num_samples):
    # snip_edges=False mirrors the end of the signal; the mirrored frames must come out the
    # same whether the input arrived at once or in pieces (checked on knf 1.23: exact).
    config = FrontendConfig(snip_edges=snip_edges)
    x = signal[4000 : 4000 + num_samples]
    offline = compute_features(x, config)
    assert offline.shape == (config.num_frames(num_samples), 80)
    streamed = stream(x, config, [1, 7, 333, 1601, 2])
    assert streamed.shape == offline.shape
    if offline.size:
        assert float(np.abs(streamed - offline).max()) <= 1e-5


def test_frames_become_ready_only_when_their_window_is_complete(signal):
    config = FrontendConfig(snip_edges=False)
    frontend = StreamingFrontend(config)
    frontend.accept_waveform(signal[:1000])
    # Frame k covers samples [k*160 - 120, k*160 + 280): frames 0..4 fit in 1000 samples.
    assert frontend.num_frames_ready == 5
    assert config.first_sample_of_frame(4) + config.frame_length_samples <= 1000
    assert config.first_sample_of_frame(5) + config.frame_length_samples > 1000
    frontend.input_finished()
    assert frontend.num_frames_ready == config.num_frames(1000) == 6


def test_known_values_silence_and_input_scale(signal):
    config = FrontendConfig(remove_dc_offset=True)
    silence = compute_features(np.zeros(4000, np.float32), config)
    np.testing.assert_allclose(silence, math.log(LOG_FLOOR), atol=1e-6)
    # Power spectrum: halving input_scale lowers every (unfloored) log-mel by ln 4.
    loud = signal[3200:9600]
    full = compute_features(loud, config)
    half = compute_features(loud, FrontendConfig(input_scale=16384.0))
    np.testing.assert_allclose(full - half, math.log(4.0), atol=2e-4)


def test_input_validation():
    frontend = StreamingFrontend(FrontendConfig())
    with pytest.raises(InvalidInputError, match="1-D"):
        frontend.accept_waveform(np.zeros((2, 100), np.float32))
    with pytest.raises(InvalidInputError, match="divide int16"):
        frontend.accept_waveform(np.zeros(100, np.int16))
    bad = np.zeros(100, np.float32)
    bad[17] = np.nan
    with pytest.raises(NonFiniteInputError, match="index 17"):
        frontend.accept_waveform(bad)
    with pytest.raises(InvalidInputError, match="max_frames"):
        frontend.pop_frames(-1)
    frontend.input_finished()
    with pytest.raises(InvalidInputError, match="reset"):
        frontend.accept_waveform(np.zeros(10, np.float32))
    frontend.reset()
    frontend.accept_waveform(np.zeros(800, np.float32))
    assert frontend.num_frames_ready == 3 and frontend.next_frame_index == 0


def test_config_round_trip_and_sizes():
    config = FrontendConfig(kind="mfcc", num_mel_bins=23, snip_edges=False, high_freq_hz=-400)
    d = config.to_dict()
    assert d["high_freq_hz"] == -400.0 and isinstance(d["high_freq_hz"], float)
    assert FrontendConfig.from_dict(d) == config
    assert (config.frame_length_samples, config.frame_shift_samples, config.fft_size_samples) == (400, 160, 512)
    assert config.num_features == 13
    assert config.effective_high_freq_hz == 7600.0
    assert FrontendConfig(use_energy=True).num_features == 81
    assert FrontendConfig(sample_rate_hz=8000, frame_length_ms=32).fft_size_samples == 256


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"kind": "plp"}, "kind must be one of"),
        ({"window": "blackman"}, "window must be one of"),
        ({"sample_rate_hz": 16000.5}, "sample_rate_hz must be an int"),
        ({"num_mel_bins": 2}, "num_mel_bins must be >= 3"),
        ({"num_mel_bins": 256}, "num_mel_bins too large"),
        ({"kind": "mfcc", "num_mel_bins": 10, "num_ceps": 13}, "num_ceps"),
        ({"high_freq_hz": 9000.0}, "upper edge of 9000.0 Hz"),
        ({"low_freq_hz": 4000.0, "high_freq_hz": 3000.0}, "upper edge"),
        ({"dither": 1.0}, "dither must be 0.0"),
        ({"preemphasis": 1.5}, "preemphasis"),
        ({"input_scale": 0.0}, "input_scale"),
        ({"frame_length_ms": float("nan")}, "finite"),
        ({"snip_edges": "yes"}, "bool"),
    ],
)
def test_config_rejects_bad_values(overrides, message):
    with pytest.raises(InvalidInputError, match=message):
        FrontendConfig.from_dict(overrides)


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(InvalidInputError, match=r"unknown frontend config keys \['fft_size'\]"):
        FrontendConfig.from_dict({"kind": "fbank", "fft_size": 512})
    with pytest.raises(InvalidInputError, match="mapping"):
        FrontendConfig.from_dict([("kind", "fbank")])


def test_runtime_modules_do_not_import_torch():
    code = (
        "import sys\n"
        "import stateport.runtime.frontend, stateport.runtime.ring_buffer, stateport.runtime.decoders\n"
        "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
