"""State structures as leaves named by path: flatten any nesting to ports, rebuild it for the model.

Streaming models carry their state as whatever their authors liked: one tensor, a list with one
buffer per layer, a tuple of ``(h, c)``, a dict, a list of lists, a dataclass (SpeechBrain's
``ConformerEncoderStreamingContext`` holds a list of per-layer dataclasses whose tensors start
as ``None``). An exported graph needs one tensor per port, so the structure is flattened to its
leaves, each named by its path (the way ``torch.utils._pytree`` key paths name them, written
with dots: ``layers.0.mha_left_context``), and rebuilt around new tensors for every call.

Containers are lists, tuples (named tuples too), dicts and dataclass instances; everything else
is a leaf: tensors become ports, ``None`` may become one (a state that starts empty), any other
value (an int, a config object) is kept from the template as it is.

Why not ``torch.utils._pytree`` itself: it needs each dataclass type registered globally, and a
third-party model's types (SpeechBrain's contexts) are not ours to register.
"""

from __future__ import annotations

import copy
import dataclasses
import fnmatch
import re
from typing import Any

import torch

Path = tuple


def is_container(obj: Any) -> bool:
    return isinstance(obj, (list, tuple, dict)) or (dataclasses.is_dataclass(obj) and not isinstance(obj, type))


def children(obj: Any) -> list[tuple[Any, Any]]:
    """``(key, value)`` pairs of a container, in a stable order (dicts keep insertion order)."""
    if isinstance(obj, dict):
        return list(obj.items())
    if _is_namedtuple(obj):
        return list(zip(obj._fields, obj))
    if isinstance(obj, (list, tuple)):
        return list(enumerate(obj))
    return [(f.name, getattr(obj, f.name)) for f in dataclasses.fields(obj)]


def _is_namedtuple(obj: Any) -> bool:
    return isinstance(obj, tuple) and hasattr(obj, "_fields")


def flatten(obj: Any, prefix: Path = ()) -> list[tuple[Path, Any]]:
    """Every leaf of ``obj`` with its path (a tuple of keys), depth first in container order."""
    if not is_container(obj):
        return [(prefix, obj)]
    leaves = []
    for key, value in children(obj):
        leaves.extend(flatten(value, prefix + (key,)))
    return leaves


def rebuild(template: Any, values: dict, prefix: Path = ()) -> Any:
    """A new structure shaped like ``template`` with the leaves at ``values``' paths replaced.

    Every container is a fresh object (dataclasses are shallow-copied), so a model that mutates
    the structure it is given (SpeechBrain's streaming context) never touches the template.
    """
    if not is_container(template):
        return values.get(prefix, template)
    if isinstance(template, dict) or isinstance(template, (list, tuple)):
        items = [(k, rebuild(v, values, prefix + (k,))) for k, v in children(template)]
        if isinstance(template, dict):
            return dict(items)
        if _is_namedtuple(template):
            return type(template)(**dict(items))
        return type(template)(v for _, v in items)
    new = copy.copy(template)
    for f in dataclasses.fields(template):
        object.__setattr__(new, f.name, rebuild(getattr(template, f.name), values, prefix + (f.name,)))
    return new


def path_str(path: Path) -> str:
    """``("layers", 0, "mha_left_context")`` -> ``"layers.0.mha_left_context"``."""
    return ".".join(str(k) for k in path)


def port_name(*parts: str) -> str:
    """A port name from path parts: lowercase, every run of other characters one ``_``.

    ``port_name("context", "layers.0._state")`` -> ``"context_layers_0_state"``.
    """
    text = "_".join(p for p in parts if p)
    name = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    return name if name[:1].isalpha() else f"s_{name}"


def matches(patterns, path: str) -> Any:
    """The value of the first ``{pattern: value}`` entry whose glob matches ``path`` (or the
    path's last component), or None. ``"*.mha_left_context"`` matches every layer's."""
    for pattern, value in (patterns or {}).items():
        if fnmatch.fnmatchcase(path, pattern) or fnmatch.fnmatchcase(path.rsplit(".", 1)[-1], pattern):
            return value
    return None


def describe(value: Any) -> str:
    """A short description of a leaf for messages: ``tensor(1, 16, 64) float32``, ``None``, ``int 3``."""
    if isinstance(value, torch.Tensor):
        return f"tensor{tuple(value.shape)} {str(value.dtype).replace('torch.', '')}"
    if value is None:
        return "None"
    return f"{type(value).__name__} {value!r}"[:60]
