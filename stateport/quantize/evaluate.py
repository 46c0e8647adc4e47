"""Streaming WER and 1-thread real-time factor of a stateport model on held-out real speech.

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
    """Composed digit strings of one held-out speaker: waveforms float32 [N] at 16 kHz + token ids."""

    speaker: str
    waveforms: tuple
    references: tuple
    sample_rate_hz: int = 16000

    @property
    def seconds(self) -> float:
        return sum(len(w) for w in self.waveforms) / self.sample_rate_hz


def held_out_set(speaker: str, *, utterances: int = 60, seed: int = 2024,
                 num_digits_range: tuple = (1, 8)) -> HeldOutSet:
    """``utterances`` clean digit strings (no augmentation) from every recording of ``speaker``."""
    from ..train.augment import NO_AUGMENTATION
    from ..train.data import ClipSource, make_utterance
    from ..train.fsdd import load_fsdd

    src = ClipSource(f"fsdd-{speaker}", load_fsdd(speakers=[speaker]))
    rng = np.random.default_rng(seed)
    waves, refs = [], []
    for _ in range(utterances):
        w, comp = make_utterance(rng, [src], num_digits_range=num_digits_range, augment=NO_AUGMENTATION)
        waves.append(w)
        refs.append(tuple(int(t) for t in comp.token_ids))
    return HeldOutSet(speaker, tuple(waves), tuple(refs))


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
    from ..train.metrics import edit_distance

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
