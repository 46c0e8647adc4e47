"""Streaming accuracy and 1-thread speed of a stateport model on the caller's evaluation sets.

The audio goes through the client runtime exactly as on a device: one
:class:`~stateport.runtime.recognizer.Recognizer` stream per recording, read 20 ms at a time at
the recording's own sample rate (the runtime resamples), flushed at the end with the card's
certified tail (``streaming.tail_padding_ms``) and nothing else appended. The session is opened
at the ONNX Runtime level the model's card was proved at, and its ``run`` is timed apart, so a
table can tell model time from frontend time.

The sets are inputs (:class:`EvalSet`, or any object with ``name``, ``items`` and
``sample_rate_hz``, optionally ``kind`` and ``group``: ``stateport.train.real_speech.EvalSet``
is one). A set of kind ``negative`` holds speech or noise without any token: it is scored in
false tokens per minute instead of WER. The digit recogniser's sets come from
``stateport.train.quantize_data.table_sets``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidInputError
from ..runtime.session import OnnxStepSession

NEGATIVE = "negative"  # EvalSet.kind of a set without tokens (scored in false tokens per minute)
READ_MS = 20.0  # a microphone callback's read


@dataclass(frozen=True)
class EvalSet:
    """One evaluation set: ``items`` = ((waveform float32 [N] at ``sample_rate_hz``, reference token ids), ...).

    kind: "tokens" (scored by WER) or :data:`NEGATIVE` (no token expected: false tokens per minute).
    group: the part of a table the set belongs to (e.g. "trimmed", "connected", "composed").
    """

    name: str
    items: tuple
    sample_rate_hz: int = 16000
    kind: str = "tokens"
    group: str = ""

    @property
    def seconds(self) -> float:
        return sum(len(w) for w, _ in self.items) / self.sample_rate_hz


def as_eval_sets(sets) -> list[EvalSet]:
    """``sets`` (one set or an iterable of them, any object with ``name``/``items``/``sample_rate_hz``) as
    :class:`EvalSet`; a typed error names what is missing."""
    if sets is None:
        raise InvalidInputError("no evaluation sets: give EvalSet(name, items=((waveform, token_ids), ...), "
                                "sample_rate_hz=...) objects")
    if hasattr(sets, "items") and hasattr(sets, "name"):
        sets = [sets]
    out = []
    for s in sets:
        missing = [a for a in ("name", "items", "sample_rate_hz") if not hasattr(s, a)]
        if missing:
            raise InvalidInputError(f"evaluation set {type(s).__name__}: has no {', '.join(missing)} (expected "
                                    "name, items ((waveform, token_ids), ...), sample_rate_hz)")
        items = tuple((np.asarray(w, dtype=np.float32), tuple(int(t) for t in ref)) for w, ref in s.items)
        if not items:
            raise InvalidInputError(f"evaluation set {s.name!r} is empty")
        out.append(EvalSet(str(s.name), items, int(s.sample_rate_hz), getattr(s, "kind", "tokens") or "tokens",
                           getattr(s, "group", "") or ""))
    return out


class TimedSession(OnnxStepSession):
    """An OnnxStepSession that records the seconds of every ``run`` (the model alone)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.step_seconds: list[float] = []

    @property
    def model_seconds(self) -> float:
        return float(sum(self.step_seconds))

    def run(self, x, state=None):
        t0 = time.perf_counter()
        try:
            return super().run(x, state)
        finally:
            self.step_seconds.append(time.perf_counter() - t0)

    def run_prepared(self, feeds):  # the runtime's step calls this one
        t0 = time.perf_counter()
        try:
            return super().run_prepared(feeds)
        finally:
            self.step_seconds.append(time.perf_counter() - t0)


def certified_level(path: str) -> str:
    """The ORT level the card's certificate was proved at (``all`` when the card has none)."""
    from ..runtime.model_file import read_card
    from ..runtime.session import certified_optimization

    return certified_optimization(read_card(path))


def _score(s: EvalSet, hyps: list, wall_s: float, model_s: float) -> dict:
    from ..metrics import edit_distance, string_accuracy

    refs = [ref for _, ref in s.items]
    row = {"set": s.name, "group": s.group, "kind": s.kind, "utterances": len(refs),
           "audio_seconds": round(s.seconds, 2), "rtf": wall_s / s.seconds, "model_rtf": model_s / s.seconds}
    if s.kind == NEGATIVE:
        false = sum(len(h) for h in hyps)
        row.update(false_tokens=false, false_per_minute=false / (s.seconds / 60.0),
                   utterances_with_tokens=sum(bool(h) for h in hyps))
    else:
        errors = sum(edit_distance(r, h) for r, h in zip(refs, hyps))
        tokens = sum(len(r) for r in refs)
        row.update(errors=errors, tokens=tokens, wer=errors / max(tokens, 1),
                   string_accuracy=string_accuracy(refs, hyps))
    return row


def evaluate_model(path: str, sets, *, threads: int = 1, optimization: str | None = None,
                   read_ms: float = READ_MS, allow_uncertified: bool = False) -> dict:
    """Accuracy per set and speed of ``path`` on ``sets`` (:func:`as_eval_sets`), streamed through the runtime.

    Returns ``{"sets": [row per set], "rtf", "model_rtf", "step_ms": {p50, p95, mean}, ...}``: a row has
    ``wer`` (token sets) or ``false_per_minute`` (negative sets); RTFs are 1-thread wall time over
    audio time, of the whole client loop and of the session's ``run`` alone. ``allow_uncertified``: measure a
    file whose proof failed (an accuracy table row that says so), which the runtime refuses by default.
    """
    from ..runtime.recognizer import Recognizer

    sets = as_eval_sets(sets)
    level = optimization or certified_level(path)
    session = TimedSession(path, threads=threads, optimization=level, allow_uncertified=allow_uncertified)
    rec = Recognizer(session)
    rows, total_wall, total_audio = [], 0.0, 0.0
    for s in sets:
        read = max(int(round(s.sample_rate_hz * read_ms / 1000.0)), 1)
        model_before, t0 = session.model_seconds, time.perf_counter()
        hyps = [tuple(rec.transcribe(wave, s.sample_rate_hz, read_samples=read).tokens) for wave, _ in s.items]
        wall = time.perf_counter() - t0
        rows.append(_score(s, hyps, wall, session.model_seconds - model_before))
        total_wall += wall
        total_audio += s.seconds
    steps_ms = 1000.0 * np.asarray(session.step_seconds or [0.0])
    return {"sets": rows, "audio_seconds": round(total_audio, 2), "rtf": total_wall / total_audio,
            "model_rtf": session.model_seconds / total_audio, "steps": len(session.step_seconds),
            "step_ms": {"p50": float(np.percentile(steps_ms, 50)), "p95": float(np.percentile(steps_ms, 95)),
                        "mean": float(steps_ms.mean())},
            "ort_graph_optimization": level, "threads": threads, "tail_padding_ms": rec.tail_padding_ms}
