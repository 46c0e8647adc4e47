"""Streaming WER and 1-thread real-time factor of a stateport model on the caller's held-out speech.

The audio goes through the client runtime exactly as on a device: a Recognizer stream (ring buffer ->
streaming features -> session step with the state loop -> CTC decoder, flushed at the end), one
stream per utterance. The session is opened at the ONNX Runtime level the model's card was proved
at, and its ``run`` is timed apart so the table can tell model time from frontend time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..runtime.session import OnnxStepSession


@dataclass(frozen=True)
class HeldOutSet:
    """An evaluation set: waveforms float32 [N] at ``sample_rate_hz`` and their reference token ids.

    ``speaker``: who speaks it (the table's header); the digit recogniser's set comes from
    ``stateport.train.quantize_data.held_out_set``.
    """

    speaker: str
    waveforms: tuple
    references: tuple
    sample_rate_hz: int = 16000

    @property
    def seconds(self) -> float:
        return sum(len(w) for w in self.waveforms) / self.sample_rate_hz


class TimedSession(OnnxStepSession):
    """An OnnxStepSession that adds up the seconds spent in ``run`` (the model alone)."""

    model_seconds = 0.0
    steps = 0

    def run(self, x, state=None):
        t0 = time.perf_counter()
        try:
            return super().run(x, state)
        finally:
            self.model_seconds += time.perf_counter() - t0
            self.steps += 1

    def run_prepared(self, feeds):  # the runtime's step calls this one
        t0 = time.perf_counter()
        try:
            return super().run_prepared(feeds)
        finally:
            self.model_seconds += time.perf_counter() - t0
            self.steps += 1


def certified_level(path: str) -> str:
    """The ORT level the card's certificate was proved at (``all`` when the card has none)."""
    from ..runtime.model_file import read_card
    from ..runtime.session import certified_optimization

    return certified_optimization(read_card(path))


def transcribe(session: OnnxStepSession, waveform: np.ndarray, sample_rate_hz: int, *, streamer=None):
    """Token ids of one utterance streamed in 100 ms reads through the runtime (flushed at the end),
    and the :class:`~stateport.runtime.recognizer.Recognizer` to pass back as ``streamer``."""
    from ..runtime.recognizer import Recognizer

    rec = streamer or Recognizer(session)
    return tuple(rec.transcribe(waveform, sample_rate_hz, read_samples=sample_rate_hz // 10).tokens), rec


def evaluate_model(path: str, data: HeldOutSet, *, threads: int = 1, optimization: str | None = None) -> dict:
    """WER, 1-thread RTF (whole client loop and model alone) and per-step latency of ``path`` on ``data``."""
    from ..metrics import edit_distance

    level = optimization or certified_level(path)
    session = TimedSession(path, threads=threads, optimization=level)
    errors = words = 0
    streamer = None
    t0 = time.perf_counter()
    for wave, ref in zip(data.waveforms, data.references):
        hyp, streamer = transcribe(session, wave, data.sample_rate_hz, streamer=streamer)
        errors += edit_distance(ref, hyp)
        words += len(ref)
    wall = time.perf_counter() - t0
    return {"wer": errors / max(words, 1), "errors": errors, "words": words, "utterances": len(data.waveforms),
            "audio_seconds": round(data.seconds, 2), "rtf": wall / data.seconds,
            "model_rtf": session.model_seconds / data.seconds,
            "step_ms": 1000.0 * session.model_seconds / max(session.steps, 1), "ort_graph_optimization": level,
            "threads": threads}
