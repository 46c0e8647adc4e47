"""The state inputs' default initializers of a stateport ONNX graph, taken out and put back.

The export gives every state input an initializer holding its initial value for one stream, which
makes the input optional in ONNX Runtime (feed only the audio: the offline result from a fresh
state). Tools that fold an input with an initializer into a constant lose the state that way:
OpenVINO's ONNX frontend (measured), ONNX Runtime's quantizers (they take it for a weight), and
possibly the Qualcomm converters (undocumented). Each of them gets the graph without these
defaults; the quantizers get them back afterwards.
"""

from __future__ import annotations

import os


def strip_state_defaults(proto, names=None) -> list:
    """Remove (in place) the initializers that shadow graph inputs; returns them, for :func:`restore_state_defaults`.

    ``names``: only these (e.g. the card's state inputs); default: every initializer named like a
    graph input.
    """
    wanted = set(names) if names is not None else {i.name for i in proto.graph.input}
    kept, removed = [], []
    for init in proto.graph.initializer:
        (removed if init.name in wanted else kept).append(init)
    del proto.graph.initializer[:]
    proto.graph.initializer.extend(kept)
    return removed


def restore_state_defaults(proto, removed: list) -> None:
    """Put the defaults back (replacing any initializer a tool made under the same name)."""
    names = {i.name for i in removed}
    kept = [i for i in proto.graph.initializer if i.name not in names]
    del proto.graph.initializer[:]
    proto.graph.initializer.extend(kept + list(removed))


def onnx_without_state_defaults(path: str | os.PathLike) -> bytes:
    """The bytes of the ONNX file at ``path`` with every state default removed (every state a required input)."""
    import onnx

    proto = onnx.load(os.fspath(path))
    strip_state_defaults(proto)
    return proto.SerializeToString()
