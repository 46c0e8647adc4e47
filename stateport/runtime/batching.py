"""Batch independent streams into one model call: stack, unstack and reset per-stream state.

Streams stack along each state's own batch axis, read from the card (``StatePort.batch_axis``):
an LSTM's ``h`` [L, B, H] stacks on axis 1, a conv left-padding buffer [B, C, K] on axis 0.
Nothing here is specific to an architecture, and nothing imports torch.

A state dict maps state input port names (``X_in``) to arrays, as
:meth:`~stateport.runtime.session.OnnxStepSession.run` takes and returns them. A typical
server loop::

    batched = stack_states(card, [streams[i].state for i in active])
    outputs, batched = session.run(np.concatenate(chunks), batched)
    for i, state in zip(active, unstack_states(card, batched)):
        streams[i].state = state

Every function returns new arrays and never modifies its arguments.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidInputError, StateShapeError
from ..spec import ModelCard, StatePort


def _check_keys(card: ModelCard, state: dict, where: str) -> None:
    if not isinstance(state, dict):
        raise InvalidInputError(f"{where}: expected a dict of state arrays keyed by port name, "
                                f"got {type(state).__name__}")
    expected = [s.name for s in card.states]
    missing = [name for name in expected if name not in state]
    unknown = sorted(set(state) - set(expected))
    if missing or unknown:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + \
                ([f"unknown {', '.join(unknown)}"] if unknown else [])
        raise StateShapeError(f"{where}: state keys do not match the card ({'; '.join(parts)}); "
                              f"expected exactly {expected}")


def _streams_in(s: StatePort, value, where: str) -> int:
    """The number of streams ``value`` holds for state ``s``; StateShapeError if its shape is not the card's."""
    if not isinstance(value, np.ndarray):
        raise StateShapeError(f"{where}: state {s.name} must be a numpy array, got {type(value).__name__}")
    if value.ndim != len(s.shape):
        raise StateShapeError(f"{where}: state {s.name} has shape {tuple(value.shape)}; expected "
                              f"{len(s.shape)} dimensions {s.shape} (batch on axis {s.batch_axis})")
    batch = int(value.shape[s.batch_axis])
    if tuple(value.shape) != s.concrete_shape(batch):
        raise StateShapeError(f"{where}: state {s.name} has shape {tuple(value.shape)}; expected "
                              f"{s.concrete_shape(batch)} (card {s.shape}, batch on axis {s.batch_axis})")
    if value.dtype != np.dtype(s.dtype):
        raise StateShapeError(f"{where}: state {s.name} has dtype {value.dtype}; expected {s.dtype}")
    return batch


def batch_size(card: ModelCard, batched: dict) -> int:
    """Number of streams in a state dict; StateShapeError if the states disagree or break the card."""
    _check_keys(card, batched, "batched state")
    sizes = {s.name: _streams_in(s, batched[s.name], "batched state") for s in card.states}
    if len(set(sizes.values())) > 1:
        raise StateShapeError("batched state: the states hold different numbers of streams "
                              f"({', '.join(f'{k}: {v}' for k, v in sizes.items())}); expected one batch size")
    if not sizes:
        raise InvalidInputError("this model has no state ports, so a state dict cannot say how many streams "
                                "it holds")
    return next(iter(sizes.values()))


def stack_states(card: ModelCard, states: list) -> dict:
    """One state dict for all streams: the dicts in ``states`` concatenated in order.

    Each state is concatenated along its card ``batch_axis``. With one stream per dict (the
    usual case), stream ``i`` of the result is ``states[i]``; a dict holding several streams
    contributes them all, in its own order.
    """
    if not isinstance(states, (list, tuple)) or not states:
        raise InvalidInputError("stack_states: expected a non-empty list of per-stream state dicts")
    for i, st in enumerate(states):
        _check_keys(card, st, f"stream {i}")
        for s in card.states:
            _streams_in(s, st[s.name], f"stream {i}")
    return {s.name: np.concatenate([st[s.name] for st in states], axis=s.batch_axis) for s in card.states}


def unstack_states(card: ModelCard, batched: dict, *, streams: int | None = None) -> list:
    """One state dict per stream (batch 1 each), split along each state's ``batch_axis``.

    ``streams`` is only needed for a model without state ports (then each dict is empty); when
    given otherwise, it must equal the batch the states hold.
    """
    if not card.states:
        if streams is None:
            raise InvalidInputError("unstack_states: this model has no state ports; pass streams=N to say how "
                                    "many (empty) per-stream states to return")
        return [{} for _ in range(streams)]
    batch = batch_size(card, batched)
    if streams is not None and streams != batch:
        raise StateShapeError(f"unstack_states: expected {streams} streams, the state holds {batch}")
    out = []
    for i in range(batch):
        # A copy, so a stream's state never aliases the batched arrays (or another stream's).
        out.append({s.name: np.ascontiguousarray(np.take(batched[s.name], [i], axis=s.batch_axis))
                    for s in card.states})
    return out


def reset_stream(card: ModelCard, batched: dict, index: int, only_end_of_speech: bool = False) -> dict:
    """A copy of ``batched`` with stream ``index`` set back to each state's card ``init`` value.

    With ``only_end_of_speech``, only states whose card flag ``reset_on_end_of_speech`` is set
    are cleared (what a client does when the VAD ends an utterance); the rest carry on.
    Other streams are left exactly as they were.
    """
    batch = batch_size(card, batched)
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < batch:
        raise InvalidInputError(f"reset_stream: stream index must be an integer in [0, {batch}), got {index!r}")
    out = {}
    for s in card.states:
        value = batched[s.name].copy()
        if not only_end_of_speech or s.reset_on_end_of_speech:
            where = [slice(None)] * value.ndim
            where[s.batch_axis] = int(index)
            value[tuple(where)] = np.asarray(s.init, dtype=value.dtype)
        out[s.name] = value
    return out
