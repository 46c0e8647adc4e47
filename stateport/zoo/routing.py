"""Route a model's flat state tuple to its streaming layers and gather the new states back.

A composed model (many conv layers, blocks, residuals) should not hand-count which slice of
``*state`` belongs to which layer. :class:`StateRouter` runs each layer with its own slice
(``StreamingModule.split_state``) and returns the new states in the model's declared order
(``StreamingModule.state_decls``: layer registration order), whatever order ``step`` calls
the layers in.
"""

from __future__ import annotations

import torch

from ..nn import StreamingLayer, StreamingModule


class StateRouter:
    """One step's state routing: ``router(layer, x)`` runs ``layer.step`` with its state slice.

    Usage inside ``StreamingModule.step``::

        route = StateRouter(self, state)
        y = route(self.conv1, x)
        ...
        return (logits, *route.new_state())
    """

    def __init__(self, model: StreamingModule, state: tuple):
        self._layers = [layer for _, layer in model.streaming_layers()]
        self._old = model.split_state(state)
        self._new: dict = {}

    def __call__(self, layer: StreamingLayer, x: torch.Tensor) -> torch.Tensor:
        if layer in self._new:
            # A layer run twice in one step would consume its state twice: a streaming bug.
            raise RuntimeError(f"{type(layer).__name__} was run twice in one step")
        y, *new = layer.step(x, *self._old[layer])
        self._new[layer] = new
        return y

    def new_state(self) -> tuple:
        """New states of every layer, flat, in the order ``state_decls`` declares them."""
        skipped = [type(layer).__name__ for layer in self._layers if layer not in self._new]
        if skipped:
            raise RuntimeError(f"step did not run streaming layer(s) {', '.join(skipped)}: their state would "
                               "not advance")
        return tuple(s for layer in self._layers for s in self._new[layer])
