"""ONNX: the flat step exported by torch.onnx, with explicit state ports and the card inside.

One graph, two modes: every state input is also an initializer holding its initial value for
one stream, which makes the input optional in ONNX Runtime. The graph broadcasts a state to the
batch of the audio it is fed with, so a client that feeds only the audio gets the offline
(batch) result from a fresh state, and a client that feeds the state gets a streaming step.

The card is the ``metadata_props`` entry ``"stateport"`` (read by :mod:`stateport.runtime.model_file`).

Exporter: the TorchScript-based exporter (``dynamo=False``). Measured on torch 2.13:
``torch.onnx.export(dynamo=True)`` declares the time axis of ``nn.LSTM``/``nn.GRU`` outputs
frozen at the example length while the input says it is dynamic. ``exporter="dynamo"`` stays
selectable for diagnosis; the parity proof and the shape check catch that bug (see tests).
"""

from __future__ import annotations

import io
import os

import numpy as np
import torch

from ...errors import UnsupportedError
from ...runtime.model_file import write_card as write_card_to_proto
from ...spec import ModelCard
from ..card_builder import example_inputs
from ..state_guard import frozen_value_sites, refuse_frozen_values
from .common import Artifact, ExportSettings, FlatStep, prepare, quiet, trace_frames

DEFAULT_OPSET = 17


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


def _torch_export(flat: FlatStep, args: tuple, card: ModelCard, exporter: str, opset: int, caught: list) -> bytes:
    """The exported graph's bytes; the exporter's warnings go to ``caught``; a failure is one typed line."""
    try:
        return _export(flat, args, card, exporter, opset, caught)
    except Exception as e:  # the exporters raise many types; report the op/cause in one line
        raise UnsupportedError(f"the {exporter} exporter could not export {type(flat.model).__name__}: "
                               f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e


def _export(flat: FlatStep, args: tuple, card: ModelCard, exporter: str, opset: int, caught: list) -> bytes:
    buf = io.BytesIO()
    with quiet(caught), torch.no_grad():
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


def _add_state_defaults(model_proto, card: ModelCard) -> None:
    """Give every state input an initializer with its initial value for one stream."""
    from onnx import numpy_helper

    for s in card.states:
        value = np.full(s.concrete_shape(1), s.init, dtype=np.dtype(s.dtype))
        model_proto.graph.initializer.append(numpy_helper.from_array(value, s.name))


def to_onnx(model, settings: ExportSettings, *, opset: int = DEFAULT_OPSET):
    """Export ``model`` (a StreamingModule) to an in-memory ONNX ModelProto; returns ``(proto, card)``.

    The card is already inside the proto; the parity proof is the export job's
    (:func:`stateport.export.export_model`), so a caller decides what a failing proof means.
    """
    import onnx

    model, card = prepare(model, settings, backend="onnx", exporter=settings.exporter)
    frames, exporter = trace_frames(card), settings.exporter
    flat = FlatStep(model, broadcast_batch=not card.streaming.static)
    caught: list = []
    # The state traced with is one past the warm-up (model.trace_state).
    data = _torch_export(flat, (*example_inputs(model, frames, 1), *model.trace_state(1)), card, exporter, opset,
                         caught)
    sites = frozen_value_sites(caught)
    if sites and exporter == "torchscript":
        # Same shapes, other values: a graph that depends on them froze a value (see state_guard).
        other = _torch_export(flat, (*example_inputs(model, frames, 1, seed=1), *model.init_state(1)), card,
                              exporter, opset, [])
        refuse_frozen_values(data, other, sites, model)
    proto = onnx.load_from_string(data)
    _add_state_defaults(proto, card)
    card.provenance.opset = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=None)
    write_card_to_proto(proto, card)
    onnx.checker.check_model(proto)
    return proto, card


def save_onnx(proto, card: ModelCard, path: str | os.PathLike) -> None:
    """Write ``proto`` with ``card`` as its card to ``path`` (the caller makes the path a temporary)."""
    import onnx

    write_card_to_proto(proto, card)
    onnx.save(proto, os.fspath(path))


def convert(model, settings: ExportSettings) -> Artifact:
    """:func:`to_onnx` into an :class:`Artifact` whose ``save`` writes the ModelProto with a given card."""
    settings.refuse("onnx", exporters=("dynamo",), audio_input=True)
    proto, card = to_onnx(model, settings)
    return Artifact(card, lambda path, card_to_write: save_onnx(proto, card_to_write, path))


def export_onnx(model, out_path: str | os.PathLike, *, chunk_frames: int | None = None, static: bool = False,
                exporter: str = "torchscript", provenance: dict | None = None, name: str | None = None) -> ModelCard:
    """Export ``model`` to ``out_path`` without a proof (the card says so); returns the card.

    For tests and tools that prove the file themselves; ``stateport.export.export_model`` is the
    export job (proof, certificate, atomic move into place).
    """
    from ...atomic import atomic_output
    from ...verify import unproven_certificate

    settings = ExportSettings(chunk_frames=chunk_frames, static=static, exporter=exporter,
                              provenance=dict(provenance or {}), name=name)
    proto, card = to_onnx(model, settings)
    card.certificate = unproven_certificate("written by export_onnx, which runs no parity proof")
    with atomic_output(out_path) as target:
        save_onnx(proto, card, target.tmp)
        target.commit()
    return card


def read_card(path) -> ModelCard:
    from ...runtime.model_file import read_card as read_onnx_card

    return read_onnx_card(path)


def write_card(path, card: ModelCard) -> None:
    """Replace the card stored in the ONNX file at ``path`` (a temporary the caller commits)."""
    from ...runtime.model_file import load_onnx_model

    save_onnx(load_onnx_model(path), card, path)


def make_runner(path, card: ModelCard, *, optimization: str | None = None):
    from ...verify.runners import OnnxRunner

    return OnnxRunner(os.fspath(path), card, optimization=optimization or "all")
