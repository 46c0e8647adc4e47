"""Audio at the client boundary: check what the caller hands in, mix channels down, read files.

Everything that reaches the streamer passes :func:`prepare_samples` first, so a wrong array
fails here with one line that says what was expected, not deep inside the frontend or ONNX
Runtime. numpy (+ soundfile for files) only.
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import InvalidInputError, NonFiniteInputError

__all__ = ["AudioFileError", "check_sample_rate", "prepare_samples", "read_audio_file"]

# More "channels" than this in the last axis of a 2-D array almost surely means the caller
# passed channels-first [C, N]; we say so instead of averaging 16000 "channels".
_MAX_CHANNELS = 64


class AudioFileError(InvalidInputError):
    """An audio file that is missing, unreadable or empty."""

    code = "INVALID_AUDIO_FILE"


def check_sample_rate(sample_rate_hz) -> int:
    """``sample_rate_hz`` as a positive int, or InvalidInputError (floats must be integral)."""
    if type(sample_rate_hz) is int and sample_rate_hz > 0:  # the common case, on every read
        return sample_rate_hz
    if isinstance(sample_rate_hz, (bool, np.bool_)) or not isinstance(
            sample_rate_hz, (int, float, np.integer, np.floating)):
        raise InvalidInputError(f"sample_rate_hz must be a positive integer; got {sample_rate_hz!r}")
    if not np.isfinite(sample_rate_hz) or sample_rate_hz <= 0 or int(sample_rate_hz) != sample_rate_hz:
        raise InvalidInputError(f"sample_rate_hz must be a positive integer; got {sample_rate_hz!r}")
    return int(sample_rate_hz)


def prepare_samples(samples) -> np.ndarray:
    """Mono float32 ``[N]`` from float ``[N]`` or ``[N, C]`` samples in [-1, 1] (channels averaged).

    Raises InvalidInputError for empty audio, integer dtypes (they need scaling first), other
    ranks, channels-first arrays; NonFiniteInputError for NaN/Inf (naming the first bad index).
    """
    if not isinstance(samples, np.ndarray):
        if isinstance(samples, (list, tuple)):
            samples = np.asarray(samples)
        else:
            raise InvalidInputError(f"expected a numpy array of float samples [N] or [N, C]; "
                                    f"got {type(samples).__name__}")
    if samples.dtype.kind in "iub":
        hint = " (int16 audio: divide by 32768)" if samples.dtype.kind in "iu" else ""
        raise InvalidInputError(f"expected float samples in [-1, 1]; got dtype {samples.dtype}{hint}")
    if samples.dtype.kind != "f":
        raise InvalidInputError(f"expected float samples in [-1, 1]; got dtype {samples.dtype}")
    if samples.ndim not in (1, 2):
        raise InvalidInputError(f"expected samples [N] or [N, C] (channels last); got shape {samples.shape}")
    if samples.ndim == 2:
        num_samples, num_channels = samples.shape
        if num_channels == 0:
            raise InvalidInputError(f"expected at least one channel; got shape {samples.shape}")
        if num_channels > _MAX_CHANNELS and num_samples <= _MAX_CHANNELS:
            raise InvalidInputError(f"expected [N, C] with channels last; got shape {samples.shape} "
                                    "(transpose channels-first audio)")
    if samples.shape[0] == 0:
        raise InvalidInputError("empty audio: expected at least one sample")
    finite = np.isfinite(samples)
    if not finite.all():
        first_bad = int(np.flatnonzero(~finite.reshape(samples.shape[0], -1).all(axis=1))[0])
        raise NonFiniteInputError(f"audio contains NaN or Inf (first at sample {first_bad}); expected finite samples")
    if samples.ndim == 2:
        # Mean, not sum: a stereo file of two identical channels gives exactly the mono signal.
        samples = samples.mean(axis=1, dtype=np.float64 if samples.dtype == np.float64 else np.float32)
    return np.ascontiguousarray(samples, dtype=np.float32)


def read_audio_file(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """A whole audio file as float32 ``[N, C]`` in [-1, 1] and its sample rate in Hz."""
    import soundfile as sf

    path = os.fspath(path)
    if not os.path.exists(path):
        raise AudioFileError(f"audio file {path!r} does not exist")
    if os.path.isdir(path):
        raise AudioFileError(f"{path!r} is a directory: expected an audio file (WAV, FLAC, OGG, ...)")
    try:
        samples, sample_rate_hz = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise AudioFileError(f"cannot read audio file {path!r}: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
                             ) from None
    if samples.shape[0] == 0:
        raise AudioFileError(f"audio file {path!r} holds no samples")
    return samples, int(sample_rate_hz)
