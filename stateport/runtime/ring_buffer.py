"""A fixed-capacity audio ring buffer addressed by absolute sample indices.

The client loop pushes audio as it arrives and reads it back by *absolute* sample index
(sample 0 is the first sample ever pushed since construction or ``reset()``), so every layer
above (features, session steps, VAD events) can timestamp what it produces without keeping
its own counters. Storage is allocated once; ``push`` writes with at most two slice copies
and allocates nothing.
"""

from __future__ import annotations

import numpy as np

from stateport.errors import BufferOverflowError, InvalidInputError

__all__ = ["RingBuffer", "OVERFLOW_POLICIES"]

OVERFLOW_POLICIES = ("raise", "drop_oldest", "grow")


class RingBuffer:
    """Fixed-capacity 1-D sample buffer with absolute, monotonic sample indices.

    The buffer holds the samples with absolute indices ``[start_index, end_index)``.
    ``push`` appends at ``end_index``; ``discard_before`` / ``consume`` advance
    ``start_index``; ``read`` copies any held range out.

    Args:
        capacity_samples: the most samples held at once (storage is preallocated).
        dtype: sample dtype of the storage (default float32).
        overflow: what ``push`` does when the samples do not fit:
            ``"raise"`` raises ``BufferOverflowError`` and writes nothing;
            ``"drop_oldest"`` discards the oldest samples to make room and counts them
            in ``dropped_samples`` (a live stream must not block on a slow consumer);
            ``"grow"`` doubles the storage (nothing accepted is lost; memory follows the
            backlog: what a file-at-once client such as sherpa-onnx's stream expects).
    """

    def __init__(self, capacity_samples: int, *, dtype=np.float32, overflow: str = "raise"):
        if isinstance(capacity_samples, bool) or not isinstance(capacity_samples, (int, np.integer)):
            raise InvalidInputError(
                f"capacity_samples must be a positive int; got {capacity_samples!r}"
            )
        if capacity_samples <= 0:
            raise InvalidInputError(f"capacity_samples must be > 0; got {capacity_samples}")
        if overflow not in OVERFLOW_POLICIES:
            raise InvalidInputError(
                f"overflow must be one of {OVERFLOW_POLICIES}; got {overflow!r}"
            )
        try:
            self._dtype = np.dtype(dtype)
        except TypeError as exc:
            raise InvalidInputError(f"dtype must be a numpy dtype; got {dtype!r}") from exc
        if self._dtype.kind not in "fiu":
            raise InvalidInputError(
                f"dtype must be a real numeric dtype (float or int); got {self._dtype}"
            )
        self._capacity_samples = int(capacity_samples)
        self._overflow = overflow
        self._storage = np.empty(self._capacity_samples, dtype=self._dtype)  # reads only return written samples
        self._start_index = 0
        self._end_index = 0
        self._dropped_samples = 0

    # ------------------------------------------------------------------ properties
    @property
    def capacity_samples(self) -> int:
        """The most samples the buffer holds at once."""
        return self._capacity_samples

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def overflow(self) -> str:
        return self._overflow

    @property
    def start_index(self) -> int:
        """Absolute index of the oldest held sample (== end_index when empty)."""
        return self._start_index

    @property
    def end_index(self) -> int:
        """Absolute index one past the newest sample (== total samples ever pushed)."""
        return self._end_index

    @property
    def available_samples(self) -> int:
        """Number of samples held: ``end_index - start_index``."""
        return self._end_index - self._start_index

    @property
    def free_samples(self) -> int:
        """Number of samples that can be pushed without overflow."""
        return self._capacity_samples - self.available_samples

    @property
    def dropped_samples(self) -> int:
        """Samples discarded by the ``drop_oldest`` policy (never read by anyone)."""
        return self._dropped_samples

    def __len__(self) -> int:
        return self.available_samples

    def __repr__(self) -> str:
        return (
            f"RingBuffer(capacity_samples={self._capacity_samples}, dtype={self._dtype}, "
            f"overflow={self._overflow!r}, held=[{self._start_index}, {self._end_index}), "
            f"dropped_samples={self._dropped_samples})"
        )

    # ------------------------------------------------------------------ writing
    def push(self, samples) -> int:
        """Append samples ``[N]``; return the absolute index of the first one pushed.

        Raises ``BufferOverflowError`` (policy ``"raise"``) when ``N > free_samples``; in that
        case nothing is written. With ``"drop_oldest"`` the oldest samples (including, when
        ``N > capacity_samples``, the first samples of this push) are dropped and counted.
        """
        if type(samples) is not np.ndarray or samples.dtype != self._dtype:  # checked once, not per read
            samples = np.asarray(samples)
            if not np.can_cast(samples.dtype, self._dtype, casting="same_kind"):
                raise InvalidInputError(
                    f"push expects samples castable to {self._dtype}; got dtype {samples.dtype}"
                )
        if samples.ndim != 1:
            raise InvalidInputError(
                f"push expects 1-D samples [N]; got an array of shape {samples.shape}"
            )
        first_index = self._end_index
        num_samples = samples.shape[0]
        capacity = self._capacity_samples
        offset = first_index % capacity
        if 0 < num_samples <= capacity - offset and first_index + num_samples - self._start_index <= capacity:
            # The common push: it fits without wrapping (one slice copy; a client pushes every 20 ms).
            self._storage[offset:offset + num_samples] = samples
            self._end_index = first_index + num_samples
            return first_index
        if num_samples == 0:
            return first_index

        overflow_samples = num_samples - self.free_samples
        if overflow_samples > 0 and self._overflow == "grow":
            self._grow(self.available_samples + num_samples)
            overflow_samples = 0
        if overflow_samples > 0:
            if self._overflow == "raise":
                raise BufferOverflowError(
                    f"ring buffer full: pushing {num_samples} samples with "
                    f"{self.free_samples} free of {self._capacity_samples}; consume samples "
                    f"faster or use overflow='drop_oldest'"
                )
            self._dropped_samples += overflow_samples
            self._start_index += overflow_samples
            if num_samples > self._capacity_samples:
                # Only the newest capacity_samples of this push survive.
                samples = samples[num_samples - self._capacity_samples :]

        self._write(self._end_index + (num_samples - samples.shape[0]), samples)
        self._end_index = first_index + num_samples
        return first_index

    def _grow(self, needed_samples: int) -> None:
        """Reallocate to hold ``needed_samples`` (at least doubling); absolute indices are kept."""
        held = self.read(self._start_index, self.available_samples)
        self._capacity_samples = max(2 * self._capacity_samples, int(needed_samples))
        self._storage = np.empty(self._capacity_samples, dtype=self._dtype)  # reads only return written samples
        self._write(self._start_index, held)

    def _write(self, absolute_index: int, samples: np.ndarray) -> None:
        """Copy ``samples`` into storage at ``absolute_index`` (at most two slice copies)."""
        num_samples = samples.shape[0]
        offset = absolute_index % self._capacity_samples
        first_part = min(num_samples, self._capacity_samples - offset)
        self._storage[offset : offset + first_part] = samples[:first_part]
        if first_part < num_samples:
            self._storage[: num_samples - first_part] = samples[first_part:]

    # ------------------------------------------------------------------ reading
    def read(self, start_index: int, num_samples: int, out: np.ndarray | None = None) -> np.ndarray:
        """Copy the held samples ``[start_index, start_index + num_samples)`` out.

        Returns a new array ``[num_samples]`` of the buffer dtype, or fills ``out`` (a 1-D
        array of that dtype and length) and returns it, to avoid allocation.
        Raises ``InvalidInputError`` naming both ranges when any requested sample was
        already dropped/consumed or has not been pushed yet.
        """
        start_index = _as_index(start_index, "start_index")
        num_samples = _as_index(num_samples, "num_samples")
        if num_samples < 0:
            raise InvalidInputError(f"num_samples must be >= 0; got {num_samples}")
        stop_index = start_index + num_samples
        if num_samples > 0 and (start_index < self._start_index or stop_index > self._end_index):
            if start_index < self._start_index:
                why = "the start was already dropped or consumed"
            else:
                why = "the end has not been pushed yet"
            raise InvalidInputError(
                f"cannot read samples [{start_index}, {stop_index}): the buffer holds "
                f"[{self._start_index}, {self._end_index}) and {why}"
            )
        if out is None:
            out = np.empty(num_samples, dtype=self._dtype)
        elif out.ndim != 1 or out.shape[0] != num_samples or out.dtype != self._dtype:
            raise InvalidInputError(
                f"out must be a 1-D {self._dtype} array of {num_samples} samples; got "
                f"shape {out.shape} dtype {out.dtype}"
            )
        if num_samples == 0:
            return out
        offset = start_index % self._capacity_samples
        first_part = min(num_samples, self._capacity_samples - offset)
        out[:first_part] = self._storage[offset : offset + first_part]
        if first_part < num_samples:
            out[first_part:] = self._storage[: num_samples - first_part]
        return out

    # ------------------------------------------------------------------ freeing
    def discard_before(self, index: int) -> None:
        """Free every sample with absolute index < ``index``.

        Indices already gone are ignored (idempotent); ``index`` beyond ``end_index`` is an
        error because it would discard audio that has not arrived.
        """
        index = _as_index(index, "index")
        if index > self._end_index:
            raise InvalidInputError(
                f"cannot discard samples before {index}: only [{self._start_index}, "
                f"{self._end_index}) have been pushed"
            )
        if index > self._start_index:
            self._start_index = index

    def consume(self, up_to_index: int) -> None:
        """Mark samples ``< up_to_index`` as consumed (freed); same as ``discard_before``."""
        self.discard_before(up_to_index)

    def reset(self) -> None:
        """Empty the buffer and restart absolute indices (and the drop counter) at 0."""
        self._start_index = 0
        self._end_index = 0
        self._dropped_samples = 0


def _as_index(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidInputError(f"{name} must be an int; got {value!r}")
    return int(value)
