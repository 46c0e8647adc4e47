"""Core ML: the flat step converted by coremltools to an ML Program (``.mlpackage``).

Two ways to carry the state:

- ``state="io"`` (default): every state is an input ``X_in`` and an output ``X_out``, exactly
  the card's ports (iOS 16+). Batch and time are flexible (``ct.RangeDim``) unless static.
- ``state="coreml"``: every state is a Core ML state (``ct.StateType``, iOS 18+) named after the
  state (``encoder_h`` for ``encoder_h_in``/``encoder_h_out``), updated in place by
  ``MLModel.predict(..., state=model.make_state())``; the graph's only I/O are the plain ports.
  Core ML states must be fp16 (coremltools 9.0 refuses fp32: "State only support fp16 dtype"),
  so the card's states say ``float16`` and the batch is 1. The card records this mode in
  ``provenance.backend = "coreml-state"``.

Core ML has no bool tensors (an ML Program's inputs, outputs and states are float or int
arrays): a bool state crosses the boundary as float32 (``state="io"``) or float16 (``"coreml"``)
0/1, cast to bool inside the graph and back, and the artifact's card says so.

The card is the user-defined metadata entry ``"stateport"`` of the model.

What is checked on Linux: Core ML cannot predict outside macOS, so the parity proof cannot run
here. :func:`check_file` reads the saved package back and compares the spec with the card:
port names and order, ranks, fixed dims, flexible dims where the card is symbolic, dtypes,
states, and the card in the metadata. Numerical parity needs a Mac: run
``stateport verify`` there (``CoreMLRunner`` is the missing piece).
"""

from __future__ import annotations

import os

import numpy as np

from ...errors import InvalidInputError, MissingCardError, ModelFileError, UnsupportedError
from ...spec import CARD_KEY, ModelCard
from ...verify.report import CheckResult, OutputDiff, ParityReport
from .common import Artifact, ExportSettings, conversion_error, example_args, flat_step, prepare, quiet, trace_frames

STATE_MODES = ("io", "coreml")
MAX_BATCH = 64      # flexible-shape upper bounds: Core ML wants them for memory planning
MAX_FRAMES = 8192
_NP_DTYPES = {"float32": np.float32, "float16": np.float16, "int32": np.int32, "int64": np.int32}


def _versions() -> str:
    from importlib.metadata import version

    return f"coremltools {version('coremltools')}"


class _StatefulStep:
    """Builds the torch module whose buffers are the states (Core ML ``StateType`` mode).

    coremltools maps a registered buffer that ``forward`` updates in place to a Core ML state;
    the update must be a slice assignment (``buf[:] = new``): ``copy_`` is refused ("No matching
    select or slice", coremltools 9.0).
    """

    @staticmethod
    def build(model, card: ModelCard):
        import torch
        from torch import nn

        class StatefulStep(nn.Module):
            def __init__(self):
                super().__init__()
                self.model = model
                self.state_names = [s.state_name for s in card.states]
                self.num_outputs = len(card.outputs)
                self.state_dtypes = []  # the model's own (a bool state is kept fp16 0/1, like every state)
                for s, t in zip(card.states, model.init_state(1)):
                    self.register_buffer(s.state_name, t.to(torch.float16))
                    self.state_dtypes.append(t.dtype)

            def forward(self, *inputs):
                state = [getattr(self, n).to(d) for n, d in zip(self.state_names, self.state_dtypes)]
                outs = self.model.step(*inputs, *state)
                for n, new in zip(self.state_names, outs[self.num_outputs:]):
                    getattr(self, n)[:] = new.to(torch.float16)
                return tuple(outs[: self.num_outputs])

        return StatefulStep().eval()


class _BoolStatesAsFloat:
    """The flat step with its bool states crossing the boundary as float32 0/1 (Core ML has no bool arrays)."""

    @staticmethod
    def build(flat, n_inputs: int, n_outputs: int, bool_states: list):
        import torch
        from torch import nn

        class Step(nn.Module):
            def __init__(self):
                super().__init__()
                self.flat = flat

            def forward(self, *args):
                args = [a != 0 if i - n_inputs in bool_states else a for i, a in enumerate(args)]
                outs = self.flat(*args)
                return tuple(o.to(torch.float32) if i - n_outputs in bool_states else o for i, o in enumerate(outs))

        return Step().eval()


