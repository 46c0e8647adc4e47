"""Build the model card of a streaming module by probing it once."""

from __future__ import annotations

import datetime as _dt

import torch

from .. import __version__
from ..spec import (BATCH_DIM, TIME_DIM, ModelCard, OutputSpec, Provenance, StatePort, StreamingSpec,
                    TensorPort, state_port_names)

_DTYPES = {torch.float32: "float32", torch.float64: "float64", torch.float16: "float16", torch.int64: "int64",
           torch.int32: "int32", torch.int8: "int8", torch.uint8: "uint8", torch.bool: "bool"}

PROBE_BATCH = 2  # a batch of 2 tells the batch axis apart from singleton dims


def example_inputs(model, frames: int, batch: int = 1, *, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Deterministic example inputs for one step, one per ``model.input_specs()``.

    ``[B, T, F]`` (``frames`` on each time axis), ``[B, F]`` for frame-wise inputs; integer
    inputs (token ids) are drawn from their ``value_range``.
    """
    g = torch.Generator().manual_seed(seed)
    return tuple(spec.example(batch, frames, g, offset_chunks=3 + seed) for spec in model.input_specs())


def example_sequences(model, frames: int, batch: int = 1, *, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Deterministic whole sequences, what ``forward`` takes: frame-wise inputs gain a frame axis 1."""
    g = torch.Generator().manual_seed(seed)
    return tuple(spec.example(batch, frames, g, sequence=True) for spec in model.input_specs())


def input_ports(model, *, chunk_frames: int, static: bool) -> list[TensorPort]:
    """The card's plain input ports, from ``model.input_specs()``.

    Dynamic export: the batch and time axes stay symbolic; static: batch 1 and ``chunk_frames``.
    """
    ports = []
    for spec in model.input_specs():
        shape = []
        for axis, d in enumerate(spec.shape):
            if d == BATCH_DIM:
                shape.append(1 if static else BATCH_DIM)
            elif axis == spec.time_axis:
                shape.append(chunk_frames if static else d)
            else:
                shape.append(int(d))
        vr = list(spec.value_range) if spec.value_range is not None else None
        ports.append(TensorPort(spec.name, "input", shape, _DTYPES[spec.dtype], spec.time_axis, spec.description,
                                vr, getattr(spec, "side_role", None)))
    return ports


def frontend_window_samples(frontend: dict | None) -> int:
    if not frontend or "frame_length_ms" not in frontend:
        return 0
    return int(round(frontend["frame_length_ms"] * frontend.get("sample_rate_hz", 16000) / 1000.0))


def build_card(model, *, name: str, chunk_frames: int, static: bool, provenance: dict) -> ModelCard:
    """Describe ``model``'s ports and streaming contract; output shapes come from a probe run."""
    s = model.streaming
    decls = model.state_decls()
    batch_dim = 1 if static else BATCH_DIM
    frame_wise = model.is_frame_wise()
    inputs = input_ports(model, chunk_frames=chunk_frames, static=static)
    # Outputs name their time axis after the inputs' ("T" audio frames, "U" tokens, ...).
    time_dim = next((spec.time_dim for spec in model.input_specs() if spec.time_axis is not None), TIME_DIM)

    probe_frames = max(chunk_frames, 1)
    xs = example_inputs(model, probe_frames, PROBE_BATCH)
    with torch.no_grad():
        out = model.step(*xs, *model.init_state(PROBE_BATCH))
    out_frames = model.output_steps(probe_frames)
    out_time_dim = time_dim if not s.lookahead_frames else f"{time_dim}_minus_{s.lookahead_frames}"
    outputs = []
    for oname, tensor in zip(model.output_names, out[: len(model.output_names)]):
        shape, time_axis = [], None
        for axis, size in enumerate(tensor.shape):
            if axis == 0:
                shape.append(batch_dim)
            elif not frame_wise and time_axis is None and axis == 1 and size == out_frames:
                time_axis = axis
                if static:
                    shape.append(int(size))
                else:
                    shape.append(out_time_dim if s.subsampling == 1 else f"{out_time_dim}_div_{s.subsampling}")
            else:
                shape.append(int(size))
        outputs.append(TensorPort(oname, "output", shape, _DTYPES.get(tensor.dtype, "float32"), time_axis))

    states = []
    for d in decls:
        pin, pout = state_port_names(d.name)
        shape = [batch_dim if dim == BATCH_DIM else int(dim) for dim in d.shape]
        states.append(StatePort(pin, pout, shape, d.batch_axis, _DTYPES[d.dtype], float(d.init),
                                d.reset_on_end_of_speech, d.description, batch_uniform=d.batch_uniform,
                                valid_length_state=d.valid_length_state, grow_axis=d.grow_axis))

    streaming = StreamingSpec(
        sample_rate_hz=s.sample_rate_hz, frame_hop_samples=s.frame_hop_samples,
        frames_per_step=0 if frame_wise else chunk_frames,
        frames_advanced_per_step=0 if frame_wise else chunk_frames - s.lookahead_frames,
        frame_multiple=s.frame_multiple, min_frames=s.min_frames, lookahead_frames=s.lookahead_frames,
        subsampling=s.subsampling, static=static, frontend_window_samples=frontend_window_samples(s.frontend),
        chunk_exact=s.chunk_exact, algorithmic_latency_ms=s.algorithmic_latency_ms)
    output = OutputSpec(kind=s.output_kind, port=s.output_port or model.output_names[0],
                        vocabulary=list(s.vocabulary), blank_id=s.blank_id)
    prov = Provenance(
        stateport_version=__version__, torch_version=torch.__version__,
        parameters=sum(p.numel() for p in model.parameters()),
        created_utc=_dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        **provenance)
    return ModelCard(name=name, inputs=inputs, outputs=outputs, states=states, streaming=streaming,
                     output=output, provenance=prov, frontend=s.frontend, constants=getattr(model, "constants", None))
