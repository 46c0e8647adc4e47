"""Streaming Kaldi-compatible feature frontend (fbank / MFCC) for the client side.

The numbers come from ``kaldi_native_fbank`` (the incremental C++ Kaldi fbank that
sherpa-onnx uses); this module only describes the computation as data
(``FrontendConfig``, which travels in the model card) and drives the library so that
features computed from any chunking of the audio equal the offline features.

Scale: samples are float in [-1, 1]. Kaldi (and every model trained on Kaldi features)
sees int16-scale samples, and the scale matters because the log floor and energy floor are
absolute: features are computed on ``samples * input_scale`` (default 32768.0).

Only numpy and kaldi_native_fbank are imported here: this module is part of the runtime.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

import kaldi_native_fbank as knf
import numpy as np

from stateport.errors import InvalidInputError, NonFiniteInputError

__all__ = [
    "FrontendConfig",
    "StreamingFrontend",
    "compute_features",
    "FEATURE_KINDS",
    "WINDOW_TYPES",
    "MEL_FILTERS",
    "LOG_FLOOR",
]

FEATURE_KINDS = ("fbank", "mfcc")

# Our window names -> kaldi_native_fbank window_type. "hann" is Kaldi's symmetric
# "hanning" window (0.5 - 0.5 cos(2 pi n / (N - 1))); knf's own "hann" is the *periodic*
# variant (denominator N), which Kaldi does not have: ours is "hann-periodic" (librosa's and
# torch's default, which a pretrained frontend such as Google's speech embedding expects).
WINDOW_TYPES = {"povey": "povey", "hann": "hanning", "hann-periodic": "hann", "hamming": "hamming"}

# Mel filter conventions. "kaldi": triangles on 1127 ln(1 + f / 700), unnormalised, Nyquist
# bin left out. "slaney": librosa's default (Slaney's mel scale, linear below 1 kHz, each
# triangle scaled to unit area), which knf computes in its librosa mode.
MEL_FILTERS = ("kaldi", "slaney")

# Kaldi floors mel energies (and the raw energy) at float32 epsilon before the log.
LOG_FLOOR = float(np.finfo(np.float32).eps)


def _float32_samples(sample_rate_hz: int, duration_ms: float) -> int:
    # Kaldi/knf compute window sizes in float32: int(samp_freq * 0.001f * ms). Repeat the
    # exact arithmetic so our frame counts never disagree with the library's by one.
    product = np.float32(sample_rate_hz) * np.float32(0.001)
    return int(np.float32(product) * np.float32(duration_ms))


@dataclass(frozen=True)
class FrontendConfig:
    """How features are computed: a Kaldi-compatible log-mel fbank or MFCC.

    Output per frame: fbank ``[num_mel_bins]`` (``[1 + num_mel_bins]`` with ``use_energy``,
    log energy first); MFCC ``[num_ceps]`` (c0 replaced by the log energy with
    ``use_energy``). Fixed Kaldi conventions not exposed as fields: FFT size is the next
    power of two of the frame length, power spectrum, natural log, log floor float32 epsilon,
    raw energy (before preemphasis and window), energy first.

    Fields:
        kind: "fbank" or "mfcc".
        sample_rate_hz: the sample rate the audio must have.
        frame_length_ms, frame_shift_ms: window length and hop.
        num_mel_bins: number of triangular mel filters.
        num_ceps: MFCC coefficients kept (mfcc only; <= num_mel_bins).
        cepstral_lifter: Kaldi's sinusoidal lifter Q (mfcc only; 0 disables it).
        low_freq_hz: lowest mel-filter edge.
        high_freq_hz: highest edge; 0 means Nyquist, negative means Nyquist + value (Kaldi).
        window: "povey", "hann" (Kaldi "hanning", symmetric), "hann-periodic" (librosa's
            and torch's hann) or "hamming".
        mel_filters: "kaldi" or "slaney" (librosa's default filters; see ``MEL_FILTERS``).
        preemphasis: pre-emphasis coefficient in [0, 1].
        remove_dc_offset: subtract each frame's mean first.
        dither: must be 0.0; deployed features must be deterministic so that streaming
            equals offline and exports can be verified (augment with noise in training).
        snip_edges: True: only frames that fit in the signal; False: frames centred on
            ``k * shift + shift // 2`` with the signal mirrored at both ends (sherpa-onnx).
        use_energy: add the log frame energy (fbank: extra first column; mfcc: as c0).
        energy_floor: floor of the energy (linear, on the scaled samples); 0 = none.
        input_scale: factor applied to float samples before the computation.
    """

    kind: str = "fbank"
    sample_rate_hz: int = 16000
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    num_mel_bins: int = 80
    num_ceps: int = 13
    cepstral_lifter: float = 22.0
    low_freq_hz: float = 20.0
    high_freq_hz: float = 0.0
    window: str = "povey"
    mel_filters: str = "kaldi"
    preemphasis: float = 0.97
    remove_dc_offset: bool = True
    dither: float = 0.0
    snip_edges: bool = True
    use_energy: bool = False
    energy_floor: float = 0.0
    input_scale: float = 32768.0

    def __post_init__(self) -> None:
        _check_choice("kind", self.kind, FEATURE_KINDS)
        _check_choice("window", self.window, tuple(WINDOW_TYPES))
        _check_choice("mel_filters", self.mel_filters, MEL_FILTERS)
        for name in ("sample_rate_hz", "num_mel_bins", "num_ceps"):
            _check_int(name, getattr(self, name))
        for name in ("remove_dc_offset", "snip_edges", "use_energy"):
            value = getattr(self, name)
            if not isinstance(value, (bool, np.bool_)):
                raise InvalidInputError(f"frontend {name} must be a bool; got {value!r}")
            object.__setattr__(self, name, bool(value))
        for name in (
            "frame_length_ms", "frame_shift_ms", "cepstral_lifter", "low_freq_hz",
            "high_freq_hz", "preemphasis", "dither", "energy_floor", "input_scale",
        ):
            object.__setattr__(self, name, _check_float(name, getattr(self, name)))

        if self.sample_rate_hz <= 0:
            raise InvalidInputError(f"frontend sample_rate_hz must be > 0; got {self.sample_rate_hz}")
        if self.frame_length_ms <= 0 or self.frame_length_samples < 1:
            raise InvalidInputError(
                f"frontend frame_length_ms must give at least one sample; got {self.frame_length_ms}"
            )
        if self.frame_shift_ms <= 0 or self.frame_shift_samples < 1:
            raise InvalidInputError(
                f"frontend frame_shift_ms must give at least one sample; got {self.frame_shift_ms}"
            )
        if self.num_mel_bins < 3:
            raise InvalidInputError(f"frontend num_mel_bins must be >= 3; got {self.num_mel_bins}")
        if self.num_ceps < 1 or (self.kind == "mfcc" and self.num_ceps > self.num_mel_bins):
            raise InvalidInputError(
                f"frontend num_ceps must be in [1, num_mel_bins={self.num_mel_bins}]; "
                f"got {self.num_ceps}"
            )
        if self.cepstral_lifter < 0:
            raise InvalidInputError(f"frontend cepstral_lifter must be >= 0; got {self.cepstral_lifter}")
        nyquist_hz = 0.5 * self.sample_rate_hz
        if not 0.0 <= self.low_freq_hz < nyquist_hz:
            raise InvalidInputError(
                f"frontend low_freq_hz must be in [0, {nyquist_hz}); got {self.low_freq_hz}"
            )
        if not (self.low_freq_hz < self.effective_high_freq_hz <= nyquist_hz):
            raise InvalidInputError(
                f"frontend high_freq_hz={self.high_freq_hz} gives an upper edge of "
                f"{self.effective_high_freq_hz} Hz; expected one in (low_freq_hz="
                f"{self.low_freq_hz}, Nyquist={nyquist_hz}] (0 = Nyquist, < 0 = offset from it)"
            )
        if not 0.0 <= self.preemphasis <= 1.0:
            raise InvalidInputError(f"frontend preemphasis must be in [0, 1]; got {self.preemphasis}")
        if self.dither != 0.0:
            raise InvalidInputError(
                f"frontend dither must be 0.0 (deterministic features, so streaming == offline "
                f"and exports can be verified); got {self.dither}"
            )
        if self.energy_floor < 0:
            raise InvalidInputError(f"frontend energy_floor must be >= 0; got {self.energy_floor}")
        if self.input_scale <= 0:
            raise InvalidInputError(f"frontend input_scale must be > 0; got {self.input_scale}")
        # snip_edges=False is kept: measured with knf 1.23, streaming (ragged chunks, 1-sample
        # chunks) equals the offline computation exactly, including the mirrored frames at the
        # end of input, because knf computes those frames only after input_finished().
        # (tests/runtime/test_frontend.py checks it for both settings.)

        # Let the library reject what it cannot compute (e.g. so many mel bins for this FFT
        # size that a filter is empty), with our error type.
        try:
            knf.MelBanks(knf_mel_options(self), knf_frame_options(self))
        except ValueError as exc:
            raise InvalidInputError(
                f"frontend config cannot be computed: {exc} (num_mel_bins={self.num_mel_bins}, "
                f"fft_size_samples={self.fft_size_samples}, band {self.low_freq_hz}-"
                f"{self.effective_high_freq_hz} Hz)"
            ) from exc

    # ------------------------------------------------------------------ derived sizes
    @property
    def frame_length_samples(self) -> int:
        """Window length in samples (Kaldi's float32 rounding: truncation)."""
        return _float32_samples(self.sample_rate_hz, self.frame_length_ms)

    @property
    def frame_shift_samples(self) -> int:
        """Hop between frames in samples."""
        return _float32_samples(self.sample_rate_hz, self.frame_shift_ms)

    @property
    def fft_size_samples(self) -> int:
        """FFT size: the next power of two >= frame_length_samples (Kaldi default)."""
        return 1 << max(0, (self.frame_length_samples - 1).bit_length())

    @property
    def effective_high_freq_hz(self) -> float:
        """Upper mel edge in Hz after Kaldi's convention (0 = Nyquist, < 0 = offset)."""
        nyquist_hz = 0.5 * self.sample_rate_hz
        return self.high_freq_hz if self.high_freq_hz > 0 else nyquist_hz + self.high_freq_hz

    @property
    def num_features(self) -> int:
        """Feature dimension F of one frame."""
        if self.kind == "mfcc":
            return self.num_ceps
        return self.num_mel_bins + (1 if self.use_energy else 0)

    @property
    def log_floor(self) -> float:
        """Floor applied to mel (and raw) energies before the log: float32 epsilon."""
        return LOG_FLOOR

    def num_frames(self, num_samples: int) -> int:
        """Frames the offline computation yields for ``num_samples`` samples (Kaldi rule)."""
        if not _is_int(num_samples) or num_samples < 0:
            raise InvalidInputError(f"num_samples must be an int >= 0; got {num_samples!r}")
        length, shift = self.frame_length_samples, self.frame_shift_samples
        if self.snip_edges:
            return 0 if num_samples < length else 1 + (int(num_samples) - length) // shift
        return (int(num_samples) + shift // 2) // shift

    def first_sample_of_frame(self, frame_index: int) -> int:
        """Absolute index of the first sample of frame ``frame_index`` (< 0: mirrored)."""
        shift = self.frame_shift_samples
        if self.snip_edges:
            return frame_index * shift
        return frame_index * shift + shift // 2 - self.frame_length_samples // 2

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of every field (the model card's ``frontend`` entry)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FrontendConfig":
        """Build from ``to_dict`` output; missing keys take defaults, unknown keys are errors."""
        if not isinstance(d, Mapping):
            raise InvalidInputError(f"frontend config must be a mapping; got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InvalidInputError(
                f"unknown frontend config keys {unknown}; expected a subset of {sorted(known)}"
            )
        return cls(**dict(d))


def _check_choice(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise InvalidInputError(f"frontend {name} must be one of {list(choices)}; got {value!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _check_int(name: str, value: Any) -> None:
    if not _is_int(value):
        raise InvalidInputError(f"frontend {name} must be an int; got {value!r}")


def _check_float(name: str, value: Any) -> float:
    numeric = isinstance(value, (int, float, np.integer, np.floating))
    if isinstance(value, (bool, np.bool_)) or not numeric:
        raise InvalidInputError(f"frontend {name} must be a number; got {value!r}")
    if not math.isfinite(float(value)):
        raise InvalidInputError(f"frontend {name} must be finite; got {value!r}")
    return float(value)


# ---------------------------------------------------------------------- knf options
def knf_frame_options(config: FrontendConfig) -> "knf.FrameExtractionOptions":
    """kaldi-native-fbank's framing options for ``config`` (no dither); the torch twin reads knf's window with them."""
    opts = knf.FrameExtractionOptions()
    _fill_frame_options(opts, config)
    return opts


def _fill_frame_options(opts, config: FrontendConfig) -> None:
    opts.samp_freq = float(config.sample_rate_hz)
    opts.frame_length_ms = config.frame_length_ms
    opts.frame_shift_ms = config.frame_shift_ms
    opts.dither = 0.0
    opts.preemph_coeff = config.preemphasis
    opts.remove_dc_offset = config.remove_dc_offset
    opts.window_type = WINDOW_TYPES[config.window]
    opts.round_to_power_of_two = True
    opts.snip_edges = config.snip_edges


def knf_mel_options(config: FrontendConfig) -> "knf.MelBanksOptions":
    """kaldi-native-fbank's mel filter options for ``config``; the torch twin reads knf's filters with them."""
    opts = knf.MelBanksOptions()
    _fill_mel_options(opts, config)
    return opts


def _fill_mel_options(opts, config: FrontendConfig) -> None:
    opts.num_bins = config.num_mel_bins
    opts.low_freq = config.low_freq_hz
    opts.high_freq = config.high_freq_hz
    opts.htk_mode = False
    # librosa mode with Slaney's scale and area normalisation = librosa.filters.mel's default.
    opts.is_librosa = config.mel_filters == "slaney"
    if opts.is_librosa:
        opts.use_slaney_mel_scale = True
        opts.norm = "slaney"


def _make_computer(config: FrontendConfig):
    """A fresh knf online extractor for ``config``."""
    if config.kind == "mfcc":
        opts = knf.MfccOptions()
        opts.num_ceps = config.num_ceps
        opts.cepstral_lifter = config.cepstral_lifter
    else:
        opts = knf.FbankOptions()
        opts.use_log_fbank = True
        opts.use_power = True
    _fill_frame_options(opts.frame_opts, config)
    _fill_mel_options(opts.mel_opts, config)
    opts.use_energy = config.use_energy
    opts.energy_floor = config.energy_floor
    opts.raw_energy = True
    opts.htk_compat = False
    return knf.OnlineMfcc(opts) if config.kind == "mfcc" else knf.OnlineFbank(opts)


# ---------------------------------------------------------------------- streaming
class StreamingFrontend:
    """Incremental features: push audio in any chunking, pop frames as they become ready.

    Frames popped from any chunking of a signal equal ``compute_features`` of the whole
    signal. A frame is ready once every sample its window covers has arrived (with
    ``snip_edges=False`` the last frames mirror the end of the signal and are only ready
    after ``input_finished()``).

    Usage::

        fe = StreamingFrontend(config)
        fe.accept_waveform(chunk)       # float32 [N] in [-1, 1]
        feats = fe.pop_frames()         # [T, F] float32, frames not popped before
        fe.input_finished(); feats = fe.pop_frames()   # flush the tail
    """

    def __init__(self, config: FrontendConfig):
        if not isinstance(config, FrontendConfig):
            raise InvalidInputError(
                f"StreamingFrontend expects a FrontendConfig; got {type(config).__name__}"
            )
        self._config = config
        self._rate_hz = float(config.sample_rate_hz)
        self.reset()

    @property
    def config(self) -> FrontendConfig:
        return self._config

    @property
    def num_features(self) -> int:
        """Feature dimension F."""
        return self._config.num_features

    @property
    def num_frames_ready(self) -> int:
        """Frames computed and not yet popped."""
        return self._computer.num_frames_ready - self._next_frame_index

    @property
    def next_frame_index(self) -> int:
        """Absolute index of the first frame the next ``pop_frames`` returns."""
        return self._next_frame_index

    @property
    def num_samples_accepted(self) -> int:
        """Total samples accepted since construction / ``reset()``."""
        return self._num_samples_accepted

    @property
    def is_finished(self) -> bool:
        """Whether ``input_finished()`` was called (no more audio is accepted)."""
        return self._finished

    def accept_waveform(self, samples: np.ndarray) -> None:
        """Append float samples ``[N]`` (in [-1, 1], at ``config.sample_rate_hz``)."""
        if self._finished:
            raise InvalidInputError(
                "accept_waveform after input_finished(); call reset() to start a new stream"
            )
        samples = _validate_samples(samples)
        if samples.shape[0]:
            self.accept_checked(samples)

    def accept_checked(self, samples: np.ndarray) -> None:
        """``accept_waveform`` for float32 samples ``[N > 0]`` already checked where they entered (the
        stream's audio: checking them again here cost a tenth of the client loop, measured)."""
        if self._finished:
            raise InvalidInputError("accept_waveform after input_finished(); call reset() to start a new stream")
        scale = self._config.input_scale
        self._computer.accept_waveform(self._rate_hz, samples if scale == 1.0 else
                                       np.multiply(samples, scale, dtype=np.float32))
        self._num_samples_accepted += samples.shape[0]

    def pop_frames(self, max_frames: int | None = None) -> np.ndarray:
        """Return up to ``max_frames`` (default all) ready frames ``[T, F]`` float32.

        The frames are removed: the next call continues after them.
        """
        available = self.num_frames_ready
        if max_frames is None:
            count = available
        else:
            if not _is_int(max_frames) or max_frames < 0:
                raise InvalidInputError(
                    f"max_frames must be None or an int >= 0; got {max_frames!r}"
                )
            count = min(int(max_frames), available)
        frames = np.empty((count, self._config.num_features), dtype=np.float32)
        self.pop_into(frames)
        return frames

    def pop_into(self, out: np.ndarray) -> None:
        """Pop ``out.shape[0]`` ready frames into ``out`` ``[T, F]`` float32 (no allocation)."""
        count = out.shape[0]
        first = self._next_frame_index
        get_frame = self._computer.get_frame
        for k in range(count):
            out[k] = get_frame(first + k)
        if count:
            # Free the library's copy: a long stream must not grow memory.
            self._computer.pop(count)
            self._next_frame_index += count

    def input_finished(self) -> None:
        """Declare the end of the input: the remaining frames become ready."""
        if not self._finished:
            self._computer.input_finished()
            self._finished = True

    def reset(self) -> None:
        """Start a new stream (frame and sample counters restart at 0)."""
        self._computer = _make_computer(self._config)
        self._next_frame_index = 0
        self._num_samples_accepted = 0
        self._finished = False


def compute_features(samples: np.ndarray, config: FrontendConfig) -> np.ndarray:
    """Offline features of a whole signal: float ``[N]`` in [-1, 1] -> ``[T, F]`` float32."""
    frontend = StreamingFrontend(config)
    frontend.accept_waveform(samples)
    frontend.input_finished()
    return frontend.pop_frames()


def _validate_samples(samples) -> np.ndarray:
    samples = np.asarray(samples)
    if samples.ndim != 1:
        raise InvalidInputError(f"expected 1-D float samples [N]; got shape {samples.shape}")
    if samples.dtype.kind != "f":
        hint = " (divide int16 audio by 32768)" if samples.dtype.kind in "iu" else ""
        raise InvalidInputError(
            f"expected float samples in [-1, 1]; got dtype {samples.dtype}{hint}"
        )
    if not np.isfinite(samples).all():
        first_bad = int(np.flatnonzero(~np.isfinite(samples))[0])
        raise NonFiniteInputError(f"samples contain NaN or Inf (first at index {first_bad})")
    return samples
