"""RingBuffer: absolute indices, wrap-around, overflow policies, clear errors."""

import numpy as np
import pytest

from stateport.errors import BufferOverflowError, InvalidInputError, StateportError
from stateport.runtime.ring_buffer import RingBuffer


def test_push_read_with_wraparound_matches_reference():
    rng = np.random.default_rng(0)
    buf = RingBuffer(1000)
    signal = rng.standard_normal(20_000).astype(np.float32)
    pos = 0
    while pos < signal.size:
        n = int(rng.integers(1, 400))
        chunk = signal[pos : pos + n]
        assert buf.push(chunk) == pos
        pos += chunk.size
        assert buf.end_index == pos
        # Read a random held range and compare with the reference signal.
        a = int(rng.integers(buf.start_index, buf.end_index + 1))
        b = int(rng.integers(a, buf.end_index + 1))
        np.testing.assert_array_equal(buf.read(a, b - a), signal[a:b])
        # Consume some of the oldest samples so the writer wraps around.
        buf.consume(int(rng.integers(buf.start_index, buf.end_index + 1)))
        buf.discard_before(max(buf.start_index, buf.end_index - 600))
    assert buf.dropped_samples == 0
    held = buf.read(buf.start_index, buf.available_samples)
    np.testing.assert_array_equal(held, signal[buf.start_index :])


def test_push_does_not_reallocate_storage_and_read_into_out():
    buf = RingBuffer(64)
    storage = buf._storage  # white-box: the preallocated array must stay the same
    for _ in range(50):
        buf.push(np.ones(20, np.float32))
        buf.consume(buf.end_index - 10)
    assert buf._storage is storage
    out = np.empty(10, np.float32)
    assert buf.read(buf.end_index - 10, 10, out=out) is out
    np.testing.assert_array_equal(out, np.ones(10, np.float32))


def test_overflow_raise_writes_nothing():
    buf = RingBuffer(10, overflow="raise")
    buf.push(np.arange(8, dtype=np.float32))
    with pytest.raises(BufferOverflowError) as info:
        buf.push(np.arange(3, dtype=np.float32))
    assert info.value.code == "BUFFER_OVERFLOW"
    assert isinstance(info.value, StateportError)
    assert (buf.start_index, buf.end_index, buf.dropped_samples) == (0, 8, 0)
    buf.consume(5)
    buf.push(np.arange(7, dtype=np.float32))  # fits now (3 held + 7)
    assert (buf.start_index, buf.end_index) == (5, 15)


def test_overflow_drop_oldest_counts_and_keeps_newest():
    buf = RingBuffer(10, overflow="drop_oldest")
    signal = np.arange(100, dtype=np.float32)
    buf.push(signal[:8])
    buf.push(signal[8:13])  # 3 too many: samples 0..2 dropped
    assert (buf.start_index, buf.end_index, buf.dropped_samples) == (3, 13, 3)
    np.testing.assert_array_equal(buf.read(3, 10), signal[3:13])
    # A push larger than the capacity keeps only its newest samples.
    buf.push(signal[13:38])
    assert (buf.start_index, buf.end_index) == (28, 38)
    assert buf.dropped_samples == 3 + 25
    np.testing.assert_array_equal(buf.read(28, 10), signal[28:38])


def test_read_dropped_or_future_range_names_both_ranges():
    buf = RingBuffer(10, overflow="drop_oldest")
    buf.push(np.zeros(15, np.float32))
    with pytest.raises(InvalidInputError, match=r"\[2, 7\).*holds \[5, 15\).*dropped or consumed"):
        buf.read(2, 5)
    with pytest.raises(InvalidInputError, match=r"\[12, 17\).*holds \[5, 15\).*not been pushed"):
        buf.read(12, 5)
    buf.consume(9)
    with pytest.raises(InvalidInputError, match=r"holds \[9, 15\)"):
        buf.read(8, 1)
    assert buf.read(100, 0).shape == (0,)  # empty reads are always fine


def test_consume_is_idempotent_and_refuses_future():
    buf = RingBuffer(10)
    buf.push(np.zeros(6, np.float32))
    buf.consume(4)
    buf.consume(2)  # already gone: no-op
    assert buf.start_index == 4
    with pytest.raises(InvalidInputError, match="only \\[4, 6\\) have been pushed"):
        buf.discard_before(7)


@pytest.mark.parametrize(
    "kwargs",
    [{"capacity_samples": 0}, {"capacity_samples": 1.5}, {"capacity_samples": 8, "overflow": "block"}],
)
def test_constructor_validates(kwargs):
    with pytest.raises(InvalidInputError):
        RingBuffer(**kwargs)


def test_push_validates_shape_and_dtype():
    buf = RingBuffer(10)
    with pytest.raises(InvalidInputError, match="1-D"):
        buf.push(np.zeros((2, 3), np.float32))
    int_buf = RingBuffer(10, dtype=np.int16)
    with pytest.raises(InvalidInputError, match="castable to int16"):
        int_buf.push(np.zeros(3, np.float32))
    int_buf.push(np.arange(3, dtype=np.int16))
    buf.push(np.arange(3, dtype=np.float64))  # float64 -> float32 is a same-kind cast
    np.testing.assert_array_equal(buf.read(0, 3), [0, 1, 2])


def test_reset_restarts_indices():
    buf = RingBuffer(4, overflow="drop_oldest")
    buf.push(np.ones(9, np.float32))
    buf.reset()
    assert (buf.start_index, buf.end_index, buf.dropped_samples, buf.available_samples) == (0, 0, 0, 0)
