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

Several inputs: a module with more than one plain input, or a non-float one (a transducer
predictor's int64 token ids, a joiner's two float vectors) overrides ``input_specs()``; then
``step(*inputs, *state)`` takes the inputs in that order before the state, and
``forward(*inputs)``. A model exported as several graphs (a transducer's encoder, predictor and
joiner) is a :class:`MultiGraphModule` whose ``graphs()`` are streaming modules, one card each.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import nn

from ..errors import InvalidInputError, PortNameError
from ..spec import BATCH_DIM, SIDE_ROLES, TIME_DIM, check_port_name, state_port_names


@dataclass(frozen=True)
class StateDecl:
    """One state tensor: its name, shape (``"batch"`` marks the batch axis), initial fill value.

    Torch side: what a module declares. Its card-side twin, written by the export, is
    :class:`stateport.spec.StatePort` (``name`` becomes the ports ``name_in``/``name_out``).

    ``reset_on_end_of_speech`` tells clients whether to clear it when the VAD says an
    utterance ended (recurrent memory: yes; e.g. a running normaliser: maybe not).
    ``batch_uniform``, ``valid_length_state`` and ``grow_axis`` go to the card as they are (see
    :class:`stateport.spec.StatePort`): one value for the whole batch; a fixed-size buffer whose
    last ``n`` entries along ``grow_axis`` are valid, ``n`` being that other state.
    """

    name: str
    shape: tuple
    init: float = 0.0
    reset_on_end_of_speech: bool = True
    dtype: torch.dtype = torch.float32
    description: str = ""
    batch_uniform: bool = False
    valid_length_state: str | None = None
    grow_axis: int | None = None

    @property
    def batch_axis(self) -> int:
        return list(self.shape).index(BATCH_DIM)

    def concrete_shape(self, batch: int) -> tuple[int, ...]:
        return tuple(batch if d == BATCH_DIM else int(d) for d in self.shape)

    def new(self, batch: int) -> torch.Tensor:
        return torch.full(self.concrete_shape(batch), self.init, dtype=self.dtype)

    def renamed(self, name: str) -> "StateDecl":
        return replace(self, name=name)


