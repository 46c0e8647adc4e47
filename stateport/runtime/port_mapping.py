"""Drive a third-party ONNX model (no stateport card inside) through our own session machinery.

A model exported elsewhere names its ports its own way (Silero VAD: ``input``, ``state`` ->
``stateN``, ``sr``). We describe it with a card built in code, whose ports follow our naming
rule, plus a :class:`PortMapping` from card port names to graph port names. Graph inputs that
never change during a stream (Silero's ``sr``) are bound once as constants instead of being
declared as ports: they have no batch axis and no per-step value.

:func:`open_mapped_session` returns an ordinary :class:`OnnxStepSession`, so every card check,
the state loop and ``reset(only_end_of_speech=...)`` work unchanged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from ..errors import CardError, InvalidInputError
from ..spec import ModelCard
from .session import OnnxStepSession
from .trust import graph_ports

__all__ = ["PortMapping", "MappedOrtSession", "open_mapped_session"]


@dataclass(frozen=True)
class PortMapping:
    """Card port name -> graph port name, and graph inputs bound to constant values.

    ``names`` must cover every card port (inputs, outputs, state inputs and state outputs);
    ``constants`` maps graph input names to the arrays fed on every call.
    """

    names: Mapping[str, str]
    constants: Mapping[str, np.ndarray] = field(default_factory=dict)

    def graph_name(self, card_name: str) -> str:
        return self.names[card_name]


class MappedOrtSession:
    """An onnxruntime InferenceSession seen through a PortMapping: card names outside, graph names inside."""

    def __init__(self, session, card: ModelCard, mapping: PortMapping):
        self._session = session
        self._mapping = mapping
        graph_inputs = {i.name for i in session.get_inputs()}
        graph_outputs = {o.name for o in session.get_outputs()}
        card_inputs = [p.name for p in card.inputs] + [s.name for s in card.states]
        card_outputs = card.output_names
        unmapped = [n for n in card_inputs + card_outputs if n not in mapping.names]
        if unmapped:
            raise CardError(f"port mapping lacks the card port(s) {', '.join(unmapped)}")
        for where, names, graph in (("input", card_inputs, graph_inputs), ("output", card_outputs, graph_outputs)):
            missing = [f"{n}->{mapping.names[n]}" for n in names if mapping.names[n] not in graph]
            if missing:
                raise CardError(f"port mapping names graph {where}(s) the model lacks: {', '.join(missing)}; "
                                f"the graph has {sorted(graph)}")
        bad_constants = sorted(set(mapping.constants) - graph_inputs)
        if bad_constants:
            raise CardError(f"port mapping binds constants to unknown graph inputs {bad_constants}")
        fed = {mapping.names[n] for n in card_inputs} | set(mapping.constants)
        unfed = sorted(graph_inputs - fed)
        if unfed:
            raise CardError(f"graph input(s) {unfed} are neither mapped to a card port nor bound to a constant")
        self._constants = {k: np.asarray(v) for k, v in mapping.constants.items()}

    def declared_ports(self) -> dict:
        """The graph's declared ports in card names (see :func:`~stateport.runtime.trust.graph_ports`);
        inputs bound to constants are left out: the mapping feeds them."""
        graph = graph_ports(self._session)
        to_card = {g: c for c, g in self._mapping.names.items()}
        inputs = {to_card.get(n, n): v for n, v in graph["inputs"].items() if n not in self._constants}
        return {"inputs": inputs, "outputs": {to_card.get(n, n): v for n, v in graph["outputs"].items()},
                "required": {to_card.get(n, n) for n in graph["required"] if n not in self._constants}}

    def get_modelmeta(self):
        return self._session.get_modelmeta()

    def get_inputs(self):
        return self._session.get_inputs()

    def get_outputs(self):
        return self._session.get_outputs()

    def run(self, output_names, feeds, run_options=None):
        names = self._mapping.names
        graph_feeds = dict(self._constants)
        for name, value in feeds.items():
            graph_feeds[names[name]] = value
        return self._session.run([names[n] for n in output_names], graph_feeds, run_options)


def open_mapped_session(model: str | os.PathLike | bytes, card: ModelCard, mapping: PortMapping, *,
                        threads: int = 1, optimization: str = "all") -> OnnxStepSession:
    """An OnnxStepSession over a model without a card: ``card`` describes it, ``mapping`` renames."""
    if not isinstance(mapping, PortMapping):
        raise InvalidInputError(f"mapping must be a PortMapping; got {type(mapping).__name__}")
    # A card written in code for a third-party graph carries no parity certificate: the caller
    # vouches for it by writing it; its ports are still checked against the graph.
    return OnnxStepSession(model, threads=threads, optimization=optimization, card=card, allow_uncertified=True,
                           wrap=lambda ort_session: MappedOrtSession(ort_session, card, mapping))
