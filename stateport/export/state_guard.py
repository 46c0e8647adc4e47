"""Refuse models that keep state the export would silently lose.

An exported graph is a pure function: a buffer that ``step``/``forward`` mutates in place (a
cache, a running counter, a frame history kept on ``self``) becomes a frozen constant in the
graph, and the device model quietly differs from the torch one. We run the model on an
example, watch every buffer and tensor attribute, and refuse with the buffer's name.
"""

from __future__ import annotations

import torch

from ..errors import UndeclaredStateError


def _tensor_attributes(model: torch.nn.Module) -> dict:
    """Plain tensor attributes (neither parameters nor buffers), by qualified name -> identity."""
    found = {}
    for mod_name, mod in model.named_modules():
        for attr, value in vars(mod).items():
            if isinstance(value, torch.Tensor) and not attr.startswith("_"):
                found[f"{mod_name}.{attr}" if mod_name else attr] = id(value)
    return found


def check_no_hidden_state(model, example_x, example_sequence) -> None:
    """Run ``step`` twice on ``example_x`` and ``forward`` on ``example_sequence`` [B, T, F];
    raise if hidden state changed.

    A model with several inputs gets a tuple for each (one tensor per input, in port order).
    Buffers are restored afterwards, so the check itself leaves the model as it was.
    """
    xs = tuple(example_x) if isinstance(example_x, (tuple, list)) else (example_x,)
    seqs = tuple(example_sequence) if isinstance(example_sequence, (tuple, list)) else (example_sequence,)
    before = {name: (buf, buf._version, buf.detach().clone()) for name, buf in model.named_buffers()}
    attrs_before = _tensor_attributes(model)
    try:
        with torch.no_grad():
            state = model.init_state(xs[0].shape[0])
            for _ in range(2):
                out = model.step(*xs, *state)
                state = tuple(out[len(model.output_names):])
            model(*seqs)
        after = dict(model.named_buffers())
        offenders = []
        for name, (buf, version, value) in before.items():
            now = after.get(name)
            if now is None or now is not buf or buf._version != version or not torch.equal(buf, value):
                offenders.append(f"buffer '{name}'")
        attrs_after = _tensor_attributes(model)
        for name, ident in attrs_after.items():
            if attrs_before.get(name) != ident:
                offenders.append(f"tensor attribute '{name}'")
    finally:
        for buf, _, value in before.values():
            if buf.shape == value.shape:
                buf.data.copy_(value)
    if offenders:
        raise UndeclaredStateError(
            f"{type(model).__name__} changes {', '.join(offenders)} while running step()/forward() "
            "without declaring it as state: the exported graph would freeze it and lose the state. "
            "Declare it as a state (a StateDecl, passed in and returned by step) or stop mutating it.")