def _flexible(shape: list, card_dims: list):
    """A ct shape: symbolic card dims become RangeDims (batch up to MAX_BATCH, time up to MAX_FRAMES)."""
    import coremltools as ct

    dims = []
    for d in card_dims:
        if isinstance(d, str):
            upper = MAX_BATCH if d == "batch" else MAX_FRAMES
            dims.append(ct.RangeDim(lower_bound=1, upper_bound=upper, symbol=None))
        else:
            dims.append(int(d))
    return tuple(dims)


def convert(model, settings: ExportSettings) -> Artifact:
    """Trace the flat step and convert it; ``save`` writes the ``.mlpackage`` with the card.

    ``settings.options["state"]``: ``"io"`` (default) or ``"coreml"`` (see the module docstring).
    """
    settings.refuse("coreml", options=("state",))  # before importing coremltools (seconds)
    import coremltools as ct
    import torch

    state_mode = settings.options.get("state", "io")
    if state_mode not in STATE_MODES:
        raise InvalidInputError(f"coreml: state={state_mode!r}; expected one of {', '.join(STATE_MODES)}")
    notes = []
    stateful = state_mode == "coreml"
    if stateful and not settings.static:
        notes.append("coreml: Core ML states have a fixed shape: exported with batch 1 (the time axis stays "
                     "flexible)")
    model, card = prepare(model, settings, backend="coreml-state" if stateful else "coreml", exporter=_versions())
    bool_states = [k for k, s in enumerate(card.states) if s.dtype == "bool"]
    for k in bool_states:
        s = card.states[k]
        s.dtype, s.init = "float32", float(bool(s.init))
        s.description = f"0 or 1 (Core ML has no bool arrays; the graph casts). {s.description}".strip()
    if stateful:
        for s in card.states:
            s.dtype = "float16"
            s.shape = [1 if i == s.batch_axis else d for i, d in enumerate(s.shape)]
            s.description = (f"Core ML state {s.state_name!r} (ct.StateType, fp16, iOS 18+): not a graph "
                             f"input/output. {s.description}").strip()
        for p in card.inputs + card.outputs:
            p.shape = [1 if i == 0 else d for i, d in enumerate(p.shape)]
    frames = trace_frames(card)
    args = example_args(model, card, batch=1, frames=frames)
    n_in = len(card.inputs)
    try:
        with quiet(), torch.no_grad():
            if stateful:
                traced = torch.jit.trace(_StatefulStep.build(model, card), args[:n_in])
            else:
                step = flat_step(model, card)
                if bool_states:
                    step = _BoolStatesAsFloat.build(step, n_in, len(card.outputs), bool_states)
                    args = (*args[:n_in], *(a.float() if k in bool_states else a for k, a in enumerate(args[n_in:])))
                traced = torch.jit.trace(step, args)
            inputs = [ct.TensorType(name=p.name, shape=_flexible(list(a.shape), p.shape),
                                    dtype=_NP_DTYPES.get(p.dtype, np.float32))
                      for p, a in zip(card.inputs, args)]
            kwargs = {}
            if stateful:
                kwargs["states"] = [ct.StateType(wrapped_type=ct.TensorType(shape=s.concrete_shape(1),
                                                                            dtype=np.float16), name=s.state_name)
                                    for s in card.states]
                outputs = [ct.TensorType(name=p.name) for p in card.outputs]
                target = ct.target.iOS18
            else:
                inputs += [ct.TensorType(name=s.name, shape=_flexible(list(a.shape), s.shape),
                                         dtype=_NP_DTYPES.get(s.dtype, np.float32))
                           for s, a in zip(card.states, args[n_in:])]
                outputs = [ct.TensorType(name=n) for n in card.output_names]
                target = ct.target.iOS16
            mlmodel = ct.convert(traced, inputs=inputs, outputs=outputs, minimum_deployment_target=target,
                                 convert_to="mlprogram", compute_precision=ct.precision.FLOAT32, **kwargs)
    except Exception as e:  # coremltools raises ValueError/RuntimeError/NotImplementedError per op
        raise conversion_error("coreml", "coremltools", model, e) from e

    def save(path: str, card_to_write: ModelCard) -> None:
        mlmodel.user_defined_metadata[CARD_KEY] = card_to_write.to_json()
        with quiet():
            mlmodel.save(path)

    notes.append("coreml: converted and read back; Core ML cannot predict on Linux, so numerical parity "
                 "is not proven here")
    return Artifact(card, save, notes)


