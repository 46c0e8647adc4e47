"""Hidden state of a TorchScript module (``torch.jit.load``) lifted into explicit arguments.

A scripted streaming model (Silero VAD's packaged ``silero_vad.jit``) keeps its state in module
attributes that ``forward`` reads and reassigns (``self._state = ...``). Tracing cannot see
through that: a ScriptModule called under the ONNX tracer is refused ("not part of the active
trace"), and freezing it would bake the state into constants. So we rewrite the scripted graph
itself, the way a compiler turns memory into SSA values:

1. freeze a copy of the module (weights and unchanged attributes become constants; the
   attributes ``forward`` assigns stay attribute reads and writes);
2. walk the graph in order with the current value of each attribute: a read becomes that
   value, a write changes it; an ``if`` whose branches write an attribute yields the value from
   each branch;
3. the lifted attributes enter as new graph inputs and leave as a tuple next to the original
   output; pinned attributes (plain numbers such as Silero's ``_last_sr``) enter as constants.

The result is a pure ScriptFunction ``f(*forward_args, *lifted) -> (output, (lifted...))``,
which the ONNX tracer inlines like any scripted function. The user's file stays untouched.
"""

from __future__ import annotations

import torch

from ..errors import UnsupportedError

_NUMBER_TYPES = ("int", "float", "bool", "NoneType")


def _self_attribute_nodes(graph_or_block, self_value):
    """Reads and writes of ``self``'s attributes anywhere inside a graph or block."""
    for kind in ("prim::GetAttr", "prim::SetAttr"):
        for node in graph_or_block.findAllNodes(kind, True):
            if node.inputsAt(0).unique() == self_value.unique():
                yield node


def _frozen_graph(module, method: str):
    frozen = torch.jit.freeze(module.eval(), preserved_attrs=[] if method == "forward" else [method])
    graph = getattr(frozen, method).graph.copy()
    torch._C._jit_pass_inline(graph)
    return graph


def mutated_attributes(module, method: str = "forward") -> dict:
    """Attributes a scripted ``method`` assigns, by name -> TorchScript type (``"Tensor"``, ``"int"``...).

    Assignments on submodules (``self.sub.x = ...``) come back under their dotted name.
    """
    graph = _frozen_graph(module, method)
    self_value = next(graph.inputs())
    found = {}
    for node in graph.findAllNodes("prim::SetAttr", True):
        owner = node.inputsAt(0)
        name = node.s("name")
        if owner.unique() != self_value.unique():
            producer = owner.node()
            prefix = producer.s("name") if producer.kind() == "prim::GetAttr" else "<submodule>"
            name = f"{prefix}.{name}"
        found[name] = str(node.inputsAt(1).type())
    return found


def _rewrite_bool_of_int(graph) -> None:
    """``bool(n)`` of an int as ``n != 0``: same meaning, and the ONNX exporter has no symbolic
    for the former (``if not len(self._context)`` in Silero VAD)."""
    torch._C._jit_pass_custom_pattern_based_rewrite_graph(
        "graph(%a : int):\n  %b : bool = aten::Bool(%a)\n  return (%b)",
        "graph(%a : int):\n  %z : int = prim::Constant[value=0]()\n  %b : bool = aten::ne(%a, %z)\n  return (%b)",
        graph)


def lift_script_method(module, method: str, lifted: list, pinned: dict):
    """``module.method`` as a pure ScriptFunction with ``lifted`` attributes as trailing inputs.

    ``lifted``: names of Tensor attributes the method reads and assigns (each becomes an input
    and an entry of the returned tuple, in this order); ``pinned``: plain-number attributes held
    at the given value (their assignments are dropped). Any other assigned attribute refuses.
    """
    graph = _frozen_graph(module, method)
    self_value = next(graph.inputs())
    types, setters = {}, {}
    for node in _self_attribute_nodes(graph, self_value):
        (types if node.kind() == "prim::GetAttr" else setters)[node.s("name")] = \
            node.output().type() if node.kind() == "prim::GetAttr" else node.inputsAt(1).type()
    unknown = [n for n in sorted(set(types) | set(setters)) if n not in lifted and n not in pinned]
    if unknown:
        raise UnsupportedError(f"the scripted {method}() reads or assigns attribute(s) {', '.join(unknown)} that are "
                               "neither lifted nor pinned")
    env = {}
    for name in lifted:
        value = graph.addInput(name.lstrip("_") or name)
        value.setType(types.get(name, setters.get(name)))
        env[name] = value
    first = next(iter(graph.nodes()))
    for name, number in pinned.items():
        constant = graph.insertConstant(number)
        constant.node().moveBefore(first)
        env[name] = constant

    def walk(block, env: dict) -> dict:
        for node in list(block.nodes()):
            kind = node.kind()
            if kind == "prim::GetAttr" and node.inputsAt(0).unique() == self_value.unique():
                node.output().replaceAllUsesWith(env[node.s("name")])
                node.destroy()
            elif kind == "prim::SetAttr" and node.inputsAt(0).unique() == self_value.unique():
                env[node.s("name")] = node.inputsAt(1)
                node.destroy()
            elif kind == "prim::If":
                blocks = list(node.blocks())
                branch_envs = [walk(b, dict(env)) for b in blocks]
                for name in env:
                    if any(e[name] is not env[name] for e in branch_envs):
                        for b, e in zip(blocks, branch_envs):
                            b.registerOutput(e[name])
                        out = node.addOutput()
                        out.setType(env[name].type() if name in pinned else types.get(name, setters.get(name)))
                        env[name] = out
            elif any(True for b in node.blocks() for _ in _self_attribute_nodes(b, self_value)):
                raise UnsupportedError(f"the scripted {method}() touches a state attribute inside a {kind} "
                                       "(a loop or closure): only straight code and if/else can be lifted")
        return env

    env = walk(graph.block(), env)
    outputs = list(graph.outputs())
    states = graph.create("prim::TupleConstruct", [env[n] for n in lifted])
    states.output().setType(torch._C.TupleType([env[n].type() for n in lifted]))
    graph.appendNode(states)
    result = graph.create("prim::TupleConstruct", [outputs[0], states.output()])
    result.output().setType(torch._C.TupleType([outputs[0].type(), states.output().type()]))
    graph.appendNode(result)
    graph.eraseOutput(0)
    graph.registerOutput(result.output())
    graph.eraseInput(0)  # self: nothing reads it any more
    _rewrite_bool_of_int(graph)
    torch._C._jit_pass_lint(graph)
    return torch._C._create_function_from_graph(f"stateport_lifted_{method}", graph)

