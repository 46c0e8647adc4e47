"""Runners over the edge runtimes, so :func:`prove_parity` compares any backend with torch.

Same duck type as :mod:`stateport.verify.runners`: ``name``, ``init_state(batch)``,
``run(x, state) -> (outputs, new_state)`` in numpy keyed by card port names, and optionally
``declared_shapes()`` (port -> shape as the program declares it, ``None`` for a dynamic dim),
which the proof's signature check compares with the card.

``state=None`` asks for the offline result. ONNX files carry each state's initial value as an
initializer, so feeding only the audio works there; the formats here have no optional inputs,
so the runner feeds the card's initial state itself (the same function, the same result).
"""

from __future__ import annotations

import os

import numpy as np

from ..spec import ModelCard
from .runners import input_dict
from .state_defaults import onnx_without_state_defaults


def card_init_state(card: ModelCard, batch: int) -> dict:
    """A fresh state for ``batch`` streams, from the card alone."""
    return {s.name: np.full(s.concrete_shape(batch), s.init, dtype=np.dtype(s.dtype)) for s in card.states}


def _batch_of(feeds: dict) -> int:
    return int(next(iter(feeds.values())).shape[0])


class _CardRunner:
    """Feeds in card port order; subclasses implement ``_call(feeds) -> {port: array}``."""

    name = "backend"

    def __init__(self, card: ModelCard):
        self.card = card

    def init_state(self, batch: int) -> dict:
        return card_init_state(self.card, batch)

    def run(self, x, state: dict | None):
        feeds = {k: np.ascontiguousarray(v) for k, v in input_dict(x, self.card).items()}
        batch = _batch_of(feeds)
        if state is None:
            state = self.init_state(batch)
        if batch > 1 and self._batch_is_one():
            return self._run_each_stream(feeds, state, batch)
        feeds.update({s.name: np.ascontiguousarray(state[s.name], dtype=np.dtype(s.dtype)) for s in self.card.states})
        values = self._call(feeds)
        outputs = {p.name: values[p.name] for p in self.card.outputs}
        return outputs, {s.name: values[s.output] for s in self.card.states}

    def _batch_is_one(self) -> bool:
        """The program takes one stream per call (its card fixes the batch at 1)."""
        return bool(self.card.inputs) and self.card.inputs[0].shape[0] == 1

    def _run_each_stream(self, feeds: dict, state: dict, batch: int):
        """A batch fed to a one-stream program: one call per stream, results stacked again (what a
        client of such a program does; states stack on their own batch axis)."""
        outs, states = [], []
        for b in range(batch):
            one = {k: v[b:b + 1] for k, v in feeds.items()}
            st = {s.name: np.take(state[s.name], [b], axis=s.batch_axis) for s in self.card.states}
            o, n = self.run(one, st)
            outs.append(o)
            states.append(n)
        outputs = {p.name: np.concatenate([o[p.name] for o in outs], axis=0) for p in self.card.outputs}
        new_state = {s.name: np.concatenate([n[s.name] for n in states], axis=s.batch_axis) for s in self.card.states}
        return outputs, new_state

    def _call(self, feeds: dict) -> dict:
        raise NotImplementedError


