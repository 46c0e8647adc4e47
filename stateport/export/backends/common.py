"""What every backend shares: the settings, validation + card, the flat step, example tensors, typed errors."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import keyword
import logging
import os
import warnings
from dataclasses import dataclass, field

from torch import nn

from ...errors import InvalidInputError, UnsupportedError
from ...spec import ModelCard
from ..card_builder import build_card, example_inputs, example_sequences
from ..state_guard import check_no_hidden_state

EXPORTERS = ("torchscript", "dynamo")


@dataclass(frozen=True)
class ExportSettings:
    """What the caller asked of a conversion, with the names of ``export_model`` and the CLI.

    Each backend reads the settings it implements and refuses the others (:meth:`refuse`), so a
    new option is a field here, an argument of ``export_model`` and the lines of the backend
    that honours it.

    chunk_frames: nominal frames per step (None: the model's own); static: every shape fixed
    (batch 1, one chunk); exporter: the torch-to-ONNX exporter (``torchscript`` or ``dynamo``);
    quantize: a backend's own quantisation at export (tflite ``dynamic-int8``); options:
    backend-specific settings (coreml ``state``); provenance: what the card records of where
    the model came from; name: the card's model name; audio_input: the card's frontend inside
    the graph (PCM in, :class:`stateport.nn.AudioInput`; the job wraps the model, a backend that
    cannot hold such a graph refuses it); tail_padding: ``(ms, basis)``, the weights' measured
    end-of-input tail for the card (:func:`stateport.export.sources.measured_tail`).
    """

    chunk_frames: int | None = None
    static: bool = False
    exporter: str = "torchscript"
    quantize: str | None = None
    options: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    name: str | None = None
    audio_input: bool = False
    tail_padding: tuple | None = None

    def __post_init__(self):
        if self.exporter not in EXPORTERS:
            raise InvalidInputError(f"unknown exporter {self.exporter!r}: expected one of {', '.join(EXPORTERS)}")
        if self.chunk_frames is not None and (isinstance(self.chunk_frames, bool)
                                              or not isinstance(self.chunk_frames, int) or self.chunk_frames < 1):
            raise InvalidInputError(f"chunk_frames must be a positive number of frames, got {self.chunk_frames!r}")
        if self.audio_input and self.static:
            raise UnsupportedError("--audio-input with --static: how many output steps a call completes depends on the "
                                   "samples carried from earlier calls (a value in the state), so its output shape "
                                   "cannot be static")

    def replace(self, **changes) -> "ExportSettings":
        return dataclasses.replace(self, **changes)

    def refuse(self, backend: str, *, quantize: tuple = (), options: tuple = (), exporters: tuple = (),
               audio_input: bool = False) -> None:
        """Refuse what ``backend`` does not offer: a ``quantize`` recipe not in ``quantize``, an option
        not named in ``options``, an exporter not in ``exporters`` (empty: the default one only), an
        audio-in graph unless ``audio_input``."""
        if self.audio_input and not audio_input:
            # Measured (litert-torch 0.10, executorch 1.5.1, coremltools 9.0, torch 2.13): torch.export stops at
            # the frame count that depends on a state value ("GuardOnDataDependentSymNode"), the tflite (always)
            # and executorch (nn.LSTM) conversions are static-shape only, and coremltools fails on the empty
            # concatenation of a call that completes no frame ("Concat got 0 values").
            raise UnsupportedError(f"--audio-input with --backend {backend}: how many output steps a call completes "
                                   "depends on the samples carried from earlier calls (a value in the state), which "
                                   f"{backend}'s conversion cannot hold; use --backend onnx or openvino")
        if self.quantize is not None and self.quantize not in quantize:
            offered = f"it offers {', '.join(quantize)}" if quantize else "it quantizes nothing at export"
            raise UnsupportedError(f"{backend}: quantize={self.quantize!r} is not offered ({offered}); quantize an "
                                   "ONNX export with `stateport quantize FILE.onnx --recipe ...`, or use --backend "
                                   "tflite --quantize dynamic-int8")
        unknown = [k for k in self.options if k not in options]
        if unknown:
            raise InvalidInputError(f"{backend}: unknown option(s) {', '.join(map(str, unknown))}"
                                    + (f"; it takes {', '.join(options)}" if options else "; it takes none"))
        if self.exporter != "torchscript" and self.exporter not in exporters:
            raise InvalidInputError(f"{backend}: exporter={self.exporter!r} applies to the ONNX export only")


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
def quiet(into: list | None = None):
    """Converters print progress bars, banners and warnings; keep the CLI output ours.

    Python-level output only: native libraries that write to the file descriptors directly
    (LiteRT, XNNPACK) still print a line or two. ``into``: a list that receives the warnings
    instead of dropping them (the ONNX export checks the tracer's warnings about frozen values).
    """
    loggers = [logging.getLogger(n) for n in ("", "absl", "coremltools", "executorch", "torch", "litert_torch",
                                              "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always" if into is not None else "ignore")
            try:
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                    yield
            finally:
                if into is not None:
                    into.extend(caught)
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


@contextlib.contextmanager
def contiguous_tensors(model: nn.Module):
    """The model's parameters and buffers in the default (contiguous) memory format while a converter
    traces it; their own layout back afterwards, the values untouched.

    A layout chosen for eager speed (e.g. ``channels_last`` conv weights, which the built-in model's
    speech embedding uses: 1.7x faster on x86) is not one every converter handles. Measured on the
    built-in model: litert-torch turned channels_last conv weights into a TFLite graph whose numbers
    were wrong (logits off by 12.5 from the 9th conv on; caught by the proof), and ExecuTorch's
    XNNPACK lowering refused them (ChannelsLastTaggedReshapePass); with contiguous weights both pass.
    """
    swapped = []
    for t in [*model.parameters(), *model.buffers()]:
        if not t.is_contiguous():
            swapped.append((t, t.data))
            t.data = t.data.contiguous()
    try:
        yield model
    finally:
        for t, data in swapped:
            t.data = data


def check_chunk(model, chunk_frames: int | None) -> int:
    """The chunk length to export (the model's nominal one by default), validated against the model;
    0 for a frame-wise model."""
    if model.is_frame_wise():
        return 0
    s = model.streaming
    frames = chunk_frames if chunk_frames is not None else s.frames_per_step
    if frames is None or frames < 1:
        raise InvalidInputError(f"chunk_frames must be a positive number of frames, got {frames}")
    if (frames - s.lookahead_frames) % s.frame_multiple or frames < s.min_frames:
        ahead = f"{s.lookahead_frames} look-ahead frames plus " if s.lookahead_frames else ""
        raise InvalidInputError(f"chunk_frames={frames} does not fit this model: it needs {ahead}a multiple of "
                                f"{s.frame_multiple} frames, at least {s.min_frames}")
    return frames


def prepare(model, settings: ExportSettings, *, backend: str, exporter: str, static: bool | None = None) -> tuple:
    """Validate ``model`` and build its card, the same for every backend; returns ``(model, card)``.

    Checks the port names and the chunk length, and refuses hidden state (a buffer mutated by
    ``step``) before any converter freezes it. ``static`` overrides ``settings.static`` (a backend
    that can only export static shapes); ``exporter`` is what the card records as the exporter.
    """
    model = model.eval()
    model.check_port_names()
    frames = check_chunk(model, settings.chunk_frames)
    s = model.streaming
    # The offline sequence must be one the model takes: e.g. whole chunks of a chunked attention.
    sequence_frames = max(3, s.min_frames)
    sequence_frames += (-sequence_frames) % max(s.frame_multiple, 1) + s.lookahead_frames  # + the frames after
    check_no_hidden_state(model, example_inputs(model, max(frames, 1), 2), example_sequences(model, sequence_frames, 2))
    prov = dict(settings.provenance)
    prov.setdefault("architecture", getattr(model, "architecture", type(model).__name__))
    prov.update(backend=backend, exporter=exporter, opset=None)
    card = build_card(model, name=settings.name or prov["architecture"], chunk_frames=frames,
                      static=settings.static if static is None else static, provenance=prov)
    if settings.tail_padding is not None:
        ms, basis = settings.tail_padding
        if card.audio_input:  # measured through the runtime frontend; the same holds inside the graph
            basis += ("; the in-graph frontend has the runtime frontend's window and hop, and the end-of-input flush "
                      "completes the last model step as the features-in runtime pads it")
        card.streaming.tail_padding_ms, card.streaming.tail_padding_basis = float(ms), basis
    return model, card


class FlatStep(nn.Module):
    """``forward(*inputs, *state_in) -> (*outputs, *state_out)`` in the card's port order.

    ``broadcast_batch``: each state is broadcast along its batch axis to the batch of the first
    input (every input has its batch on axis 0): the ONNX initializer default holds one stream,
    and this makes it serve any batch. Formats without optional inputs feed full-batch states.
    """

    def __init__(self, model, broadcast_batch: bool):
        super().__init__()
        self.model = model
        self.num_inputs = len(model.input_specs())
        self.batch_axes = [d.batch_axis for d in model.state_decls()]
        self.broadcast_batch = broadcast_batch
        # A new module is in training mode, and the exporters put a module back into the mode they
        # found it in: without this the user's model came back from export in training mode.
        self.eval()

    def forward(self, x, *rest):
        # ``x`` named apart from the rest so the dynamo exporter's dynamic_shapes keep their form.
        inputs, state = (x, *rest[: self.num_inputs - 1]), rest[self.num_inputs - 1:]
        if self.broadcast_batch:
            batch = x.shape[0]
            state = tuple(s.expand(*[batch if i == axis else -1 for i in range(s.dim())])
                          for s, axis in zip(state, self.batch_axes))
        return tuple(self.model.step(*inputs, *state))


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
    with a weight dimension, so nothing gets specialised to it by accident); a chunk-exact model is
    traced at the one chunk it takes."""
    s = card.streaming
    if s.frames_per_step == 0:
        return 1
    return s.frames_per_step if s.static or s.chunk_exact else 2 * s.frames_per_step


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
