"""Feed a Streamer at wall-clock speed and watch for underruns (processing slower than audio).

A live client cannot ask the microphone to wait. Audio arrives every ``read_ms`` whatever the
model is doing; when a step takes longer than the audio it consumes, the backlog (audio
accepted but not yet processed) grows without bound. :func:`run_paced` measures per-step
latency, backlog depth and lag behind real time, detects that growth (backlog above
``max_queue_ms``: an *underrun* of the processing against the audio clock), and applies the
declared policy:

- ``drop_oldest``: drop the oldest unprocessed audio down to ``keep_queue_ms`` and count the
  dropped samples (the text skips what was dropped; latency stays bounded);
- ``fallback``: switch once to ``fallback_model`` (e.g. the int8 export of the same network;
  its state carries over when the state ports match); if the backlog still reaches twice
  ``max_queue_ms``, drop as above.

One thread: arrivals are computed from the clock (a file) or collected from the capture
callback's queue (a microphone), so a slow step delays processing, never arrival, exactly as
with a real capture thread.
"""

from __future__ import annotations

import math
import queue
import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import InvalidInputError, MissingDependencyError, UnsupportedError
from .audio import check_sample_rate, read_audio_file

__all__ = ["PacingOptions", "PacingReport", "FileSource", "MicrophoneSource", "run_paced", "UNDERRUN_POLICIES"]

UNDERRUN_POLICIES = ("drop_oldest", "fallback")


