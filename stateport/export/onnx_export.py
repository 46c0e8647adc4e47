"""Export a streaming module to ONNX with explicit state ports and the card inside.

One graph, two modes (seed §11): every state input is also an initializer holding its
initial value for one stream, which makes the input optional in ONNX Runtime. The graph
broadcasts a state to the batch of the audio it is fed with, so a client that feeds only the
audio gets the offline (batch) result from a fresh state, and a client that feeds the state
gets a streaming step.

Exporter: the TorchScript-based exporter (``dynamo=False``). Measured on torch 2.13:
``torch.onnx.export(dynamo=True)`` declares the time axis of ``nn.LSTM``/``nn.GRU`` outputs
frozen at the example length while the input says it is dynamic. ``exporter="dynamo"`` stays
selectable for diagnosis; the parity proof and the shape check catch that bug (see tests).
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings

import numpy as np
import torch
from torch import nn

from ..errors import InvalidInputError, UnsupportedError
from ..runtime.model_file import write_card
from ..spec import ModelCard
from .card_builder import build_card, example_inputs, example_sequences
from .state_guard import check_no_hidden_state, frozen_value_sites, refuse_frozen_values

DEFAULT_OPSET = 17
EXPORTERS = ("torchscript", "dynamo")


class FlatStep(nn.Module):
    """``forward(*inputs, *state_in) -> (*outputs, *state_out)`` in the card's port order.

    Each state is broadcast along its batch axis to the batch of the first input (every input
    has its batch on axis 0): the initializer default holds one stream, and this makes it serve
    any batch.
    """

    def __init__(self, model, broadcast_batch: bool):
        super().__init__()
        self.model = model
        self.num_inputs = len(model.input_specs())
        self.batch_axes = [d.batch_axis for d in model.state_decls()]
        self.broadcast_batch = broadcast_batch

    def forward(self, x, *rest):
        # ``x`` named apart from the rest so the dynamo exporter's dynamic_shapes keep their form.
        inputs, state = (x, *rest[: self.num_inputs - 1]), rest[self.num_inputs - 1:]
        if self.broadcast_batch:
            batch = x.shape[0]
            state = tuple(s.expand(*[batch if i == axis else -1 for i in range(s.dim())])
                          for s, axis in zip(state, self.batch_axes))
        return tuple(self.model.step(*inputs, *state))


@contextlib.contextmanager
def _quiet(into: list | None = None):
    """The exporters print deprecation banners and progress; keep the CLI readable. The warnings
    go to ``into``, so the tracer's warnings about frozen values are checked, not lost."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                yield
        finally:
            if into is not None:
                into.extend(caught)


def _dynamic_axes(card: ModelCard) -> dict:
    axes = {}
    for port in card.inputs + card.outputs:
        dims = {i: d for i, d in enumerate(port.shape) if isinstance(d, str)}
        if dims:
            axes[port.name] = dims
    for s in card.states:
        if isinstance(s.shape[s.batch_axis], str):
            axes[s.name] = {s.batch_axis: s.shape[s.batch_axis]}
            axes[s.output] = {s.batch_axis: s.shape[s.batch_axis]}
    return axes


def _torch_export(flat: FlatStep, args: tuple, card: ModelCard, exporter: str, opset: int, caught=None) -> bytes:
    buf = io.BytesIO()
    with _quiet(caught), torch.no_grad():
        if exporter == "torchscript":
            torch.onnx.export(flat, args, buf, input_names=card.input_names, output_names=card.output_names,
                              dynamic_axes=_dynamic_axes(card) or None, opset_version=opset, dynamo=False)
            return buf.getvalue()
        from torch.export import Dim

        dims = {}
        dynamic_shapes = []  # FlatStep.forward(x, *state): the varargs form one nested entry
        for port_shape in [p.shape for p in card.inputs] + [s.shape for s in card.states]:
            spec = {i: dims.setdefault(d, Dim(d, min=1)) for i, d in enumerate(port_shape) if isinstance(d, str)}
            dynamic_shapes.append(spec or None)
        program = torch.onnx.export(flat, args, input_names=card.input_names, output_names=card.output_names,
                                    dynamic_shapes=(dynamic_shapes[0], tuple(dynamic_shapes[1:])), dynamo=True)
        program.save(buf)
        return buf.getvalue()