@dataclass(frozen=True)
class InputSpec:
    """One plain input of a streaming module: name, shape with symbolic dims, dtype, time axis.

    Torch side (a torch dtype, an ``example`` maker); its card-side twin is
    :class:`stateport.spec.TensorPort`.

    ``shape`` starts with ``"batch"``; the time axis, if any, holds a symbolic name (``"T"`` for
    audio frames, ``"U"`` for tokens, ...) and every other dim is an int. ``value_range``
    ``(low, high)`` is the half-open range of an integer input's valid values (e.g. token ids
    ``[0, V)``): examples and parity inputs are drawn from it, and clients check it.

    ``side_role`` (one of :data:`stateport.spec.SIDE_ROLES`) marks a per-call side input that
    is computed, not sliced from the signal: an int64 ``[batch]`` tensor holding the chunk's
    frame count (``chunk_length``) or the frames advanced before it (``stream_offset``).
    """

    name: str
    shape: tuple
    dtype: torch.dtype = torch.float32
    time_axis: int | None = None
    value_range: tuple | None = None
    description: str = ""
    side_role: str | None = None

    def __post_init__(self):
        if not self.shape or self.shape[0] != BATCH_DIM:
            raise InvalidInputError(f"input {self.name!r}: shape {self.shape} must start with {BATCH_DIM!r}")
        if self.side_role is not None:
            if self.side_role not in SIDE_ROLES:
                raise InvalidInputError(f"input {self.name!r}: side role {self.side_role!r} is not one of "
                                        f"{', '.join(SIDE_ROLES)}")
            if tuple(self.shape) != (BATCH_DIM,) or self.dtype.is_floating_point or self.time_axis is not None:
                raise InvalidInputError(f"input {self.name!r}: a side input is an integer [batch] tensor")
            return
        for axis, d in enumerate(self.shape[1:], start=1):
            if isinstance(d, str) and axis != self.time_axis:
                raise InvalidInputError(f"input {self.name!r}: dimension {d!r} on axis {axis} is symbolic; only "
                                        "the batch axis and the time axis may be")
        if self.time_axis is not None and not isinstance(self.shape[self.time_axis], str):
            raise InvalidInputError(f"input {self.name!r}: the time axis {self.time_axis} needs a symbolic name")
        if self.dtype.is_floating_point == (self.value_range is not None):
            raise InvalidInputError(f"input {self.name!r}: an integer input needs a value_range (low, high) and a "
                                    "float input takes none")

    @property
    def time_dim(self) -> str | None:
        """The symbolic name of the time axis (``"T"``, ``"U"``), or None."""
        return None if self.time_axis is None else self.shape[self.time_axis]

    def concrete_shape(self, batch: int, frames: int) -> tuple[int, ...]:
        """One step's shape: ``frames`` on the time axis (if any), ``batch`` on axis 0."""
        if self.side_role is not None:
            return (batch,)
        return tuple(batch if i == 0 else frames if i == self.time_axis else int(d) for i, d in enumerate(self.shape))

    def sequence_shape(self, batch: int, frames: int) -> tuple[int, ...]:
        """A whole sequence's shape: frame-wise inputs gain a frame axis 1 (``[B, F]`` -> ``[B, N, F]``)."""
        shape = self.concrete_shape(batch, frames)
        return shape if self.time_axis is not None or self.side_role else (shape[0], frames, *shape[1:])

    def side_value(self, batch: int, chunk_frames: int, offset_frames: int) -> torch.Tensor:
        """The value a client feeds to this side input for a chunk of ``chunk_frames`` frames that
        starts ``offset_frames`` into the stream."""
        value = chunk_frames if self.side_role == "chunk_length" else offset_frames
        return torch.full((batch,), int(value), dtype=self.dtype)

    def example(self, batch: int, frames: int, generator: torch.Generator, *, sequence: bool = False,
                offset_chunks: int = 3):
        """Deterministic example values for one step of ``frames`` frames (``sequence``: a whole
        utterance from the start of a stream). A step's side inputs describe a chunk
        ``offset_chunks`` chunks into the stream, so a value frozen at trace time differs from
        the one a client feeds."""
        if self.side_role is not None:
            return self.side_value(batch, frames, 0 if sequence else offset_chunks * frames)
        shape = self.sequence_shape(batch, frames) if sequence else self.concrete_shape(batch, frames)
        return self.random(shape, generator)

    def random(self, shape: tuple, generator: torch.Generator) -> torch.Tensor:
        """Deterministic example values of ``shape``: normal floats, or integers in ``value_range``."""
        if self.value_range is None:
            return torch.randn(shape, generator=generator).to(self.dtype)
        low, high = self.value_range
        return torch.randint(int(low), int(high), shape, generator=generator, dtype=self.dtype)


class StreamingLayer(nn.Module):
    """A layer that owns its streaming state. Subclasses implement the three methods."""

    def state_decls(self) -> list[StateDecl]:
        raise NotImplementedError

    def init_state(self, batch: int) -> tuple[torch.Tensor, ...]:
        return tuple(d.new(batch) for d in self.state_decls())

    def refresh(self) -> None:
        """Recompute what the layer derives from its submodules' function (e.g. a state offset), after
        their weights or quantizers changed. Nothing by default."""

    def step(self, x: torch.Tensor, *state: torch.Tensor):
        """Process one chunk; returns ``(y, *new_state)``."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Process a whole utterance from a fresh state (the offline reference)."""
        y, *_ = self.step(x, *_on_device_of(x, self.init_state(x.shape[0])))
        return y


def _on_device_of(x: torch.Tensor, state: tuple) -> tuple:
    """Initial states (made on CPU by their declarations) moved to ``x``'s device, e.g. for
    training on a GPU; on CPU (and so in every export) nothing is moved."""
    if x.device.type == "cpu":
        return state
    return tuple(s.to(x.device) for s in state)


