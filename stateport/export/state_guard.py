"""Refuse models that keep state, or values, the export would silently lose.

An exported graph is a pure function: a buffer that ``step``/``forward`` mutates in place (a
cache, a running counter, a frame history kept on ``self``) becomes a frozen constant in the
graph, and the device model quietly differs from the torch one. We run the model on an
example, watch every buffer and tensor attribute, and refuse with the buffer's name and the
declaration that lifts it (:func:`stateport.nn.declare_step` finds and lifts such state itself;
this guard catches hand-written :class:`StreamingModule` subclasses). A TorchScript submodule's
attributes are not Python attributes, so its scripted code is read instead, before anything runs.

Tracing freezes values as well as state: ``.item()``, ``int(t)``, ``bool(t)`` on a tensor in
the step become constants of the graph. The tracer warns, but the same warning also fires for
harmless sizes (``if x.shape[1] > 2``), so a warning alone proves nothing: when one fired, the
export traces again with other values of the same shapes, and refuses, naming the warnings'
source lines, if the two graphs differ.
"""

from __future__ import annotations

import linecache

import torch

from ..errors import UndeclaredStateError, UnsupportedError

_FIX = ("declare_step(module, input=..., outputs=[...]) lifts buffers and attributes into state ports by itself; "
        "in a StreamingModule subclass, declare each as a StateDecl passed in and returned by step()")


def _tensor_attributes(model: torch.nn.Module) -> dict:
    """Plain tensor attributes (neither parameters nor buffers), by qualified name -> identity."""
    found = {}
    for mod_name, mod in model.named_modules():
        for attr, value in vars(mod).items():
            if isinstance(value, torch.Tensor) and not isinstance(value, torch.nn.Parameter):
                found[f"{mod_name}.{attr}" if mod_name else attr] = id(value)
    return found


def _scripted_state(model: torch.nn.Module) -> list[str]:
    """Attributes that TorchScript submodules assign in forward (and that nobody lifted)."""
    from ..nn.script_lift import mutated_attributes

    lifted = {id(m) for m in getattr(model, "lifted_modules", lambda: [])()}
    found = []
    for name, mod in model.named_modules():
        if isinstance(mod, torch.jit.ScriptModule) and id(mod) not in lifted and hasattr(mod, "forward"):
            try:
                assigned = mutated_attributes(mod)
            except RuntimeError:  # a module whose forward cannot be frozen is checked by running it
                continue
            found += [f"TorchScript attribute '{name + '.' if name else ''}{a}' ({t})" for a, t in assigned.items()]
    return found


def _run_probe(model, xs, seqs) -> None:
    with torch.no_grad():
        state = model.init_state(xs[0].shape[0])
        for _ in range(2):
            out = model.step(*xs, *state)
            state = tuple(out[len(model.output_names):])
        model(*seqs)


def check_no_hidden_state(model, example_x, example_sequence) -> None:
    """Run ``step`` twice on ``example_x`` and ``forward`` on ``example_sequence`` [B, T, F],
    first for the first stream alone, then for the whole batch; raise if hidden state changed.

    A model with several inputs gets a tuple for each (one tensor per input, in port order).
    Buffers are restored afterwards, so the check itself leaves the model as it was.
    """
    scripted = _scripted_state(model)
    if scripted:
        raise UndeclaredStateError(
            f"{type(model).__name__} keeps state in {', '.join(scripted)}: the exported graph would freeze it. "
            "declare_step(scripted_module, input=..., outputs=[...]) lifts a TorchScript module's tensor "
            "attributes into state ports")
    xs = tuple(example_x) if isinstance(example_x, (tuple, list)) else (example_x,)
    seqs = tuple(example_sequence) if isinstance(example_sequence, (tuple, list)) else (example_sequence,)
    before = {name: (buf, buf._version, buf.detach().clone()) for name, buf in model.named_buffers()}
    attrs_before = _tensor_attributes(model)
    offenders = []
    try:
        for batch in (1, None):  # one stream first: a batch-1 buffer must be named, not crash at batch 2
            try:
                _run_probe(model, tuple(x[:batch] for x in xs), tuple(s[:batch] for s in seqs))
            except Exception:  # the user's model raises anything: if state changed, that is the cause
                offenders = _changed(model, before, attrs_before)
                if offenders:
                    break
                raise
            offenders = _changed(model, before, attrs_before)
            if offenders:
                break
    finally:
        for buf, _, value in before.values():
            if buf.shape == value.shape:
                buf.data.copy_(value)
    if offenders:
        raise UndeclaredStateError(
            f"{type(model).__name__} changes {', '.join(offenders)} while running step()/forward() "
            f"without declaring it as state: the exported graph would freeze it and lose the state. {_FIX}")


def _changed(model, before: dict, attrs_before: dict) -> list[str]:
    after = dict(model.named_buffers())
    offenders = []
    for name, (buf, version, value) in before.items():
        now = after.get(name)
        if now is None or now is not buf or buf._version != version or not torch.equal(buf, value):
            offenders.append(f"buffer '{name}'")
    for name, ident in _tensor_attributes(model).items():
        if attrs_before.get(name) != ident:
            offenders.append(f"tensor attribute '{name}'")
    return offenders


# -- values frozen by tracing ---------------------------------------------------------------
_FROZEN_VALUE_WARNINGS = ("Converting a tensor to a Python", "torch.tensor results are registered as constants",
                          "Iterating over a tensor")


def frozen_value_sites(caught) -> list[str]:
    """``file:line: code`` of each tracer warning that may mean a value became a constant."""
    sites = []
    for w in caught:
        if issubclass(w.category, torch.jit.TracerWarning) and str(w.message).startswith(_FROZEN_VALUE_WARNINGS):
            code = linecache.getline(w.filename, w.lineno).strip()
            site = f"{w.filename}:{w.lineno}: {code}"
            if site not in sites:
                sites.append(site)
    return sites


def graph_signature(onnx_bytes: bytes) -> bytes:
    """The graph of an exported model without names or doc strings, for comparing two traces."""
    import onnx

    graph = onnx.load_from_string(onnx_bytes).graph
    for node in graph.node:
        node.doc_string = ""
    return graph.SerializeToString()


def refuse_frozen_values(first: bytes, second: bytes, sites: list[str], model) -> None:
    """Raise if two traces with different values of the same shapes gave different graphs."""
    if graph_signature(first) == graph_signature(second):
        return
    where = "; ".join(sites) if sites else "no tracer warning says where"
    raise UnsupportedError(
        f"{type(model).__name__}: the traced graph depends on the example values (traced twice with the same "
        f"shapes, two different graphs): a value taken out of a tensor became a constant at {where}. Keep it a "
        "tensor (torch ops instead of .item()/int()/float()/bool(), torch.where instead of if)")