def write_card(path, card: ModelCard) -> None:
    """Replace the card in the ``.mlpackage`` at ``path`` (a temporary the caller commits)."""
    import coremltools as ct

    path = os.fspath(path)
    try:
        mlmodel = ct.models.MLModel(path, skip_model_load=True)
    except Exception as e:  # coremltools raises several types for unreadable packages
        raise ModelFileError(f"{path!r} is not a readable Core ML model ({type(e).__name__}: {e})") from None
    mlmodel.user_defined_metadata[CARD_KEY] = card.to_json()
    scratch = path[: -len(".mlpackage")] + ".card-update.mlpackage"
    with quiet():
        mlmodel.save(scratch)
    import shutil

    shutil.rmtree(path)
    os.replace(scratch, path)


def _load_spec(path):
    import coremltools as ct

    path = os.fspath(path)
    try:
        return ct.models.MLModel(path, skip_model_load=True).get_spec()
    except Exception as e:  # coremltools raises several types for unreadable packages
        raise ModelFileError(f"{path!r} is not a readable Core ML model ({type(e).__name__}: {e})") from None


def read_card(path) -> ModelCard:
    spec = _load_spec(path)
    meta = dict(spec.description.metadata.userDefined)
    if CARD_KEY not in meta:
        raise MissingCardError(f"{os.fspath(path)!r} has no stateport model card (user-defined metadata "
                               f"{CARD_KEY!r})")
    return ModelCard.from_json(meta[CARD_KEY])


def describe(path) -> dict:
    """The spec's I/O as plain data: ``{"inputs": [...], "outputs": [...], "states": [...], "ops": [...]}``.

    Each port: name, dtype (e.g. ``FLOAT32``), and shape as declared, a flexible dim as
    ``[low, high]`` (high -1 = unbounded); ``ops`` lists the ML Program's operation types.
    """
    from coremltools.proto import FeatureTypes_pb2 as ft

    spec = _load_spec(path)
    dtype_names = {v: k for k, v in ft.ArrayFeatureType.ArrayDataType.items()}

    def array_info(name, arr):
        if arr.HasField("shapeRange"):
            shape = [[int(r.lowerBound), int(r.upperBound)] if r.lowerBound != r.upperBound else int(r.lowerBound)
                     for r in arr.shapeRange.sizeRanges]
        else:
            shape = [int(d) for d in arr.shape] or None
        return {"name": name, "dtype": dtype_names.get(arr.dataType, str(arr.dataType)), "shape": shape}

    d = spec.description
    ops = sorted({op.type for f in spec.mlProgram.functions.values()
                  for blk in f.block_specializations.values() for op in blk.operations})
    return {
        "specification_version": spec.specificationVersion,
        "inputs": [array_info(i.name, i.type.multiArrayType) for i in d.input],
        "outputs": [array_info(o.name, o.type.multiArrayType) for o in d.output],
        "states": [array_info(s.name, s.type.stateType.arrayType) for s in d.state],
        "metadata_keys": sorted(d.metadata.userDefined.keys()),
        "ops": ops,
    }


_CARD_DTYPES = {"float32": "FLOAT32", "float16": "FLOAT16", "int32": "INT32", "int64": "INT32"}