@dataclass
class StreamingConfig:
    """Streaming parameters of a model, written into the card.

    Torch side: what a module sets on ``self.streaming``. Its card-side twin is
    :class:`stateport.spec.StreamingSpec` (plus ``OutputSpec`` for ``output_kind``/``vocabulary``
    and the card's ``frontend``), built from it by :func:`stateport.export.card_builder.build_card`.

    ``frames_per_step`` is the nominal chunk; chunk lengths must be multiples of
    ``frame_multiple``; ``lookahead_frames`` of right context are consumed but not advanced.
    ``chunk_exact``: every step but a stream's last advances exactly the nominal chunk (see
    :class:`stateport.spec.StreamingSpec`); the export then traces that chunk.
    ``algorithmic_latency_ms``: 0 lets the card compute it from the chunk, look-ahead and window;
    a module whose frames are not the card's (an audio-in wrapper) says it.
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
    chunk_exact: bool = False
    algorithmic_latency_ms: float = 0.0


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
    constants: dict | None = None  # values bound into the graph at export (the card's ``constants``)

    def __init__(self):
        super().__init__()
        self.streaming = StreamingConfig()

    # -- inputs --------------------------------------------------------------------------
    def input_specs(self) -> list[InputSpec]:
        """The plain inputs in port order; by default one float input ``input_name``.

        ``[B, T, input_dim]`` with the time axis 1, or ``[B, input_dim]`` when ``time_axis`` is
        None. Override for several inputs or integer inputs.
        """
        if self.time_axis is None:
            return [InputSpec(self.input_name, (BATCH_DIM, self.input_dim))]
        return [InputSpec(self.input_name, (BATCH_DIM, TIME_DIM, self.input_dim), time_axis=1)]

    def is_frame_wise(self) -> bool:
        """True when no input has a time axis: each step takes one frame (or one vector)."""
        return all(spec.time_axis is None for spec in self.input_specs())

    def output_steps(self, frames: int) -> int:
        """Output steps on the time axis of a first step of ``frames`` frames (the card builder's probe).

        A look-ahead model outputs only the frames it advances over; a module that keeps input
        back between steps (an audio-in wrapper) overrides this.
        """
        s = self.streaming
        return (frames - s.lookahead_frames) // max(s.subsampling, 1)

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

    def lifted_modules(self) -> list:
        """Submodules whose own state this module lifts into its state ports (the hidden-state
        guard then leaves their scripted attributes alone)."""
        return []

    def trace_state(self, batch: int) -> tuple[torch.Tensor, ...]:
        """The state the export traces ``step`` with: a fresh one unless a model says otherwise
        (e.g. one past its warm-up, so no buffer is traced empty)."""
        return self.init_state(batch)

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
        """One chunk: ``x`` [B, T, F] -> ``(*outputs, *new_state)``.

        With several inputs (``input_specs``): ``step(*inputs, *state)``.
        """
        raise NotImplementedError

    def forward(self, *inputs: torch.Tensor):
        """Whole utterance from a fresh state -> tuple of outputs (the offline reference)."""
        out = self.step(*inputs, *_on_device_of(inputs[0], self.init_state(inputs[0].shape[0])))
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

        for spec in self.input_specs():
            add(spec.name, "input")
        for o in self.output_names:
            add(o, "output")
        for d in self.state_decls():
            pin, pout = state_port_names(d.name)
            add(pin, f"state {d.name!r} input")
            add(pout, f"state {d.name!r} output")


class MultiGraphModule(nn.Module):
    """A model exported as several graphs, each a :class:`StreamingModule` with its own card.

    A transducer is the example: its encoder streams over audio, its predictor steps over
    emitted tokens and its joiner scores one (frame, prediction) pair, each driven separately by
    the decoding loop. ``graphs()`` names them; the export writes ``<name>.onnx`` for each into one
    directory, and each card's provenance names its graph, so ``verify`` rebuilds the right one.
    """

    architecture: str = "custom"

    def graphs(self) -> dict:
        """Graph name -> StreamingModule, in export order."""
        raise NotImplementedError
