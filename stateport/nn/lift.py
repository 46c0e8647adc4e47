"""Hidden state on ``self``: find the attributes a module's step changes, and swap values in and out.

Many streaming models keep their state on the module: ``register_buffer('h', zeros(1, 1, 64))``
and ``self.h = h.detach()`` in ``forward``, a cache updated in place (``self.cache.copy_(...)``),
a context tensor that starts empty. An exported graph is a pure function, so such state must
become ports. Two sound routes exist (``docs/bring-your-own-model.md``): ``torch.export``
lists the buffers a forward mutates *in place* but not reassigned attributes (measured, torch
2.13: ``self.h = h.detach()`` left ``buffers_to_mutate`` empty), so we observe instead: run the
step on example chunks and compare every buffer and plain attribute of every submodule
(identity, in-place version counter, shape, value) before and after. That catches both
patterns, attributes that are not buffers, and ``None`` that becomes a tensor.

The lift itself is the swap route (``torch.func.functional_call`` style): for each call, put the
explicit state tensors into the attributes, call the user's code untouched, read the
attributes back and put the originals back. The tracer sees ``h_in -> ... -> h_out``.
"""

from __future__ import annotations

import torch
from torch import nn

# Attributes every nn.Module has that are not the model's: never state.
_MODULE_INTERNALS = frozenset({"training", "_is_full_backward_hook"})
_PLAIN = (torch.Tensor, int, float, bool, type(None))


def candidate_attributes(module: nn.Module) -> list[str]:
    """Dotted paths (``"rnn.h"``) of every buffer and plain attribute (tensor, number, bool,
    None) of ``module`` and its submodules; parameters are weights, not state."""
    paths = []
    for mod_path, mod in module.named_modules():
        prefix = f"{mod_path}." if mod_path else ""
        names = list(mod._buffers)
        names += [k for k, v in vars(mod).items()
                  if k not in _MODULE_INTERNALS and isinstance(v, _PLAIN) and not isinstance(v, nn.Parameter)]
        paths.extend(prefix + n for n in dict.fromkeys(names))
    return paths


def _owner(root: nn.Module, path: str):
    mod_path, _, attr = path.rpartition(".")
    return (root.get_submodule(mod_path) if mod_path else root), attr


def read(root: nn.Module, path: str):
    owner, attr = _owner(root, path)
    return getattr(owner, attr)


def write(root: nn.Module, path: str, value) -> None:
    """Set an attribute or buffer (a registered buffer stays registered)."""
    owner, attr = _owner(root, path)
    setattr(owner, attr, value)


def snapshot(root: nn.Module, paths) -> dict:
    """Values of ``paths`` as they are now, tensors copied (an in-place update must not reach them)."""
    out = {}
    for p in paths:
        v = read(root, p)
        out[p] = v.detach().clone() if isinstance(v, torch.Tensor) else v
    return out


def same_value(a, b) -> bool:
    """Equal shape, dtype and values for tensors; ``==`` for plain values; None only equals None."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape
                and a.dtype == b.dtype and torch.equal(a, b))
    return type(a) is type(b) and a == b


class Swap:
    """Put values into attributes for one call, read them back, restore the originals.

    ``with Swap(root, paths, values) as swap: call(); new = swap.read()``. Pass copies when the
    model may update its state in place, so it never writes into the caller's tensors (the
    parity proof's numpy arrays, a client's state).
    """

    def __init__(self, root: nn.Module, paths, values):
        self.root, self.paths, self.values = root, list(paths), list(values)
        self.saved = []

    def __enter__(self):
        for p, v in zip(self.paths, self.values):
            self.saved.append(read(self.root, p))
            write(self.root, p, v)
        return self

    def read(self) -> list:
        return [read(self.root, p) for p in self.paths]

    def __exit__(self, *exc):
        for p, v in zip(self.paths, self.saved):
            write(self.root, p, v)
        return False
