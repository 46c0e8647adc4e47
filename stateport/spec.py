"""The model card: the one document that tells any client how to run a streaming model.

The card travels inside the exported file (ONNX: the ``metadata_props`` entry named
``stateport``) as JSON. It is the only place the streaming contract lives: ports and their
roles, how state pairs up, batch axes, initial values, chunking rules, the feature frontend,
output semantics, provenance and the parity certificate.

Naming rule for state: a state called ``NAME`` is fed through the input port ``NAME_in`` and
comes back through the output port ``NAME_out``. Every port name is a lowercase identifier
(``[a-z][a-z0-9_]*``) valid in every runtime we target.

This module is pure Python (no torch, no onnx) so the client runtime can use it. Its classes are
the card side of pairs whose torch side a module declares (``stateport.nn.protocol``):
``StatePort`` / ``StateDecl``, ``TensorPort`` / ``InputSpec``, ``StreamingSpec`` / ``StreamingConfig``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Union

from .errors import CardError, PortNameError

CARD_KEY = "stateport"
SCHEMA = "stateport.card/1"
STATE_IN_SUFFIX = "_in"
STATE_OUT_SUFFIX = "_out"
BATCH_DIM = "batch"
TIME_DIM = "T"
# Audio-in models (the frontend inside the graph): the input's time axis counts samples, and the
# card's ``frontend`` dict carries ``"in_graph": true`` beside the FrontendConfig fields.
SAMPLE_DIM = "S"
FRONTEND_IN_GRAPH = "in_graph"
# What an audio-in graph's frontend carries (stateport.nn.audio_in): the last samples and how many
# arrived since the next frame's start; the frames waiting for a whole model step and how many.
# The counts are batch-uniform (one value for the batch): clients batch streams only while equal.
AUDIO_IN_SAMPLES_STATE = "frontend_samples"
AUDIO_IN_SAMPLE_COUNT_STATE = "frontend_sample_count"
AUDIO_IN_FRAMES_STATE = "frontend_frames"
AUDIO_IN_FRAME_COUNT_STATE = "frontend_frame_count"
SUPPORTED_DTYPES = ("float32", "float64", "float16", "int64", "int32", "int8", "uint8", "bool")
# What a client computes and feeds for a side input (a per-call input that is not the signal):
# ``chunk_length``: frames in this step's chunk; ``stream_offset``: frames advanced before it.
SIDE_ROLES = ("chunk_length", "stream_offset")
OUTPUT_KINDS = ("ctc", "transducer_encoder", "transducer_predictor", "transducer_joiner",
                "classifier", "vad", "raw", "transducer_decoder")

_PORT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")

Dim = Union[int, str]


def state_port_names(state_name: str) -> tuple[str, str]:
    """The (input, output) port names of the state called ``state_name``: the one naming rule."""
    return state_name + STATE_IN_SUFFIX, state_name + STATE_OUT_SUFFIX


def check_port_name(name: str) -> str:
    """Return ``name`` if it is a valid port name, else raise PortNameError."""
    if not isinstance(name, str) or not _PORT_NAME.match(name):
        raise PortNameError(
            f"port name {name!r} is not valid: expected a lowercase identifier "
            "matching [a-z][a-z0-9_]* of at most 64 characters")
    return name


def _check_shape(shape: Any, where: str) -> list:
    if not isinstance(shape, (list, tuple)):
        raise CardError(f"{where}: shape must be a list of ints and symbolic names, got {shape!r}")
    out = []
    for d in shape:
        if isinstance(d, bool) or not isinstance(d, (int, str)):
            raise CardError(f"{where}: dimension {d!r} is neither an int nor a symbolic name")
        if isinstance(d, int) and d < 0:
            raise CardError(f"{where}: dimension {d} is negative")
        out.append(d)
    return out


def _check_dtype(dtype: str, where: str) -> str:
    if dtype not in SUPPORTED_DTYPES:
        raise CardError(f"{where}: dtype {dtype!r} is not one of {', '.join(SUPPORTED_DTYPES)}")
    return dtype


@dataclass
class TensorPort:
    """A plain input or output port. ``time_axis`` marks the frame axis, if the port has one.

    Card side (torch-free); an input's torch-side twin is :class:`stateport.nn.protocol.InputSpec`.

    The time axis is usually audio frames (``"T"``); a transducer predictor's token input counts
    tokens (``"U"``). ``value_range`` ``[low, high)`` bounds the values of an integer input (token
    ids index a vocabulary), so a client can refuse an out-of-range id before the runtime does.

    ``side_role`` marks a side input the client computes per step instead of slicing it from the
    signal (one of ``SIDE_ROLES``; an integer ``[batch]`` tensor): ``chunk_length`` is the
    number of frames in this step's chunk, ``stream_offset`` the frames advanced before it
    (0 at the start of a stream). None for the signal itself and for outputs.
    """

    name: str
    role: str  # "input" or "output"
    shape: list
    dtype: str = "float32"
    time_axis: int | None = None
    description: str = ""
    value_range: list | None = None
    side_role: str | None = None

    def __post_init__(self):
        check_port_name(self.name)
        if self.role not in ("input", "output"):
            raise CardError(f"port {self.name!r}: role must be 'input' or 'output', got {self.role!r}")
        self.shape = _check_shape(self.shape, f"port {self.name!r}")
        _check_dtype(self.dtype, f"port {self.name!r}")
        if self.time_axis is not None and not 0 <= self.time_axis < len(self.shape):
            raise CardError(f"port {self.name!r}: time_axis {self.time_axis} outside shape {self.shape}")
        if self.value_range is not None:
            vr = self.value_range
            if (not isinstance(vr, (list, tuple)) or len(vr) != 2
                    or not all(isinstance(v, int) and not isinstance(v, bool) for v in vr) or vr[0] >= vr[1]):
                raise CardError(f"port {self.name!r}: value_range must be [low, high) with integers low < high, "
                                f"got {vr!r}")
            self.value_range = [int(vr[0]), int(vr[1])]
        if self.side_role is not None:
            if self.role != "input":
                raise CardError(f"port {self.name!r}: only an input can have a side_role")
            if self.side_role not in SIDE_ROLES:
                raise CardError(f"port {self.name!r}: side_role {self.side_role!r} is not one of {', '.join(SIDE_ROLES)}")
            if not self.dtype.startswith("int") or len(self.shape) != 1:
                raise CardError(f"port {self.name!r}: a side input is an integer [batch] tensor, got {self.dtype} "
                                f"{self.shape}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class StatePort:
    """A state carried between steps: fed through ``name`` (``X_in``), returned by ``output`` (``X_out``).

    Card side (torch-free); its torch-side twin is :class:`stateport.nn.protocol.StateDecl`.

    ``init`` is the fill value of a fresh state; ``batch_axis`` is where streams stack
    (it differs between states in real models); ``reset_on_end_of_speech`` says whether a
    client clears this state when the VAD reports the end of an utterance.

    ``batch_uniform``: the model keeps one value for the whole batch (a counter, the valid
    length of a buffer); the graph reads the first row along ``batch_axis`` and writes it to
    every row, so a client may batch streams only while their values of this state are equal
    (e.g. once every stream is past its warm-up). ``valid_length_state`` (on a fixed-size
    buffer standing for a state that starts empty and grows to a maximum) names the integer
    state counting its valid entries: the last ``n`` along ``grow_axis``.
    """

    name: str
    output: str
    shape: list
    batch_axis: int
    dtype: str = "float32"
    init: float = 0.0
    reset_on_end_of_speech: bool = True
    description: str = ""
    role: str = "state"
    batch_uniform: bool = False
    valid_length_state: str | None = None
    grow_axis: int | None = None

    def __post_init__(self):
        check_port_name(self.name)
        check_port_name(self.output)
        if not self.name.endswith(STATE_IN_SUFFIX) or \
                self.output != self.name[: -len(STATE_IN_SUFFIX)] + STATE_OUT_SUFFIX:
            raise PortNameError(
                f"state ports {self.name!r} -> {self.output!r} break the naming rule: "
                f"expected NAME{STATE_IN_SUFFIX} -> NAME{STATE_OUT_SUFFIX}")
        self.shape = _check_shape(self.shape, f"state {self.name!r}")
        _check_dtype(self.dtype, f"state {self.name!r}")
        if not 0 <= self.batch_axis < len(self.shape):
            raise CardError(f"state {self.name!r}: batch_axis {self.batch_axis} outside shape {self.shape}")
        if not math.isfinite(float(self.init)):
            raise CardError(f"state {self.name!r}: init must be a finite number")
        if (self.valid_length_state is None) != (self.grow_axis is None):
            raise CardError(f"state {self.name!r}: valid_length_state and grow_axis go together")
        if self.grow_axis is not None and not 0 <= self.grow_axis < len(self.shape):
            raise CardError(f"state {self.name!r}: grow_axis {self.grow_axis} outside shape {self.shape}")

    @property
    def state_name(self) -> str:
        return self.name[: -len(STATE_IN_SUFFIX)]

    def concrete_shape(self, batch: int) -> tuple[int, ...]:
        """The shape of this state for ``batch`` streams; every other dim must be an int."""
        dims = []
        for axis, d in enumerate(self.shape):
            if axis == self.batch_axis:
                dims.append(batch)
            elif isinstance(d, int):
                dims.append(d)
            else:
                raise CardError(f"state {self.name!r}: dimension {d!r} on axis {axis} is symbolic; "
                                "only the batch axis may be")
        return tuple(dims)

    def numel_per_stream(self) -> int:
        return math.prod(self.concrete_shape(1))

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class StreamingSpec:
    """How audio maps to steps.

    Card side (torch-free); its torch-side twin is :class:`stateport.nn.protocol.StreamingConfig`.

    A step consumes ``frames_per_step`` feature frames (the nominal chunk) and advances the
    stream by ``frames_advanced_per_step`` (smaller when chunks overlap for look-ahead).
    Chunk lengths must be a multiple of ``frame_multiple`` (e.g. the subsampling factor) and at
    least ``min_frames``; a static export takes exactly ``frames_per_step``. With look-ahead,
    the multiple counts the frames a step advances over (a chunk is ``lookahead_frames`` plus
    a multiple) and ``min_frames`` the whole chunk. ``frames_per_step``
    of 0 means the input has no time axis (one frame per call, e.g. an LSTMCell step).

    ``chunk_exact``: the model equals its offline reference only when every step advances
    exactly ``frames_advanced_per_step`` frames (e.g. attention masked in fixed chunks); only the
    last chunk of a stream may be shorter. With ``lookahead_frames`` R, a step takes its
    chunk plus the next R frames and advances by the chunk alone; its outputs cover the chunk.

    ``tail_padding_ms`` is the end-of-input contract: how much trailing silence a client feeds
    (as audio, through the frontend) after the last sample so that the model emits everything
    it heard (a causal CTC model emits a word up to a few hundred ms after it ends).
    ``tail_padding_basis`` says how it was measured (``stateport.verify.tail``). Absent on older
    cards: clients then fall back to the receptive field the card implies.
    """

    sample_rate_hz: int
    frame_hop_samples: int
    frames_per_step: int
    frames_advanced_per_step: int
    frame_multiple: int = 1
    min_frames: int = 1
    lookahead_frames: int = 0
    subsampling: int = 1
    static: bool = False
    frontend_window_samples: int = 0
    algorithmic_latency_ms: float = 0.0
    chunk_exact: bool = False
    tail_padding_ms: float | None = None
    tail_padding_basis: str = ""

    def __post_init__(self):
        for k in ("sample_rate_hz", "frame_hop_samples", "frame_multiple", "subsampling"):
            if int(getattr(self, k)) <= 0:
                raise CardError(f"streaming.{k} must be positive, got {getattr(self, k)}")
        if self.tail_padding_ms is not None:
            t = self.tail_padding_ms
            if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or not 0 <= t <= 60_000:
                raise CardError(f"streaming.tail_padding_ms must be a number of milliseconds in [0, 60000], got {t!r}")
            self.tail_padding_ms = float(t)
        if not self.algorithmic_latency_ms:
            self.algorithmic_latency_ms = self.compute_latency_ms()

    @property
    def frame_hop_ms(self) -> float:
        return 1000.0 * self.frame_hop_samples / self.sample_rate_hz

    def compute_latency_ms(self) -> float:
        """Algorithmic latency: waiting for a full chunk plus look-ahead plus the frontend window.

        A sound at the start of a chunk can influence an output only once the chunk and its
        look-ahead frames are complete; each frame also needs its analysis window filled.
        """
        frames = max(self.frames_per_step, 1) + self.lookahead_frames
        extra_window = max(self.frontend_window_samples - self.frame_hop_samples, 0)
        return round(1000.0 * (frames * self.frame_hop_samples + extra_window) / self.sample_rate_hz, 3)

    def check_chunk_frames(self, frames: int) -> str | None:
        """Why a chunk of ``frames`` frames is not acceptable, or None when it is."""
        if self.frames_per_step == 0:
            return None
        if self.static and frames != self.frames_per_step:
            return f"this static export takes exactly {self.frames_per_step} frames per step"
        if frames < self.min_frames:
            return f"a chunk needs at least {self.min_frames} frames"
        if (frames - self.lookahead_frames) % self.frame_multiple:
            if self.lookahead_frames:  # the multiple counts the frames a step advances over
                return (f"chunk length must be {self.lookahead_frames} look-ahead frames plus a multiple of "
                        f"{self.frame_multiple} frames")
            return f"chunk length must be a multiple of {self.frame_multiple} frames"
        if self.chunk_exact and frames > self.frames_per_step:
            return (f"this model takes exactly {self.frames_per_step} frames per step (a shorter chunk only at "
                    "the end of a stream)")
        return None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class OutputSpec:
    """What the main output means and how to decode it."""

    kind: str = "raw"
    port: str = ""
    vocabulary: list = field(default_factory=list)
    blank_id: int | None = None

    def __post_init__(self):
        if self.kind not in OUTPUT_KINDS:
            raise CardError(f"output.kind {self.kind!r} is not one of {', '.join(OUTPUT_KINDS)}")
        if self.blank_id is not None and self.vocabulary and not 0 <= self.blank_id < len(self.vocabulary):
            raise CardError(f"output.blank_id {self.blank_id} outside the vocabulary of {len(self.vocabulary)}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Provenance:
    """Where the artifact came from, and how to rebuild its torch reference for ``verify``."""

    stateport_version: str
    architecture: str
    size: str | None = None
    graph: str | None = None  # which graph of a multi-graph architecture (e.g. a transducer's "joiner")
    config: dict = field(default_factory=dict)
    init_seed: int | None = None
    checkpoint_sha256: str | None = None
    module: str | None = None
    precision: str = "fp32"
    quantization: dict | None = None
    backend: str = "onnx"
    exporter: str = ""
    opset: int | None = None
    torch_version: str = ""
    parameters: int | None = None
    created_utc: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ModelCard:
    """The whole card. Graph inputs are ``inputs`` then state inputs; outputs likewise.

    ``constants`` records the values bound into the graph at export (e.g. ``{"sr": 16000}``
    for a model whose forward takes a sample rate): nothing to feed, but the graph holds only
    for them.
    """

    name: str
    inputs: list
    outputs: list
    states: list
    streaming: StreamingSpec
    output: OutputSpec
    provenance: Provenance
    frontend: dict | None = None
    certificate: dict | None = None
    schema: str = SCHEMA
    constants: dict | None = None

    def __post_init__(self):
        self.validate()

    # -- structure ---------------------------------------------------------------------
    def validate(self) -> None:
        seen: dict[str, str] = {}
        for role, name in self.iter_port_names():
            if name in seen:
                raise PortNameError(f"port name {name!r} is used twice (as {seen[name]} and as {role}); "
                                    "every port needs its own name")
            seen[name] = role
        if self.output.port and self.output.port not in self.output_names:
            raise CardError(f"output.port {self.output.port!r} is not an output of this model")
        state_names = {s.state_name for s in self.states}
        for s in self.states:
            if s.valid_length_state is not None and s.valid_length_state not in state_names:
                raise CardError(f"state {s.name!r}: valid_length_state {s.valid_length_state!r} is not a state of "
                                "this model")
        if self.audio_input:
            p = self.inputs[0] if len(self.inputs) == 1 else None
            if p is None or p.dtype != "float32" or len(p.shape) != 2 or p.time_axis != 1:
                raise CardError("an audio-in card (frontend.in_graph) needs one float32 input [batch, samples] "
                                "with the time axis 1")

    @property
    def audio_input(self) -> bool:
        """Whether the graph computes its own features: it takes PCM samples, not frames.

        Then the input's time axis counts samples at ``streaming.sample_rate_hz`` (float32 in
        [-1, 1], any number >= ``streaming.min_frames`` per call), ``streaming`` counts in samples
        (``frame_hop_samples`` 1), and ``frontend`` describes what the graph computes inside.
        """
        return bool(isinstance(self.frontend, dict) and self.frontend.get(FRONTEND_IN_GRAPH))

    @property
    def feature_frontend(self) -> dict | None:
        """The frontend as a FrontendConfig dict (without the ``in_graph`` marker), or None."""
        if not isinstance(self.frontend, dict):
            return None
        return {k: v for k, v in self.frontend.items() if k != FRONTEND_IN_GRAPH}

    def iter_port_names(self):
        for p in self.inputs:
            yield "input", p.name
        for s in self.states:
            yield "state input", s.name
        for p in self.outputs:
            yield "output", p.name
        for s in self.states:
            yield "state output", s.output

    @property
    def input_names(self) -> list[str]:
        """Graph input order: plain inputs, then state inputs."""
        return [p.name for p in self.inputs] + [s.name for s in self.states]

    @property
    def output_names(self) -> list[str]:
        """Graph output order: plain outputs, then state outputs (paired in state order)."""
        return [p.name for p in self.outputs] + [s.output for s in self.states]

    def state(self, name: str) -> StatePort:
        for s in self.states:
            if name in (s.name, s.output, s.state_name):
                return s
        raise KeyError(name)

    def total_state_floats(self) -> int:
        """Per-stream number of state elements."""
        return sum(s.numel_per_stream() for s in self.states)

    # -- serialisation -----------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "schema": self.schema,
            "name": self.name,
            "ports": [p.to_dict() for p in self.inputs] + [s.to_dict() for s in self.states]
            + [p.to_dict() for p in self.outputs],
            "streaming": self.streaming.to_dict(),
            "frontend": self.frontend,
            "output": self.output.to_dict(),
            "provenance": self.provenance.to_dict(),
            "certificate": self.certificate,
            "constants": self.constants,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=None, sort_keys=False, separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict) -> "ModelCard":
        if not isinstance(d, dict):
            raise CardError("the card must be a JSON object")
        schema = d.get("schema")
        if schema != SCHEMA:
            raise CardError(f"card schema {schema!r} is not supported: expected {SCHEMA!r}")
        try:
            inputs, outputs, states = [], [], []
            for p in d["ports"]:
                role = p.get("role")
                if role == "state":
                    states.append(StatePort(**p))
                elif role == "input":
                    inputs.append(TensorPort(**p))
                elif role == "output":
                    outputs.append(TensorPort(**p))
                else:
                    raise CardError(f"port {p.get('name')!r} has unknown role {role!r}")
            return cls(
                name=d["name"], inputs=inputs, outputs=outputs, states=states,
                streaming=StreamingSpec(**d["streaming"]), output=OutputSpec(**d["output"]),
                provenance=Provenance(**d["provenance"]), frontend=d.get("frontend"),
                certificate=d.get("certificate"), schema=schema, constants=d.get("constants"))
        except KeyError as e:
            raise CardError(f"the card lacks the required field {e.args[0]!r}") from None
        except TypeError as e:
            raise CardError(f"the card has an unexpected or missing field: {e}") from None

    @classmethod
    def from_json(cls, text: str) -> "ModelCard":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise CardError(f"the card is not valid JSON: {e}") from None
        return cls.from_dict(d)