class LiteRTRunner(_CardRunner):
    """A ``.tflite`` flatbuffer in the LiteRT interpreter, through its signature named like the card.

    ``threads`` 1 by default: one stream's step is small, and the parity proof runs on a shared
    machine. The interpreter's default XNNPACK delegate is kept: it is what a device runs.
    """

    name = "litert"

    def __init__(self, model: str | os.PathLike | bytes, card: ModelCard, *, threads: int = 1,
                 signature: str | None = None):
        from ai_edge_litert.interpreter import Interpreter

        super().__init__(card)
        if isinstance(model, (bytes, bytearray)):
            self.interpreter = Interpreter(model_content=bytes(model), num_threads=threads)
        else:
            self.interpreter = Interpreter(model_path=os.fspath(model), num_threads=threads)
        signatures = self.interpreter.get_signature_list()
        self.signature = signature or next(iter(signatures))
        self.runner = self.interpreter.get_signature_runner(self.signature)
        self._in_dtypes = {k: d["dtype"] for k, d in self.runner.get_input_details().items()}

    def _call(self, feeds: dict) -> dict:
        # The converter may narrow 64-bit I/O to 32-bit (litert-torch's default): feed what it declares.
        return self.runner(**{k: np.asarray(v, dtype=self._in_dtypes.get(k, v.dtype)) for k, v in feeds.items()})

    def declared_shapes(self) -> dict:
        details = {**self.runner.get_input_details(), **self.runner.get_output_details()}
        out = {}
        for name, d in details.items():
            sig = d.get("shape_signature", d["shape"])
            out[name] = [None if int(v) < 0 else int(v) for v in sig]
        return out


class ExecuTorchRunner(_CardRunner):
    """A ``.pte`` program in the ExecuTorch runtime: positional I/O in the card's port order."""

    name = "executorch"

    def __init__(self, model: str | os.PathLike | bytes, card: ModelCard, *, method: str = "forward"):
        from executorch.runtime import Runtime

        super().__init__(card)
        runtime = Runtime.get()
        if isinstance(model, (bytes, bytearray)):
            # The runtime reads the bytes in place: keep them alive as long as the program.
            self._buffer = bytes(model)
            self.program = runtime.load_program(self._buffer)
        else:
            self.program = runtime.load_program(os.fspath(model))
        self.method = self.program.load_method(method)

    def _call(self, feeds: dict) -> dict:
        import torch

        args = [torch.from_numpy(feeds[n]) for n in self.card.input_names]
        outs = self.method.execute(args)
        # The runtime may hand back views of its planned memory: copy before the next call reuses it.
        return {n: np.array(o.detach().numpy(), copy=True) for n, o in zip(self.card.output_names, outs)}


class OpenVinoRunner(_CardRunner):
    """An OpenVINO IR (``.xml``) or a stateport ``.onnx`` file on the OpenVINO CPU plugin.

    Measured (OpenVINO 2026.4): its ONNX frontend turns an input that also has an initializer
    into a constant, so the state ports of a stateport ONNX file vanish. Reading an ``.onnx``, the
    runner therefore drops those initializers first (the state inputs become required inputs).
    The CPU plugin is pinned to f32 (it may otherwise pick bf16 on CPUs that have it).
    """

    name = "openvino"

    def __init__(self, model: str | os.PathLike, card: ModelCard, *, threads: int = 1):
        import openvino as ov

        super().__init__(card)
        core = ov.Core()
        path = os.fspath(model)
        if path.endswith(".onnx"):
            ov_model = core.read_model(onnx_without_state_defaults(path))
        else:
            ov_model = core.read_model(path)
        self.model = ov_model
        self.compiled = core.compile_model(ov_model, "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                             "INFERENCE_NUM_THREADS": threads,
                                                             "NUM_STREAMS": 1})
        self.request = self.compiled.create_infer_request()
        self._out_names = [_port_name(o, card.output_names) for o in self.compiled.outputs]

    def _call(self, feeds: dict) -> dict:
        result = self.request.infer(feeds)
        return {name: np.array(result[o], copy=True) for name, o in zip(self._out_names, self.compiled.outputs)}

    def declared_shapes(self) -> dict:
        out = {}
        for port in list(self.model.inputs) + list(self.model.outputs):
            name = _port_name(port, self.card.input_names + self.card.output_names)
            shape = port.get_partial_shape()
            out[name] = None if shape.rank.is_dynamic else [
                d.get_length() if d.is_static else None for d in shape]
        return out


def _port_name(port, wanted: list) -> str:
    """The card name among an OpenVINO port's tensor names (a tensor may carry several)."""
    names = port.get_names()
    return next((n for n in wanted if n in names), port.get_any_name())
