"""Trust on load: a model is run only when its card matches its graph and its certificate passed.

A stateport file carries its streaming contract (the card) beside the graph; the client drives
the graph from the card alone. A card that contradicts its graph (a state shape, a dtype, a port
the graph does not have) would make ONNX Runtime fail deep inside a step, or worse, run with the
wrong layout. So every open compares the two and names each disagreement
(:class:`~stateport.errors.CardGraphMismatchError`), and a model whose parity certificate is
absent or FAILED is refused (:class:`~stateport.errors.UncertifiedModelError`) unless the caller
says ``allow_uncertified=True``, which is then reported (:class:`Trust`).

numpy-free and torch-free: the graph side is read from an ONNX Runtime session's declarations.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import CardGraphMismatchError, UncertifiedModelError
from ..spec import ModelCard

__all__ = ["Trust", "graph_ports", "card_graph_disagreements", "certificate_status", "check_trust"]

# ONNX Runtime's type strings -> the card's dtype names.
_ORT_DTYPES = {"tensor(float)": "float32", "tensor(double)": "float64", "tensor(float16)": "float16",
               "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(int8)": "int8",
               "tensor(uint8)": "uint8", "tensor(bool)": "bool"}

_SHOWN = 6  # disagreements spelled out in the one-line error (all of them are on the exception)


@dataclass(frozen=True)
class Trust:
    """What was established when a model was opened.

    ``certificate``: "passed", "failed" or "absent"; ``allowed_uncertified``: the caller opened
    a model without a passed certificate on purpose (``allow_uncertified=True``).
    """

    certificate: str
    allowed_uncertified: bool = False

    @property
    def certified(self) -> bool:
        return self.certificate == "passed"

    def describe(self) -> str:
        """One line for reports: "certified", or why the model runs without a certificate."""
        if self.certified:
            return "certified (parity certificate PASSED)"
        what = "no parity certificate" if self.certificate == "absent" else "a FAILED parity certificate"
        return f"UNCERTIFIED: {what}; running because allow_uncertified was given"

    def to_dict(self) -> dict:
        return {"certificate": self.certificate, "allowed_uncertified": self.allowed_uncertified}


def graph_ports(session) -> dict:
    """``{"inputs": {name: (dtype, shape)}, "required": set, "outputs": {...}}`` as the graph declares them.

    ``session``: an ONNX Runtime InferenceSession, or anything with ``declared_ports()`` returning
    that mapping (a port-mapped third-party graph, in card names). Shapes hold ints, symbolic names
    or None; inputs include state inputs that are also initializers (optional to feed).
    """
    if hasattr(session, "declared_ports"):
        return session.declared_ports()

    def table(args):
        return {a.name: (_ORT_DTYPES.get(a.type, a.type), None if a.shape is None else list(a.shape)) for a in args}

    required = table(session.get_inputs())
    inputs = {**table(session.get_overridable_initializers()), **required}
    return {"inputs": inputs, "required": set(required), "outputs": table(session.get_outputs())}


def _shape_problem(card_shape: list, graph_shape) -> str | None:
    if graph_shape is None:
        return None
    if len(graph_shape) != len(card_shape):
        return f"rank {len(card_shape)} {card_shape} in the card, rank {len(graph_shape)} {graph_shape} in the graph"
    wrong = []
    for axis, (c, g) in enumerate(zip(card_shape, graph_shape)):
        if isinstance(g, int) and isinstance(c, int) and c != g:
            wrong.append(f"axis {axis} is {c} in the card, {g} in the graph")
        elif isinstance(g, int) and isinstance(c, str):
            wrong.append(f"axis {axis} is {c!r} (any size) in the card, fixed at {g} in the graph")
    return "; ".join(wrong) or None


def card_graph_disagreements(card: ModelCard, ports: dict) -> list[str]:
    """Every way the card contradicts the graph's declared ports (empty when they agree)."""
    found = []
    g_in, g_out, required = ports["inputs"], ports["outputs"], ports["required"]
    declared_in = [(p.name, p.dtype, p.shape, "input") for p in card.inputs]
    declared_in += [(s.name, s.dtype, s.shape, "state input") for s in card.states]
    declared_out = [(p.name, p.dtype, p.shape, "output") for p in card.outputs]
    declared_out += [(s.output, s.dtype, s.shape, "state output") for s in card.states]
    for declared, graph, other in ((declared_in, g_in, g_out), (declared_out, g_out, g_in)):
        for name, dtype, shape, role in declared:
            if name not in graph:
                where = " (the graph has it on the other side)" if name in other else ""
                found.append(f"{role} {name}: not in the graph{where}")
                continue
            g_dtype, g_shape = graph[name]
            if g_dtype != dtype:
                found.append(f"{role} {name}: dtype {dtype} in the card, {g_dtype} in the graph")
            problem = _shape_problem(shape, g_shape)
            if problem:
                found.append(f"{role} {name}: {problem}")
    undeclared = sorted(set(required) - {name for name, *_ in declared_in})
    if undeclared:
        found.append(f"the graph needs input(s) {', '.join(undeclared)} that the card does not declare")
    for s in card.states:  # a state pair must round-trip: what comes out is fed back in
        if s.name in g_in and s.output in g_out:
            (d_in, sh_in), (d_out, sh_out) = g_in[s.name], g_out[s.output]
            if d_in != d_out:
                found.append(f"state {s.state_name}: the graph takes {d_in} in {s.name} but returns {d_out} "
                             f"in {s.output}")
            elif sh_in is not None and sh_out is not None and len(sh_in) != len(sh_out):
                found.append(f"state {s.state_name}: the graph takes rank {len(sh_in)} in {s.name} but returns "
                             f"rank {len(sh_out)} in {s.output}")
    return found


def certificate_status(card: ModelCard) -> str:
    """"passed", "failed" or "absent", from the card's parity certificate.

    An export with ``--no-verify`` records ``{"passed": null, "skipped": true}``: no proof ran, so
    it is "absent", not "failed".
    """
    c = card.certificate
    if not c or c.get("skipped"):
        return "absent"
    return "passed" if c.get("passed") is True else "failed"


def check_trust(card: ModelCard, ports: dict, *, allow_uncertified: bool, where: str) -> Trust:
    """Refuse a card that contradicts its graph (always) or an uncertified model (unless allowed)."""
    problems = card_graph_disagreements(card, ports)
    if problems:
        shown = "; ".join(problems[:_SHOWN]) + (f"; and {len(problems) - _SHOWN} more" if len(problems) > _SHOWN
                                               else "")
        error = CardGraphMismatchError(f"the card of {where} contradicts its graph ({len(problems)} "
                                       f"disagreement{'s' * (len(problems) > 1)}): {shown}")
        error.disagreements = problems
        raise error
    status = certificate_status(card)
    if status != "passed" and not allow_uncertified:
        why = ("has no parity certificate (exported with --no-verify, or not by stateport)" if status == "absent"
               else "has a FAILED parity certificate (streaming did not match offline within tolerance)")
        raise UncertifiedModelError(f"{where} {why}; run `stateport verify` on it, or pass allow_uncertified=True "
                                    "(CLI: --allow-uncertified) to run it anyway")
    return Trust(status, allowed_uncertified=status != "passed")
