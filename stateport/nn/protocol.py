"""The streaming-module protocol (torch side).

A streaming model offers three things:

- ``init_state(batch)`` -> tuple of state tensors (a fresh stream);
- ``step(x, *state)`` -> ``(*outputs, *new_state)``: the graph that gets exported;
- ``forward(x)`` -> ``outputs``: the full-utterance (offline) reference.

Layers that know their own state (:class:`StreamingLayer`) compose into a model
(:class:`StreamingModule`); the model finds its layers' states automatically and names them
by module path, so nobody lists 98 state tensors by hand.

Shapes: model inputs are ``[B, T, F]`` (batch, frames, features) unless ``time_axis`` is None,
in which case a step takes one frame ``[B, F]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import PortNameError
from ..spec import BATCH_DIM, check_port_name, state_port_names


@dataclass(frozen=True)
class StateDecl:
    """One state tensor: its name, shape (``"batch"`` marks the batch axis), initial fill value.

    ``reset_on_end_of_speech`` tells clients whether to clear it when the VAD says an
    utterance ended (recurrent memory: yes; e.g. a running normaliser: maybe not).
    """

    name: str
    shape: tuple
    init: float = 0.0
    reset_on_end_of_speech: bool = True
    dtype: torch.dtype = torch.float32
    description: str = ""

    @property
    def batch_axis(self) -> int:
        return list(self.shape).index(BATCH_DIM)

    def concrete_shape(self, batch: int) -> tuple[int, ...]:
        return tuple(batch if d == BATCH_DIM else int(d) for d in self.shape)

    def new(self, batch: int) -> torch.Tensor:
        return torch.full(self.concrete_shape(batch), float(self.init), dtype=self.dtype)

    def renamed(self, name: str) -> "StateDecl":
        return StateDecl(name, self.shape, self.init, self.reset_on_end_of_speech, self.dtype,
                         self.description)


class StreamingLayer(nn.Module):
    """A layer that owns its streaming state. Subclasses implement the three methods."""

    def state_decls(self) -> list[StateDecl]:
        raise NotImplementedError

    def init_state(self, batch: int) -> tuple[torch.Tensor, ...]:
        return tuple(d.new(batch) for d in self.state_decls())

    def step(self, x: torch.Tensor, *state: torch.Tensor):
        """Process one chunk; returns ``(y, *new_state)``."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Process a whole utterance from a fresh state (the offline reference)."""
        y, *_ = self.step(x, *self.init_state(x.shape[0]))
        return y


@dataclass
class StreamingConfig:
    """Streaming parameters of a model, written into the card.

    ``frames_per_step`` is the nominal chunk; chunk lengths must be multiples of
    ``frame_multiple``; ``lookahead_frames`` of right context are consumed but not advanced.
    """

    frames_per_step: int = 16
    frame_multiple: int = 1
    min_frames: int = 1
    lookahead_frames: int = 0
    subsampling: int = 1
    sample_rate_hz: int = 16000
    frame_hop_samples: int = 160
    frontend: dict | None = None
    output_kind: str = "raw"
    output_port: str = ""
    vocabulary: list = field(default_factory=list)
    blank_id: int | None = None


class StreamingModule(nn.Module):
    """A whole streaming model: the unit that gets exported.

    Subclasses set ``input_name``, ``output_names``, ``input_dim``, ``streaming`` and implement
    ``step`` and ``forward``. States come from the child :class:`StreamingLayer` modules in
    registration order, named ``<module_path>_<state>`` (dots become underscores); override
    ``state_decls`` to name them otherwise.
    """

    input_name: str = "features"
    output_names: tuple = ("logits",)
    input_dim: int = 80
    time_axis: int | None = 1
    architecture: str = "custom"

    def __init__(self):
        super().__init__()
        self.streaming = StreamingConfig()

    # -- state discovery ---------------------------------------------------------------
    def streaming_layers(self) -> list[tuple[str, StreamingLayer]]:
        """Top-most StreamingLayer children in registration order (nested ones belong to them)."""
        found: list[tuple[str, StreamingLayer]] = []

        def visit(prefix: str, module: nn.Module):
            for name, child in module.named_children():
                path = f"{prefix}.{name}" if prefix else name
                if isinstance(child, StreamingLayer):
                    found.append((path, child))
                else:
                    visit(path, child)

        visit("", self)
        return found

    def state_decls(self) -> list[StateDecl]:
        decls = []
        for path, layer in self.streaming_layers():
            prefix = path.replace(".", "_").lower()
            for d in layer.state_decls():
                decls.append(d.renamed(f"{prefix}_{d.name}"))
        return decls

    def init_state(self, batch: int) -> tuple[torch.Tensor, ...]:
        return tuple(d.new(batch) for d in self.state_decls())

    def split_state(self, state) -> dict:
        """Map each streaming layer to its slice of the flat state tuple (in layer order)."""
        out, i = {}, 0
        for _, layer in self.streaming_layers():
            n = len(layer.state_decls())
            out[layer] = tuple(state[i:i + n])
            i += n
        if i != len(state):
            raise ValueError(f"expected {i} state tensors, got {len(state)}")
        return out

    # -- the protocol ------------------------------------------------------------------
    def step(self, x: torch.Tensor, *state: torch.Tensor):
        """One chunk: ``x`` [B, T, F] -> ``(*outputs, *new_state)``."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor):
        """Whole utterance from a fresh state -> tuple of outputs (the offline reference)."""
        out = self.step(x, *self.init_state(x.shape[0]))
        return tuple(out[: len(self.output_names)])

    # -- port names --------------------------------------------------------------------
    def check_port_names(self) -> None:
        """Raise PortNameError if names clash or break the naming rule."""
        names: dict[str, str] = {}

        def add(name: str, what: str):
            check_port_name(name)
            if name in names:
                raise PortNameError(f"port name {name!r} is used twice ({names[name]} and {what}); "
                                    "give every input, output and state its own name")
            names[name] = what

        add(self.input_name, "input")
        for o in self.output_names:
            add(o, "output")
        for d in self.state_decls():
            pin, pout = state_port_names(d.name)
            add(pin, f"state {d.name!r} input")
            add(pout, f"state {d.name!r} output")