def _export_or_refuse(flat, args, card, exporter, opset, caught) -> bytes:
    try:
        return _torch_export(flat, args, card, exporter, opset, caught)
    except Exception as e:  # the exporters raise many types; report the op/cause in one line
        raise UnsupportedError(f"the {exporter} exporter could not export {type(flat.model).__name__}: "
                               f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e


def _add_state_defaults(model_proto, card: ModelCard) -> None:
    """Give every state input an initializer with its initial value for one stream."""
    from onnx import numpy_helper

    for s in card.states:
        value = np.full(s.concrete_shape(1), s.init, dtype=np.dtype(s.dtype))
        model_proto.graph.initializer.append(numpy_helper.from_array(value, s.name))


def export_onnx(model, out_path: str | os.PathLike, *, chunk_frames: int | None = None, static: bool = False,
                exporter: str = "torchscript", opset: int = DEFAULT_OPSET, provenance: dict | None = None,
                name: str | None = None) -> ModelCard:
    """Export ``model`` (a StreamingModule) to ``out_path``; returns the card written into it.

    The parity proof is separate (:func:`stateport.verify.verify_model_file`), so that the
    caller decides what to do with a failing export; ``stateport export`` runs it by default.
    """
    import onnx

    if exporter not in EXPORTERS:
        raise InvalidInputError(f"unknown exporter {exporter!r}: expected one of {', '.join(EXPORTERS)}")
    model = model.eval()
    model.check_port_names()
    s = model.streaming
    frames = chunk_frames if chunk_frames is not None else s.frames_per_step
    if not model.is_frame_wise():
        if frames is None or frames < 1:
            raise InvalidInputError(f"chunk_frames must be a positive number of frames, got {frames}")
        if frames % s.frame_multiple or frames < s.min_frames:
            raise InvalidInputError(f"chunk_frames={frames} does not fit this model: it needs a multiple of "
                                    f"{s.frame_multiple} frames, at least {s.min_frames}")
    probe_frames = max(frames or 1, 1)
    # The offline sequence must be one the model takes: e.g. whole chunks of a chunked attention.
    sequence_frames = max(3, s.min_frames)
    sequence_frames += (-sequence_frames) % max(s.frame_multiple, 1) + s.lookahead_frames  # + the frames after
    check_no_hidden_state(model, example_inputs(model, probe_frames, 2), example_sequences(model, sequence_frames, 2))

    provenance = dict(provenance or {})
    provenance.setdefault("architecture", getattr(model, "architecture", type(model).__name__))
    provenance.update(exporter=exporter, opset=opset if exporter == "torchscript" else None)
    card = build_card(model, name=name or provenance["architecture"], chunk_frames=frames or 0, static=static,
                      provenance=provenance)

    # Trace with a chunk of 2x the nominal length so no size coincides with a weight dimension;
    # a chunk-exact model is traced at the one chunk it takes. The state is one past the warm-up.
    trace_frames = frames if static or s.chunk_exact else 2 * max(frames, 1)
    # eval(): the exporter puts the wrapper back into the mode it found it in, and a new module is
    # in training mode, so without this the user's model came back from export in training mode.
    flat = FlatStep(model, broadcast_batch=not static).eval()
    caught: list = []
    data = _export_or_refuse(flat, (*example_inputs(model, trace_frames, 1), *model.trace_state(1)), card,
                             exporter, opset, caught)
    sites = frozen_value_sites(caught)
    if sites and exporter == "torchscript":
        # Same shapes, other values: a graph that depends on them froze a value (see state_guard).
        other = _export_or_refuse(flat, (*example_inputs(model, trace_frames, 1, seed=1), *model.init_state(1)),
                                  card, exporter, opset, [])
        refuse_frozen_values(data, other, sites, model)
    proto = onnx.load_from_string(data)
    _add_state_defaults(proto, card)
    card.provenance.opset = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=None)
    write_card(proto, card)
    onnx.checker.check_model(proto)
    folder = os.path.dirname(os.path.abspath(os.fspath(out_path)))
    os.makedirs(folder, exist_ok=True)  # `-o new_dir/model.onnx` makes the folder, as the other writers do
    onnx.save(proto, os.fspath(out_path))
    return card


def update_card(path: str | os.PathLike, card: ModelCard) -> None:
    """Rewrite the card stored in an ONNX file (e.g. to add the parity certificate)."""
    import onnx

    proto = onnx.load(os.fspath(path))
    write_card(proto, card)
    onnx.save(proto, os.fspath(path))
