"""Endpointing: turn per-window speech probabilities into speech start / end decisions.

The rules are Silero's ``VADIterator`` rules, so our segments equal Silero's own on the same
probabilities (tests/runtime/test_vad.py checks it): speech starts on the first window whose
probability reaches ``speech_threshold``; it ends once the probability has stayed below the
exit threshold (``speech_threshold - 0.15`` unless given) for ``min_silence_duration_ms``.
Reported boundaries are padded by ``speech_pad_ms``. One rule is ours:
``max_utterance_duration_ms`` cuts an utterance that runs too long (a stream that never pauses
must still be finalized and its state reset now and then).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidInputError, UnsupportedError

__all__ = ["EndpointConfig", "EndpointDecision", "EndpointDetector", "VadEndpointing"]


def _number(name: str, value, *, low: float, high: float = math.inf, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInputError(f"{name} must be a number; got {value!r}")
    value = float(value)
    ok = (value > low if low_open else value >= low) and value <= high
    if not ok or math.isnan(value):
        bracket = "(" if low_open else "["
        raise InvalidInputError(f"{name} must be in {bracket}{low:g}, {high:g}]; got {value!r}")
    return value


@dataclass(frozen=True)
class EndpointConfig:
    """When an utterance ends, in milliseconds of audio.

    Fields:
        speech_threshold: probability at or above which a window is speech, in (0, 1].
        exit_threshold: below it a window counts as silence once speech started; None means
            ``speech_threshold - 0.15`` (Silero's hysteresis).
        min_silence_duration_ms: trailing silence that ends an utterance. 500 ms by default:
            long enough that a streaming model has emitted its last word (it needs to hear
            some silence after a word) before the endpoint resets its state.
        speech_pad_ms: padding added to reported speech boundaries.
        max_utterance_duration_ms: speech longer than this is cut (finalized and reset);
            ``inf`` disables the rule.
    """

    speech_threshold: float = 0.5
    exit_threshold: float | None = None
    min_silence_duration_ms: float = 500.0
    speech_pad_ms: float = 30.0
    max_utterance_duration_ms: float = 30_000.0

    def __post_init__(self):
        object.__setattr__(self, "speech_threshold",
                           _number("speech_threshold", self.speech_threshold, low=0.0, high=1.0, low_open=True))
        if self.exit_threshold is not None:
            object.__setattr__(self, "exit_threshold",
                               _number("exit_threshold", self.exit_threshold, low=0.0, high=self.speech_threshold))
        object.__setattr__(self, "min_silence_duration_ms",
                           _number("min_silence_duration_ms", self.min_silence_duration_ms, low=0.0))
        object.__setattr__(self, "speech_pad_ms", _number("speech_pad_ms", self.speech_pad_ms, low=0.0))
        object.__setattr__(self, "max_utterance_duration_ms",
                           _number("max_utterance_duration_ms", self.max_utterance_duration_ms, low=0.0,
                                   low_open=True))

    @property
    def effective_exit_threshold(self) -> float:
        return self.speech_threshold - 0.15 if self.exit_threshold is None else self.exit_threshold


@dataclass(frozen=True)
class EndpointDecision:
    """``kind`` "start" or "end" of speech at ``sample_index``, decided after ``decided_at_sample``.

    ``reason`` of an end: "end_of_speech" (silence) or "max_duration" (forced cut).
    """

    kind: str
    sample_index: int
    decided_at_sample: int
    reason: str = ""


class EndpointDetector:
    """Silero's VADIterator state machine over windows of ``window_samples`` at ``sample_rate_hz``.

    ``accept(probability)`` consumes the next window's speech probability and returns the
    decisions it causes (at most an end and a start). Sample indices count the samples given
    to the VAD, from 0.
    """

    def __init__(self, config: EndpointConfig, *, sample_rate_hz: int, window_samples: int):
        if not isinstance(config, EndpointConfig):
            raise InvalidInputError(f"endpoint must be an EndpointConfig; got {type(config).__name__}")
        self.config = config
        self.window_samples = int(window_samples)
        # Silero computes these in float (sample_rate * ms / 1000) and compares floats; so do we.
        self._min_silence_samples = sample_rate_hz * config.min_silence_duration_ms / 1000
        self._pad_samples = sample_rate_hz * config.speech_pad_ms / 1000
        self._max_utterance_samples = sample_rate_hz * config.max_utterance_duration_ms / 1000
        self.reset()

    def reset(self) -> None:
        self.triggered = False
        self._temp_end = 0
        self._current_sample = 0
        self._utterance_start = 0

    @property
    def current_sample(self) -> int:
        """Samples consumed so far (the end of the last window)."""
        return self._current_sample

    def accept(self, probability: float) -> list[EndpointDecision]:
        """The decisions caused by the next window's speech probability."""
        cfg = self.config
        window = self.window_samples
        self._current_sample += window
        now = self._current_sample
        if probability >= cfg.speech_threshold and self._temp_end:
            self._temp_end = 0
        if probability >= cfg.speech_threshold and not self.triggered:
            self.triggered = True
            self._utterance_start = now - window
            start = max(0, int(now - self._pad_samples - window))
            return [EndpointDecision("start", start, now)]
        if self.triggered and probability < cfg.effective_exit_threshold:
            if not self._temp_end:
                self._temp_end = now
            if now - self._temp_end >= self._min_silence_samples:
                end = int(self._temp_end + self._pad_samples - window)
                self._temp_end = 0
                self.triggered = False
                return [EndpointDecision("end", end, now, "end_of_speech")]
            return []
        if self.triggered and now - self._utterance_start >= self._max_utterance_samples:
            # Forced cut: end here and start the next utterance at once (speech goes on).
            self._temp_end = 0
            self._utterance_start = now
            return [EndpointDecision("end", now, now, "max_duration"), EndpointDecision("start", now, now)]
        return []

    def finish(self) -> list[EndpointDecision]:
        """End of input: close an open utterance at the last sample."""
        if not self.triggered:
            return []
        self.triggered = False
        now = self._current_sample
        return [EndpointDecision("end", now, now, "end_of_input")]


class VadEndpointing:
    """One stream's VAD and endpoint rules: audio in, decisions out once the model has reached them.

    ``vad``: an object with ``probability(window) -> float``, ``window_samples``,
    ``sample_rate_hz`` and ``reset()`` (e.g. :class:`~stateport.runtime.vad.SileroVad`), owned
    by this stream (it carries state). Decisions wait in a queue and are released on the model's
    step grid (:meth:`release`), so an endpoint lands on the same step boundary whatever the read
    size. Sample indices count the audio fed to the VAD, from 0.
    """

    def __init__(self, vad, config: EndpointConfig, *, sample_rate_hz: int):
        for attr in ("probability", "window_samples", "sample_rate_hz", "reset"):
            if not hasattr(vad, attr):
                raise InvalidInputError(f"vad must provide {attr} (e.g. a SileroVad); got {type(vad).__name__}")
        if vad.sample_rate_hz != sample_rate_hz:
            raise UnsupportedError(f"the VAD runs at {vad.sample_rate_hz} Hz but the model at {sample_rate_hz} Hz")
        self.vad = vad
        self.detector = EndpointDetector(config, sample_rate_hz=sample_rate_hz, window_samples=vad.window_samples)
        self._window = np.zeros(vad.window_samples, np.float32)
        self.windows_run = 0
        self.reset()

    def reset(self) -> None:
        self.vad.reset()
        self.detector.reset()
        self._fill = 0
        self._queue: deque[EndpointDecision] = deque()

    def feed(self, samples: np.ndarray) -> None:
        window, start = self._window, 0
        while start < samples.shape[0]:
            take = min(window.shape[0] - self._fill, samples.shape[0] - start)
            window[self._fill:self._fill + take] = samples[start:start + take]
            self._fill += take
            start += take
            if self._fill == window.shape[0]:
                self._run_window()

    def _run_window(self) -> None:
        probability = self.vad.probability(self._window)
        self.windows_run += 1
        self._fill = 0
        self._queue.extend(self.detector.accept(probability))

    def finish(self) -> None:
        """End of input: the last partial window zero-padded (as Silero's get_speech_timestamps), then
        an open utterance closed at the last sample."""
        if self._fill:
            self._window[self._fill:] = 0.0
            self._run_window()
        self._queue.extend(self.detector.finish())

    def release(self, boundary_sample: int, *, final: bool) -> list[EndpointDecision]:
        """Decisions taken by ``boundary_sample`` (all of them when ``final``), oldest first."""
        out = []
        queue = self._queue
        while queue and (final or queue[0].decided_at_sample <= boundary_sample):
            out.append(queue.popleft())
        return out