def _compare_port(name: str, card_shape: list, card_dtype: str, got: dict | None) -> OutputDiff:
    """One port of the spec against the card: present, rank, fixed dims, flexible where symbolic, dtype."""
    if got is None:
        return OutputDiff(name, problem="the Core ML model has no port of this name")
    problems = []
    shape = got["shape"]
    if shape is not None:  # ML Program outputs declare no shape: nothing to compare
        if len(shape) != len(card_shape):
            problems.append(f"rank {len(shape)}, card {len(card_shape)}")
        else:
            for axis, (c, g) in enumerate(zip(card_shape, shape)):
                if isinstance(c, str) and not isinstance(g, list):
                    problems.append(f"axis {axis} ({c!r}) fixed at {g}")
                elif isinstance(c, int) and g != c:
                    problems.append(f"axis {axis} is {g}, card says {c}")
    if got["dtype"] != _CARD_DTYPES.get(card_dtype, card_dtype.upper()):
        problems.append(f"dtype {got['dtype']}, card {card_dtype}")
    return OutputDiff(name, max_abs_diff=None if problems else 0.0, problem="; ".join(problems) or None)


def check_file(path, card: ModelCard, *, tolerance: float = 0.0) -> ParityReport:
    """What can be verified of a Core ML package without running it: its spec against ``card``."""
    info = describe(path)
    report = ParityReport(backend="coreml (spec only)", tolerance=tolerance, seconds=0.0, frames=0)
    stateful = card.provenance.backend == "coreml-state"
    by_name = {p["name"]: p for p in info["inputs"] + info["outputs"] + info["states"]}

    ports = CheckResult("coreml spec vs card", "port names, order, shapes, dtypes", tolerance, compact=True)
    expected_in = [p.name for p in card.inputs] + ([] if stateful else [s.name for s in card.states])
    expected_out = [p.name for p in card.outputs] + ([] if stateful else [s.output for s in card.states])
    order_ok = [i["name"] for i in info["inputs"]] == expected_in and \
        [o["name"] for o in info["outputs"]] == expected_out
    ports.diffs.append(OutputDiff("port order", max_abs_diff=0.0 if order_ok else None,
                                  problem=None if order_ok else
                                  f"inputs {[i['name'] for i in info['inputs']]}, outputs "
                                  f"{[o['name'] for o in info['outputs']]}; card {expected_in} -> {expected_out}"))
    for p in card.inputs + card.outputs:
        ports.diffs.append(_compare_port(p.name, p.shape, p.dtype, by_name.get(p.name)))
    for s in card.states:
        if stateful:
            ports.diffs.append(_compare_port(s.state_name, s.shape, s.dtype, by_name.get(s.state_name)))
        else:
            ports.diffs.append(_compare_port(s.name, s.shape, s.dtype, by_name.get(s.name)))
            ports.diffs.append(_compare_port(s.output, s.shape, s.dtype, by_name.get(s.output)))
    report.checks.append(ports)

    meta = CheckResult("coreml metadata card", "user-defined metadata round trip", tolerance, compact=True)
    try:
        stored = read_card(path)
        same = stored.to_dict()["ports"] == card.to_dict()["ports"] and stored.streaming == card.streaming
        meta.diffs.append(OutputDiff(CARD_KEY, max_abs_diff=0.0 if same else None,
                                     problem=None if same else "the stored card's ports or streaming differ"))
    except (MissingCardError, ModelFileError) as e:
        meta.diffs.append(OutputDiff(CARD_KEY, problem=e.message))
    report.checks.append(meta)
    report.notes.append("Core ML cannot predict on Linux: numerical parity (streaming vs offline, Core ML vs "
                        "torch) was not run; only the converted spec was checked against the card")
    report.notes.append(f"ML Program ops: {', '.join(info['ops'])}")
    return report


def make_runner(path, card: ModelCard, *, optimization: str | None = None):
    raise UnsupportedError("coreml: Core ML models can only be run on macOS (coremltools has no Linux runtime); "
                           "the spec is checked instead (stateport.export.backends.coreml.check_file)")
