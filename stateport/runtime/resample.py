"""Streaming sample-rate conversion with state across calls (libsoxr through the ``soxr`` package).

A live stream arrives in arbitrary chunks; resampling each chunk on its own would click at
every boundary (each chunk's filter would see zeros past its edges). ``soxr.ResampleStream``
keeps the filter history between calls, and measured here (soxr 1.1, HQ) the concatenated
chunked output equals one-shot ``soxr.resample`` of the whole signal bit for bit, with the
same number of output samples once ``flush()`` has run.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidInputError, MissingDependencyError
from .audio import check_sample_rate

__all__ = ["StreamingResampler", "resample", "QUALITIES"]

QUALITIES = ("QQ", "LQ", "MQ", "HQ", "VHQ")


def _soxr():
    try:
        import soxr
    except ImportError:
        raise MissingDependencyError("resampling needs the 'soxr' package: pip install soxr") from None
    return soxr


def _check_quality(quality: str) -> str:
    if quality not in QUALITIES:
        raise InvalidInputError(f"resampler quality must be one of {', '.join(QUALITIES)}; got {quality!r}")
    return quality


class StreamingResampler:
    """Mono float32 resampler that carries its filter state across ``process`` calls.

    ``process(x [N]) -> y [M]`` returns what is ready (the filter delay holds back a few ms at
    the start); ``flush()`` returns the tail once the input has ended. The concatenated
    outputs equal :func:`resample` of the whole input.
    """

    def __init__(self, in_rate_hz: int, out_rate_hz: int, *, quality: str = "HQ"):
        self.in_rate_hz = check_sample_rate(in_rate_hz)
        self.out_rate_hz = check_sample_rate(out_rate_hz)
        self.quality = _check_quality(quality)
        self._soxr = _soxr()
        self.reset()

    def reset(self) -> None:
        """Forget the filter history: the next sample starts a new signal."""
        self._stream = self._soxr.ResampleStream(self.in_rate_hz, self.out_rate_hz, 1, dtype="float32",
                                                 quality=self.quality)
        self._finished = False

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Resample the next chunk ``[N]`` float32; returns the ``[M]`` samples now ready."""
        if self._finished:
            raise InvalidInputError("resampler input after flush(); call reset() to start a new signal")
        return self._stream.resample_chunk(np.ascontiguousarray(samples, dtype=np.float32), last=False)

    def flush(self) -> np.ndarray:
        """End of input: the samples still held in the filter."""
        if self._finished:
            return np.zeros(0, dtype=np.float32)
        self._finished = True
        return self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)


def resample(samples: np.ndarray, in_rate_hz: int, out_rate_hz: int, *, quality: str = "HQ") -> np.ndarray:
    """One-shot resampling of a whole mono signal ``[N]`` -> float32 ``[M]``."""
    in_rate_hz, out_rate_hz = check_sample_rate(in_rate_hz), check_sample_rate(out_rate_hz)
    samples = np.ascontiguousarray(samples, dtype=np.float32)
    if in_rate_hz == out_rate_hz:
        return samples.copy()
    return _soxr().resample(samples, in_rate_hz, out_rate_hz, quality=_check_quality(quality))