def _positive_ms(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise InvalidInputError(f"{name} must be a positive number; got {value!r}")
    return float(value)


@dataclass(frozen=True)
class PacingOptions:
    """How audio is fed and what happens when processing falls behind.

    Fields:
        read_ms: audio per read (a capture callback's block).
        realtime: True feeds at wall-clock speed; False as fast as the model goes (no underruns).
        max_queue_ms: backlog above which processing counts as behind (an underrun).
        keep_queue_ms: backlog kept when dropping (default half of ``max_queue_ms``).
        policy: "drop_oldest" or "fallback".
        fallback_model: model path (or OnnxStepSession) switched to by the "fallback" policy.
    """

    read_ms: float = 20.0
    realtime: bool = True
    max_queue_ms: float = 1000.0
    keep_queue_ms: float | None = None
    policy: str = "drop_oldest"
    fallback_model: object = None

    def __post_init__(self):
        _positive_ms("read_ms", self.read_ms)
        _positive_ms("max_queue_ms", self.max_queue_ms)
        if self.keep_queue_ms is not None:
            _positive_ms("keep_queue_ms", self.keep_queue_ms)
            if self.keep_queue_ms > self.max_queue_ms:
                raise InvalidInputError(f"keep_queue_ms ({self.keep_queue_ms}) must not exceed max_queue_ms "
                                        f"({self.max_queue_ms})")
        if self.policy not in UNDERRUN_POLICIES:
            raise InvalidInputError(f"policy must be one of {UNDERRUN_POLICIES}; got {self.policy!r}")
        if self.policy == "fallback" and self.fallback_model is None:
            raise InvalidInputError("policy 'fallback' needs fallback_model (e.g. the int8 model's path)")

    @property
    def effective_keep_queue_ms(self) -> float:
        return self.max_queue_ms / 2 if self.keep_queue_ms is None else self.keep_queue_ms


def _percentiles(values_ms: list) -> dict:
    if not values_ms:
        return {"p50": None, "p95": None, "max": None}
    a = np.asarray(values_ms, dtype=np.float64)
    return {"p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)), "max": float(a.max())}


@dataclass
class PacingReport:
    """What one paced run measured. Times in ms unless named ``_s``."""

    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    busy_seconds: float = 0.0                       # time spent in accept + steps
    step_latency_ms: list = field(default_factory=list)
    queue_depth_ms: list = field(default_factory=list)  # backlog sampled before each step
    lag_ms: list = field(default_factory=list)          # realtime: wall time minus audio time processed
    underruns: int = 0                              # times the backlog crossed max_queue_ms
    dropped_samples: int = 0
    model_switches: int = 0
    state_carried: bool | None = None
    events: list = field(default_factory=list)

    @property
    def rtf(self) -> float:
        """Real-time factor: processing time per second of audio (< 1 keeps up)."""
        return self.busy_seconds / self.audio_seconds if self.audio_seconds else float("nan")

    def summary(self) -> dict:
        return {
            "audio_seconds": self.audio_seconds, "wall_seconds": self.wall_seconds, "rtf": self.rtf,
            "latency_ms": _percentiles(self.step_latency_ms), "queue_depth_ms": _percentiles(self.queue_depth_ms),
            "lag_ms": _percentiles(self.lag_ms), "steps": len(self.step_latency_ms), "underruns": self.underruns,
            "dropped_samples": self.dropped_samples, "model_switches": self.model_switches,
            "state_carried": self.state_carried,
        }


class FileSource:
    """An audio file read in blocks of ``read_ms``; in realtime mode block k arrives at (k + 1) * read_ms."""

    def __init__(self, path, *, read_ms: float = 20.0, realtime: bool = True):
        self.samples, self.sample_rate_hz = read_audio_file(path)
        self.read_samples = max(1, int(round(_positive_ms("read_ms", read_ms) * self.sample_rate_hz / 1000)))
        self.realtime = realtime
        self.duration_s = self.samples.shape[0] / self.sample_rate_hz
        self._next = 0
        self._t0 = None

    @property
    def done(self) -> bool:
        return self._next >= self.samples.shape[0]

    def start(self, now: float) -> None:
        self._t0 = now

    def _arrival(self, start: int) -> float:
        end = min(start + self.read_samples, self.samples.shape[0])
        return self._t0 + end / self.sample_rate_hz

    def poll(self, now: float) -> list:
        """Blocks that have arrived by ``now`` (one block per call when not realtime)."""
        out = []
        while not self.done and (not self.realtime and not out or self.realtime and self._arrival(self._next) <= now):
            out.append(self.samples[self._next:self._next + self.read_samples])
            self._next += self.read_samples
        return out

    def wait_s(self, now: float) -> float:
        """Seconds until the next block arrives."""
        if self.done or not self.realtime:
            return 0.0
        return max(0.0, self._arrival(self._next) - now)

    def close(self) -> None:
        pass


class MicrophoneSource:
    """Live capture through ``sounddevice`` (optional dependency), mono float32 blocks of ``read_ms``.

    ``duration_s`` stops the capture after that much audio (None: until ``close()``).
    """

    realtime = True

    def __init__(self, *, sample_rate_hz: int = 16000, read_ms: float = 20.0, duration_s: float | None = None,
                 device=None):
        try:
            import sounddevice as sd
        except ImportError:
            raise MissingDependencyError("microphone input needs the 'sounddevice' package: pip install sounddevice"
                                         ) from None
        except OSError as e:  # the package is there but the PortAudio library is not
            raise MissingDependencyError(f"sounddevice cannot load PortAudio: {e}") from None
        try:
            sd.query_devices(device, kind="input")
        except (sd.PortAudioError, ValueError) as e:
            raise UnsupportedError(f"no usable audio input device: {e}") from None
        self.sample_rate_hz = check_sample_rate(sample_rate_hz)
        self.read_samples = max(1, int(round(_positive_ms("read_ms", read_ms) * self.sample_rate_hz / 1000)))
        if duration_s is not None:
            _positive_ms("duration_s", duration_s)
        self.duration_s = duration_s
        self._queue: queue.Queue = queue.Queue()
        self._captured = 0
        self._sd = sd
        self._device = device
        self._stream = None
        self._closed = False

    def _callback(self, indata, frames, time_info, status):  # runs on PortAudio's thread
        self._queue.put(indata.copy())

    @property
    def done(self) -> bool:
        limit = self.duration_s is not None and self._captured >= self.duration_s * self.sample_rate_hz
        return (self._closed or limit) and self._queue.empty()

    def start(self, now: float) -> None:
        self._stream = self._sd.InputStream(samplerate=self.sample_rate_hz, blocksize=self.read_samples, channels=1,
                                            dtype="float32", device=self._device, callback=self._callback)
        self._stream.start()

    def poll(self, now: float) -> list:
        out = []
        while True:
            try:
                block = self._queue.get_nowait()
            except queue.Empty:
                break
            out.append(block)
            self._captured += block.shape[0]
        if self.duration_s is not None and self._captured >= self.duration_s * self.sample_rate_hz:
            self.close()
        return out

    def wait_s(self, now: float) -> float:
        return self.read_samples / self.sample_rate_hz / 2

    def close(self) -> None:
        if self._stream is not None and not self._closed:
            self._stream.stop()
            self._stream.close()
        self._closed = True


def run_paced(streamer, source, options: PacingOptions = PacingOptions(), *, on_events=None,
              clock=time.perf_counter, sleep=time.sleep) -> PacingReport:
    """Drive ``streamer`` from ``source`` (FileSource or MicrophoneSource) and measure.

    ``on_events(list)`` is called with each non-empty batch of events as they happen.
    """
    if not isinstance(options, PacingOptions):
        raise InvalidInputError(f"options must be a PacingOptions; got {type(options).__name__}")
    report = PacingReport()
    rate_hz = streamer.sample_rate_hz
    max_queue = options.max_queue_ms * rate_hz / 1000
    keep_queue = int(options.effective_keep_queue_ms * rate_hz / 1000)
    behind = False
    switched = False
    finished = False
    start = clock()
    source.start(start)

    def emit(events):
        if events:
            report.events.extend(events)
            if on_events is not None:
                on_events(events)

    try:
        while True:
            now = clock()
            for block in source.poll(now):
                t = clock()
                emit(streamer.accept_waveform(block, source.sample_rate_hz, decode=False))
                report.busy_seconds += clock() - t
                report.audio_seconds += block.shape[0] / source.sample_rate_hz
            if source.done and not finished:
                emit(streamer.input_finished(decode=False))
                finished = True
            if source.realtime:
                backlog = streamer.backlog_samples
                was_behind, behind = behind, backlog > max_queue
                if behind:
                    if not was_behind:  # one underrun each time the backlog crosses the limit
                        report.underruns += 1
                    if options.policy == "fallback" and not switched:
                        report.state_carried = streamer.switch_model(options.fallback_model)
                        report.model_switches += 1
                        switched = True
                    elif backlog > max_queue * (2 if switched else 1):
                        # The fallback gets room to catch up (twice the queue) before audio is dropped.
                        streamer.drop_backlog(keep_queue)
            if streamer.is_ready():
                depth_ms = 1000.0 * streamer.backlog_samples / rate_hz
                steps_before = streamer.counters.steps
                t = clock()
                events = streamer.decode_step()
                done_at = clock()
                report.busy_seconds += done_at - t
                if streamer.counters.steps > steps_before:  # the closing call runs no model step
                    report.step_latency_ms.append(1000.0 * (done_at - t))
                    report.queue_depth_ms.append(depth_ms)
                if source.realtime and streamer.counters.steps > steps_before:
                    report.lag_ms.append(1000.0 * (done_at - start) - 1000.0 * streamer.processed_samples / rate_hz)
                emit(events)
                continue
            if finished:
                break
            wait = source.wait_s(clock())
            if wait > 0:
                sleep(wait)
    finally:
        source.close()
    report.wall_seconds = clock() - start
    report.dropped_samples = streamer.counters.dropped_samples
    return report
