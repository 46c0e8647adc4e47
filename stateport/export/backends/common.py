"""What every backend shares: validation + card, the flat step, example tensors, typed conversion errors."""

from __future__ import annotations

import contextlib
import io
import keyword
import logging
import os
import warnings
from dataclasses import dataclass, field

import torch
from torch import nn

from ...errors import InvalidInputError, UnsupportedError
from ...spec import ModelCard
from ..card_builder import build_card, example_inputs, example_sequences
from ..onnx_export import FlatStep
from ..state_guard import check_no_hidden_state


@dataclass
class Artifact:
    """A converted program in memory: ``save(path, card)`` writes it with ``card`` inside.

    ``notes`` say what the backend changed or could not keep (e.g. "static shapes only").
    """

    card: ModelCard
    save_fn: object
    notes: list = field(default_factory=list)

    def save(self, path: str | os.PathLike, card: ModelCard | None = None) -> None:
        self.save_fn(os.fspath(path), card or self.card)


def first_line(e: BaseException, limit: int = 300) -> str:
    """``Type: first line of the message`` — what a matrix cell or a CLI error shows."""
    text = str(e).strip()
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return f"{type(e).__name__}: {line[:limit]}" if line else type(e).__name__


def conversion_error(backend: str, tool: str, model, e: BaseException) -> UnsupportedError:
    """A converter failure as a typed user error naming the converter and its first error line."""
    return UnsupportedError(f"{backend}: {tool} could not convert {type(model).__name__}: {first_line(e)}")


@contextlib.contextmanager
def quiet():
    """Converters print progress bars, banners and warnings; keep the CLI output ours.

    Python-level output only: native libraries that write to the file descriptors directly
    (LiteRT, XNNPACK) still print a line or two.
    """
    loggers = [logging.getLogger(n) for n in ("", "absl", "coremltools", "executorch", "torch", "litert_torch")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def reject_options(backend: str, options: dict | None) -> None:
    """Backends without options refuse any, so a misspelt or misplaced one is not silently ignored."""
    if options:
        raise InvalidInputError(f"{backend}: unknown option(s) {', '.join(map(str, options))} "
                                "(only the coreml backend takes one: state='io'|'coreml')")


def check_chunk(model, chunk_frames: int | None) -> int:
    """The chunk length to export (the model's nominal one by default), validated against the model."""
    frames = chunk_frames if chunk_frames is not None else model.streaming.frames_per_step
    if model.is_frame_wise():
        return 0
    s = model.streaming
    if frames is None or frames < 1:
        raise InvalidInputError(f"chunk_frames must be a positive number of frames, got {frames}")
    if frames % s.frame_multiple or frames < s.min_frames:
        raise InvalidInputError(f"chunk_frames={frames} does not fit this model: it needs a multiple of "
                                f"{s.frame_multiple} frames, at least {s.min_frames}")
    return frames


def prepare(model, *, chunk_frames: int | None, static: bool, provenance: dict | None, name: str | None,
            backend: str, exporter: str) -> tuple:
    """Validate ``model`` exactly as the ONNX export does and build its card; returns ``(model, card)``.

    Refuses hidden state (a buffer mutated by ``step``) before any converter freezes it.
    """
    model = model.eval()
    model.check_port_names()
    frames = check_chunk(model, chunk_frames)
    s = model.streaming
    sequence_frames = max(3, s.min_frames)
    sequence_frames += (-sequence_frames) % max(s.frame_multiple, 1) + s.lookahead_frames  # + the frames after
    check_no_hidden_state(model, example_inputs(model, max(frames, 1), 2), example_sequences(model, sequence_frames, 2))
    prov = dict(provenance or {})
    prov.setdefault("architecture", getattr(model, "architecture", type(model).__name__))
    prov.update(backend=backend, exporter=exporter, opset=None)
    card = build_card(model, name=name or prov["architecture"], chunk_frames=frames, static=static, provenance=prov)
    return model, card


def example_args(model, card: ModelCard, *, batch: int, frames: int) -> tuple:
    """Example ``(*inputs, *states)`` in card port order: ``frames`` on each time axis, ``batch`` streams."""
    xs = example_inputs(model, frames, batch)
    states = model.init_state(batch)
    if len(states) != len(card.states):
        raise InvalidInputError(f"{type(model).__name__}.init_state returned {len(states)} tensors, the card "
                                f"declares {len(card.states)} states")
    return (*xs, *states)


def trace_frames(card: ModelCard) -> int:
    """The chunk length to trace with: the static chunk, or twice the nominal one (no size coincides
    with a weight dimension, so nothing gets specialised to it by accident)."""
    s = card.streaming
    if s.frames_per_step == 0:
        return 1
    return s.frames_per_step if s.static else 2 * s.frames_per_step


def flat_step(model, card: ModelCard) -> FlatStep:
    """The positional step in card port order; states are fed with their full batch (no broadcast)."""
    return FlatStep(model, broadcast_batch=False).eval()


def named_step(flat: nn.Module, card: ModelCard) -> nn.Module:
    """``forward(<input port names>) -> {output port name: tensor}``: a module whose argument and
    result names are the card's ports, for converters that name signature I/O after them (LiteRT).

    The method is generated because torch.export needs a fixed signature (``**kwargs`` is refused)
    and the names are only known from the card. Port names are lowercase identifiers (spec rule);
    a Python keyword cannot be an argument name, so such a card is refused here.
    """
    names = card.input_names
    bad = [n for n in names if keyword.iskeyword(n) or not n.isidentifier()]
    if bad:
        raise UnsupportedError(f"port name(s) {', '.join(bad)} cannot be converter argument names (Python keywords)")
    args = ", ".join(names)
    namespace: dict = {}
    exec(f"def forward(self, {args}):\n    return dict(zip(self.output_names, self.flat({args})))", namespace)
    cls = type("NamedStep", (nn.Module,), {"forward": namespace["forward"],
                                            "__doc__": "The flat step with card-named inputs and outputs."})
    module = cls()
    module.flat = flat
    module.output_names = list(card.output_names)
    return module.eval()


def tensor_dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")
