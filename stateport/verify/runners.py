"""Uniform step runners over torch and the backends, so one parity routine compares any pair.

A runner exposes ``init_state(batch)``, ``run(x, state) -> (outputs, new_state)`` (``state``
None means feed only the input: the offline mode), all in numpy, keyed by card port names.
``x`` is one array for a one-input model, else a dict of arrays keyed by input port name.
"""

from __future__ import annotations

import contextlib

import numpy as np

from ..spec import ModelCard


def input_dict(x, card: ModelCard) -> dict:
    """The inputs of one call keyed by port name: a dict as given, or one array for a one-input model."""
    if isinstance(x, dict):
        return x
    if len(card.inputs) != 1:
        from ..errors import InvalidInputError

        raise InvalidInputError(f"this model has {len(card.inputs)} inputs ({', '.join(p.name for p in card.inputs)}): "
                                "pass a dict of arrays keyed by input name")
    return {card.inputs[0].name: x}


@contextlib.contextmanager
def one_torch_thread():
    """Step the torch reference on one intra-op thread, then restore the setting.

    The proofs step tiny chunks (down to one frame): measured on a busy 2-core machine, two
    intra-op threads made each step ~30x slower (48 ms vs 1.6 ms per quartznet-tiny step),
    because the threads wait at every barrier.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class TorchRunner:
    """The torch reference: ``step`` for streaming, ``forward`` for the offline result."""

    name = "torch"

    def __init__(self, model, card: ModelCard):
        self.model = model.eval()
        self.card = card

    def init_state(self, batch: int) -> dict:
        return {s.name: t.numpy() for s, t in zip(self.card.states, self.model.init_state(batch))}

    def run(self, x: np.ndarray, state: dict | None):
        import torch

        feeds = input_dict(x, self.card)
        with torch.no_grad():
            xs = [torch.from_numpy(np.ascontiguousarray(feeds[p.name])) for p in self.card.inputs]
            if state is None:
                outs = self.model(*xs)
                if isinstance(outs, torch.Tensor):
                    outs = (outs,)
                return {p.name: o.numpy() for p, o in zip(self.card.outputs, outs)}, {}
            st = [torch.from_numpy(np.ascontiguousarray(state[s.name])) for s in self.card.states]
            outs = self.model.step(*xs, *st)
        n = len(self.card.outputs)
        outputs = {p.name: o.numpy() for p, o in zip(self.card.outputs, outs[:n])}
        return outputs, {s.name: o.numpy() for s, o in zip(self.card.states, outs[n:])}


class OnnxRunner:
    """An exported ONNX file in ONNX Runtime, at a chosen graph-optimisation level.

    The one place where the proofs open a file in the client runtime: the files proved here are
    not certified yet (that is what the proof is for).
    """

    name = "onnxruntime"

    def __init__(self, path_or_bytes, card: ModelCard | None = None, *, optimization: str = "all", threads: int = 1):
        from ..runtime.session import OnnxStepSession

        # The prover opens files before a certificate exists (it writes one), and compares the card
        # with the graph itself ("graph signature"), reporting a disagreement instead of refusing.
        self.session = OnnxStepSession(path_or_bytes, threads=threads, optimization=optimization, card=card,
                                       allow_uncertified=True, check_graph=False)
        self.card = self.session.card
        self.optimization = optimization

    def init_state(self, batch: int) -> dict:
        return self.session.init_state(batch)

    def run(self, x: np.ndarray, state: dict | None):
        return self.session.run(x, state)

    def declared_shapes(self) -> dict:
        """Port name -> shape as the graph declares it (None for unknown dims)."""
        s = self.session.session
        args = s.get_inputs() + s.get_overridable_initializers() + s.get_outputs()
        return {a.name: list(a.shape) if a.shape is not None else None for a in args}


class NamedRunner:
    """A runner under another name, so check names say what was compared with what
    (``onnxruntime[static-int8] stream [ragged] vs static-int8 offline``)."""

    def __init__(self, runner, name: str):
        self._runner = runner
        self.name = name
        self.optimization = getattr(runner, "optimization", None)
        if hasattr(runner, "declared_shapes"):
            self.declared_shapes = runner.declared_shapes

    def init_state(self, batch: int) -> dict:
        return self._runner.init_state(batch)

    def run(self, x, state):
        return self._runner.run(x, state)
