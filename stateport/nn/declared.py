"""Declare a streaming module as its authors wrote it: :func:`declare_step`.

A third-party streaming model keeps its state wherever its authors liked. :func:`declare_step`
turns any module into a :class:`StreamingModule` (what export, the parity proof and the card
understand) from a few lines of declaration, without touching the module's code:

=====================================================  =============================================
where the state lives                                  what you declare
=====================================================  =============================================
arguments returned by the step (``step(x, h, c) ->     ``states={"h": ("batch", 256), "c": ...}``
(y, h, c)``, the seed article's model)
one structured argument (a list per layer, a dict, a   ``states={"states": model.initial_states}``
dataclass), returned or mutated in place               (a structure, or a callable making it)
buffers / attributes on ``self`` (``self.h = ...``)    nothing: found and lifted
a TorchScript module's attributes (``torch.jit.load``)  nothing: lifted from the scripted graph
=====================================================  =============================================

Example (the seed's model)::

    model = declare_step(StreamingLSTM(80, 256),
                         input=("audio_chunk", ("batch", 80)),
                         outputs=["logits"],
                         states={"h": ("batch", 256), "c": ("batch", 256)})

gives ``audio_chunk, h_in, c_in -> logits, h_out, c_out``.

How a declared module is called: ``method(signal, *state_args, **bind, **side_inputs)``: the
signal chunk first, then each declared state argument in order, then constants (``bind``) and
per-call side inputs by keyword. It may return its outputs alone (state updated in place),
outputs followed by the new state arguments in order, or a state under its own name in
``outputs``. ``None`` in ``outputs`` drops a returned value (an attention list).

At declaration the module runs a few example chunks the way its authors run it, and every
piece of state is observed: each tensor in the state arguments (flattened by path,
:mod:`.state_tree`) and each buffer or attribute the step changes (:mod:`.lift`). From that:

- every state becomes a port named by its path (``layers.0.cache`` -> ``layers_0_cache``);
- its batch axis is where its size follows the batch (probed at batch 1 and 2; a batch-1
  buffer is widened on each size-1 axis in turn), or it has none: then it is ``batch_uniform``;
- a state that starts as ``None`` (or empty) starts as zeros when that gives the same outputs,
  otherwise, and for a state that grows to a limit (an attention's left context), it becomes
  a fixed-size buffer of its maximum plus an integer valid-length state; the model is given
  the valid part only (:func:`take_valid`), so it runs exactly as its authors wrote it;
- the lifted step is checked against the module's own loop on the same chunks; any difference
  refuses with what was lifted.

Where something cannot be lifted (a Python number counting steps, an ambiguous batch axis, a
state growing without limit) the error names it and the one declaration that fixes it.
"""

from __future__ import annotations

import inspect
import itertools
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import InvalidInputError, StateportError, UndeclaredStateError, UnsupportedError
from ..spec import BATCH_DIM, TIME_DIM
from . import lift, state_tree
from .protocol import InputSpec, StateDecl, StreamingModule
from .script_lift import lift_script_method, mutated_attributes

_OUTPUT_CHECK = dict(rtol=1e-4, atol=1e-5)


def take_valid(buffer: torch.Tensor, valid_length: torch.Tensor, axis: int) -> torch.Tensor:
    """The valid part of a fixed-size buffer: its last ``valid_length`` entries along ``axis``.

    ``buffer`` e.g. ``[B, max_frames, D]``; ``valid_length`` an int64 ``[B]`` (one value for the
    batch: the first is used) or a scalar. The slice start is a tensor, so it stays dynamic in
    an exported graph. For models that must see a fixed shape instead, see :func:`valid_mask`.
    """
    n = valid_length.reshape(-1)[0]
    index = [slice(None)] * buffer.dim()
    index[axis] = slice(buffer.shape[axis] - n, None)
    return buffer[tuple(index)]


def valid_mask(valid_length: torch.Tensor, max_length: int) -> torch.Tensor:
    """Bool ``[B, max_length]``: True on the last ``valid_length[b]`` positions of row ``b``.

    For a model written against a fixed-size, right-aligned buffer (e.g. an attention cache of
    ``max_length`` frames): pass the inverse as a key padding mask, and every stream of a batch
    may have its own valid length.
    """
    positions = torch.arange(max_length, device=valid_length.device)
    return positions.unsqueeze(0) >= (max_length - valid_length.reshape(-1, 1))


@dataclass
class _Slot:
    """One lifted state: where it lives in the model and the port(s) that carry it."""

    key: tuple  # ("arg", name, path) or ("hidden", attribute path)
    decl: StateDecl
    model_axis: int | None  # the batch axis of the model's tensor; None: one value for the batch
    plain: bool = False  # a seed-style tensor argument: passed as it is
    grow_axis: int | None = None
    max_length: int = 0
    length: StateDecl | None = None  # the valid-length port of a growing state
    none_start: bool = False  # the model's own initial value is None or empty


def _is_shape(value) -> bool:
    return (isinstance(value, (tuple, list)) and BATCH_DIM in value
            and all(isinstance(d, (int, str)) and not isinstance(d, bool) for d in value))


def _key_str(key: tuple) -> str:
    """A state's path for messages and globs: ``context.layers.0.cache`` or ``rnn.h``."""
    if key[0] == "hidden":
        return key[1]
    return ".".join(p for p in (key[1], state_tree.path_str(key[2])) if p)


def _takes_batch(make) -> bool:
    """Whether a callable making an initial state takes the batch size (``f(batch)``, not ``f()``)."""
    return any(p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
               for p in inspect.signature(make).parameters.values())


def _clone(value):
    return value.detach().clone() if isinstance(value, torch.Tensor) else value


def _empty(value) -> bool:
    return value is None or (isinstance(value, torch.Tensor) and value.numel() == 0)


class DeclaredStepModule(StreamingModule):
    """A user's module with its step, state, inputs and reference declared (see the module doc).

    If the input shape has no time dimension (``"T"``), each call takes one frame and the
    offline reference runs the step over every frame of a sequence from a fresh state.
    """

    def __init__(self, module: nn.Module, *, input: tuple, outputs: list, states: dict | None = None,
                 method: str = "forward", bind: dict | None = None, side_inputs: dict | None = None,
                 reference=None, chunk: int | None = None, chunk_exact: bool = False, lookahead: int = 0,
                 streaming: dict | None = None, batch_axes: dict | None = None, grow: dict | None = None,
                 ignore=(), init: dict | None = None, reset_on_end_of_speech: dict | None = None,
                 architecture: str = "custom", probe_steps: int = 16):
        super().__init__()
        self.inner = module.eval()
        name, shape = input
        shape = tuple(shape)
        if BATCH_DIM not in shape or shape.index(BATCH_DIM) != 0:
            raise InvalidInputError(f"input shape {shape} must start with the batch dimension {BATCH_DIM!r}")
        self.input_name = name
        self.input_dim = int(shape[-1])
        self.time_axis = shape.index(TIME_DIM) if TIME_DIM in shape else None
        if self.time_axis not in (None, 1):
            raise InvalidInputError(f"input shape {shape}: the time dimension must be axis 1 ([batch, T, F])")
        self._signal = InputSpec(name, shape, time_axis=self.time_axis)
        self._side = [InputSpec(n, (BATCH_DIM,), torch.int64, side_role=role) for n, role in (side_inputs or {}).items()]
        self._outputs = list(outputs)
        self._state_args = dict(states or {})
        self.output_names = tuple(o for o in outputs if o is not None and o not in self._state_args)
        if not self.output_names:
            raise InvalidInputError("declare at least one output name (None drops a returned value)")
        self._bind = dict(bind or {})
        self.constants = {k: v for k, v in self._bind.items() if isinstance(v, (int, float, str, bool))} or None
        self._reference = reference
        self.architecture = architecture
        self._configure_streaming(chunk, chunk_exact, lookahead, streaming)
        self._script = isinstance(module, torch.jit.ScriptModule)
        self._method_name = method
        self._init = dict(init or {})
        self._resets = dict(reset_on_end_of_speech or {})
        self._setup_hidden(ignore)
        self._plan(probe_steps=probe_steps, batch_axes=dict(batch_axes or {}), grow=dict(grow or {}))

    # -- declaration ---------------------------------------------------------------------
    def _configure_streaming(self, chunk, chunk_exact, lookahead, streaming):
        s = self.streaming
        for key, value in (streaming or {}).items():
            if not hasattr(s, key):
                raise InvalidInputError(f"streaming: unknown setting {key!r}")
            setattr(s, key, value)
        if self.time_axis is None:
            if chunk or lookahead or chunk_exact:
                raise InvalidInputError("chunk, chunk_exact and lookahead need a time axis \"T\" in the input shape")
            s.frames_per_step = 0
            return
        if lookahead < 0 or chunk is not None and chunk < 1:
            raise InvalidInputError(f"chunk ({chunk}) must be positive and lookahead ({lookahead}) not negative")
        if chunk is None and (lookahead or chunk_exact):
            raise InvalidInputError("lookahead and chunk_exact need the chunk: declare_step(..., chunk=FRAMES)")
        if chunk is not None:
            s.frames_per_step = int(chunk) + int(lookahead)
        s.lookahead_frames = int(lookahead)
        s.chunk_exact = bool(chunk_exact)

    def _setup_hidden(self, ignore):
        """Which attributes could hold state: every buffer and plain attribute (Python module),
        or the attributes the scripted step assigns (TorchScript: pinned if plain numbers)."""
        self._ignore = list(ignore)
        self._pinned = {}
        if not hasattr(self.inner, self._method_name):
            raise InvalidInputError(f"{self._model_name} has no method {self._method_name!r} to step with")
        if not self._script:
            self._method = getattr(self.inner, self._method_name)
            self._hidden_candidates = [p for p in lift.candidate_attributes(self.inner)
                                       if not any(state_tree.matches({g: 1}, p) for g in self._ignore)]
            return
        assigned = mutated_attributes(self.inner, self._method_name)
        lifted, refused = [], []
        for attr, typ in assigned.items():
            if typ == "Tensor" and "." not in attr:
                lifted.append(attr)
            elif typ in ("int", "float", "bool", "NoneType") and "." not in attr:
                self._pinned[attr] = getattr(self.inner, attr)
            else:
                refused.append(f"{attr} ({typ})")
        if refused:
            raise UndeclaredStateError(
                f"the TorchScript module's {self._method_name}() assigns {', '.join(refused)}: only Tensor "
                "attributes of the module itself can be lifted to state ports and plain numbers held at their "
                "value; export the Python module it was scripted from instead")
        self._hidden_candidates = lifted
        self._lifted_fn = lift_script_method(self.inner, self._method_name, lifted, self._pinned)
        self._script_params = [a.name for a in self._lifted_fn.schema.arguments][: -len(lifted) or None]

    def _initial(self, arg: str, batch: int):
        """The initial value of state argument ``arg`` for ``batch`` streams, as declared."""
        decl = self._state_args[arg]
        if _is_shape(decl):
            shape = tuple(batch if d == BATCH_DIM else int(d) for d in decl)
            return torch.full(shape, float(self._init.get(arg, 0.0)))
        if callable(decl):
            return decl(batch) if _takes_batch(decl) else decl()
        return state_tree.rebuild(decl, {})

    def _constructed_hidden(self) -> dict:
        return {p: self._read_attr(p) for p in self._hidden_candidates}

    def _read_attr(self, path):
        return getattr(self.inner, path) if self._script else lift.read(self.inner, path)

    def _write_attr(self, path, value):
        if self._script:
            setattr(self.inner, path, value)
        else:
            lift.write(self.inner, path, value)

    # -- the module's own loop (state kept the way its authors keep it) ------------------
    def _example_step(self, k: int, batch: int, seed: int) -> tuple:
        """Example inputs of probe step ``k``: the signal, then one value per side input.

        Row ``r`` of a batch is the batch-1 example of ``seed + r``, so each stream of a batched
        run can be compared with the same stream run alone.
        """
        spec = self._signal
        frames = max(self.streaming.frames_per_step, 1)
        x = torch.cat([spec.random(spec.concrete_shape(1, frames), torch.Generator().manual_seed(1000 * (seed + r) + k))
                       for r in range(batch)])
        advance = frames - self.streaming.lookahead_frames
        return (x, *(s.side_value(batch, frames, k * advance) for s in self._side))

    def _call_original(self, xs: tuple, structs: dict):
        """One call of the user's step as its authors run it; returns ``(outputs, structs)``."""
        side = {s.name: v for s, v in zip(self._side, xs[1:])}
        method = getattr(self.inner, self._method_name) if self._script else self._method
        return self._parse_return(method(xs[0], *structs.values(), **self._bind, **side), structs)

    def _parse_return(self, ret, structs: dict):
        items = list(ret) if isinstance(ret, (tuple, list)) else [ret]
        named = {name: i for i, name in enumerate(self._outputs) if name in structs}
        rest = [a for a in structs if a not in named]
        declared = len(self._outputs)
        if len(items) == declared + len(rest):
            trailing = dict(zip(rest, items[declared:]))
        elif len(items) == declared:
            trailing = {}  # the rest is updated in place, in the structures passed in
        else:
            raise InvalidInputError(
                f"the module returned {len(items)} values; the declaration expects {declared} "
                f"({', '.join(str(o) for o in self._outputs)}), optionally followed by the new "
                f"{', '.join(rest) or 'state'} ({declared + len(rest)})")
        outputs = []
        for i, name in enumerate(self._outputs):
            if name is None or name in structs:
                continue
            if not isinstance(items[i], torch.Tensor):
                raise InvalidInputError(f"output {name!r} is a {type(items[i]).__name__}, not a tensor: name it None "
                                        "in outputs to drop it")
            outputs.append(items[i])
        new = dict(structs)
        new.update({a: items[i] for a, i in named.items()})
        new.update(trailing)
        return tuple(outputs), new

    def _observe(self, steps: int, batch: int, *, seed: int = 0, start: dict | None = None, stop_when_stable=False):
        """Run the module's own loop for up to ``steps`` example chunks.

        Returns ``(records, initial)``: per step the outputs and every candidate state value
        (keyed ``("arg", name, path)`` / ``("hidden", path)``); ``start`` overrides initial
        values by key. The module's attributes are restored afterwards.
        """
        start = start or {}
        constructed = self._constructed_hidden()
        structs = {}
        for arg in self._state_args:
            template = self._initial(arg, batch)
            values = {k[2]: v for k, v in start.items() if k[0] == "arg" and k[1] == arg}
            structs[arg] = state_tree.rebuild(template, values) if values else template
        initial = self._flat_state(structs, {p: start.get(("hidden", p), v) for p, v in constructed.items()})
        records = []
        try:
            for p in self._hidden_candidates:
                self._write_attr(p, _clone(start.get(("hidden", p), constructed[p])))
            with torch.no_grad():
                for k in range(steps):
                    xs = self._example_step(k, batch, seed)
                    outputs, structs = self._call_original(xs, structs)
                    raw = {p: self._read_attr(p) for p in self._hidden_candidates}
                    state = self._flat_state(structs, raw)
                    values = {k_: _clone(v) for k_, v in state.items()}
                    # Which object each attribute holds, and its in-place version: a state may be
                    # reassigned or updated every step without its value changing (a latch).
                    values.update({("mark", p): (v, v._version) for p, v in raw.items() if isinstance(v, torch.Tensor)})
                    records.append((tuple(o.detach().clone() for o in outputs), values))
                    if stop_when_stable and k >= 3 and all(
                            _shape_of(records[-1][1][key]) == _shape_of(records[-2][1][key]) ==
                            _shape_of(records[-3][1][key]) for key in records[-1][1] if key[0] != "mark"):
                        break
        finally:
            for p, v in {**constructed, **self._pinned}.items():
                self._write_attr(p, v)
        return records, initial

    def _flat_state(self, structs: dict, hidden: dict) -> dict:
        flat = {}
        for arg, st in structs.items():
            for path, value in state_tree.flatten(st):
                flat[("arg", arg, path)] = value
        flat.update({("hidden", p): v for p, v in hidden.items()})
        return flat

    # -- planning: from observations to ports ---------------------------------------------
    def _plan(self, *, probe_steps: int, batch_axes: dict, grow: dict):
        try:
            records, initial = self._observe(probe_steps, 1, stop_when_stable=True)
        except StateportError:
            raise
        except Exception as e:  # the user's module raises anything on a call it was not written for
            raise InvalidInputError(
                f"calling {self._model_name}.{self._method_name}({self._call_description()}) on an example "
                f"chunk failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}. Its signature is "
                f"{self._method_name}{self._signature()}; declare in states= only the state arguments it takes after "
                "the input (state kept on self needs no declaration), constants in bind=, side inputs in side_inputs="
            ) from e
        steps = len(records)
        keys = self._state_keys(records, initial)
        axes = self._batch_axes(keys, records, initial, steps, batch_axes)
        slots = []
        for key in keys:
            slots.append(self._make_slot(key, initial[key], [r[1][key] for r in records], axes[key], grow))
        self._slots = slots
        self._finish_slots()
        mismatch = self._check_lift(records)
        if mismatch and any(s.none_start and s.grow_axis is None for s in self._slots):
            # zeros are not the model's empty start: carry those states with a valid length instead
            self._slots = [self._as_growing(s, records) if s.none_start and s.grow_axis is None else s
                           for s in self._slots]
            self._finish_slots()
            mismatch = self._check_lift(records)
        if mismatch:
            lifted = ", ".join(f"{_key_str(s.key)} -> {s.decl.name}" for s in self._slots) or "none"
            raise UndeclaredStateError(
                f"{self._model_name}: the lifted step differs from the module's own loop at step "
                f"{mismatch[0]} ({mismatch[1]}); states lifted: {lifted}. Some state is kept where stateport did "
                "not see it (declare it in states=...), or its initial value is not what the module starts from")

    @property
    def _model_name(self) -> str:
        """The user's class name (a TorchScript module keeps it as ``original_name``)."""
        return getattr(self.inner, "original_name", None) or type(self.inner).__name__

    def _call_description(self) -> str:
        parts = [self.input_name, *self._state_args, *(f"{k}=..." for k in self._bind),
                 *(f"{s.name}=..." for s in self._side)]
        return ", ".join(parts)

    def _signature(self) -> str:
        if self._script:
            return "(" + ", ".join(a.name for a in self._lifted_fn.schema.arguments[: len(self._script_params)]) + ")"
        try:
            return str(inspect.signature(self._method))
        except (TypeError, ValueError):
            return "(...)"

    def _state_keys(self, records, initial) -> list:
        """The keys that are state: every tensor (or None-that-fills) leaf of the state arguments,
        and every attribute that still changes after the first step (a value set once is a cache)."""
        keys, numbers = [], []
        last = records[-1][1]
        for key in last:
            if key[0] == "mark":
                continue
            values = [initial[key]] + [r[1][key] for r in records]
            if key[0] == "arg":
                if isinstance(last[key], torch.Tensor):
                    keys.append(key)
                elif not all(lift.same_value(values[1], v) for v in values[2:]):
                    raise UndeclaredStateError(
                        f"state {_key_str(key)} is a {type(last[key]).__name__} that changes every step "
                        f"({' -> '.join(state_tree.describe(v) for v in values[:4])}): tracing would freeze it. "
                        "Keep it in a tensor in the state structure")
                continue
            marks = [r[1].get(("mark", key[1])) for r in records]
            if any(not lift.same_value(values[k], values[k + 1]) for k in range(1, len(values) - 1)) or any(
                    m is None or n is None or m[0] is not n[0] or m[1] != n[1] for m, n in zip(marks, marks[1:])
                    if isinstance(last[key], torch.Tensor)):
                if isinstance(last[key], torch.Tensor):
                    keys.append(key)
                elif key[1] not in self._pinned:
                    numbers.append(f"'{key[1]}' ({' -> '.join(state_tree.describe(v) for v in values[:4])})")
        if numbers:
            first = numbers[0].split("'")[1]
            owner, _, attr = first.rpartition(".")
            raise UndeclaredStateError(
                f"{self._model_name} changes attribute(s) {', '.join(numbers)} every step; tracing freezes "
                f"a Python number. Keep it in a tensor buffer (self.register_buffer('{attr}', "
                f"torch.zeros((), dtype=torch.long)) in {owner or 'the module'}), or, if no output depends on "
                f"it, declare_step(..., ignore=[{first!r}])")
        return keys

    def _batch_axes(self, keys, records, initial, steps, declared) -> dict:
        """Each state's batch axis in the model's tensor (None: one value for the whole batch).

        Declared shapes and ``batch_axes`` say it; otherwise the module runs the same steps at
        batch 2 and the axis whose size went from 1 to 2 is it. A state that starts as a batch-1
        tensor (a ``register_buffer('h', zeros(1, 1, 64))``) is widened along each of its size-1
        axes in turn until a batch-2 run works and its first row equals the batch-1 run.
        """
        axes = {}
        for key in keys:
            glob = state_tree.matches(declared, _key_str(key))
            if key[0] == "arg" and key[2] == () and _is_shape(self._state_args[key[1]]):
                axes[key] = list(self._state_args[key[1]]).index(BATCH_DIM)
            elif glob is not None:
                axes[key] = None if glob == "uniform" else int(glob)
        if all(k in axes for k in keys):
            return axes
        # Initial tensors made for one stream by the module itself: widen them to batch 2.
        fixed = [k for k in keys if isinstance(initial[k], torch.Tensor) and not _empty(initial[k])
                 and not (k[0] == "arg" and self._batch_aware(k[1]))]
        options = []
        for k in fixed:
            if k in axes:
                options.append([axes[k]])
            else:
                options.append([a for a, n in enumerate(initial[k].shape) if n == 1] + [None])
        # Each stream of a batch-2 run must equal the same stream alone: row 0 is the probe's
        # stream, row 1 another one, run alone here.
        reference = [r[0] for r in records]
        alone = [r[0] for r in self._observe(steps, 1, seed=1, start={k: initial[k] for k in fixed})[0]]
        failure = None
        for combo in itertools.islice(itertools.product(*options), 64):
            start = {k: initial[k] if a is None else initial[k].repeat_interleave(2, dim=a) for k, a in zip(fixed, combo)}
            try:
                wide, _ = self._observe(steps, 2, start=start)
            except Exception as e:  # the user's module raises anything for a wrong guess
                failure = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                continue
            if not all(torch.allclose(o[row:row + 1], r_o, **_OUTPUT_CHECK) for row, runs in enumerate((reference, alone))
                       for (outs, _), ref in zip(wide, runs) for o, r_o in zip(outs, ref)):
                failure = "a stream run in a batch of 2 differs from the same stream run alone"
                continue
            found = dict(axes)
            ok = True
            for key in keys:
                if key in found:
                    continue
                one, two = records[-1][1][key].shape, wide[-1][1][key].shape
                diff = [a for a, (m, n) in enumerate(zip(one, two)) if m != n]
                if len(one) != len(two) or len(diff) > 1 or diff and (one[diff[0]], two[diff[0]]) != (1, 2):
                    ok, failure = False, f"state {_key_str(key)} has shape {tuple(one)} at batch 1, {tuple(two)} at 2"
                    break
                found[key] = diff[0] if diff else None
            if ok:
                return found
        names = ", ".join(f"{_key_str(k)} {tuple(initial[k].shape) if k in fixed else ''}".strip()
                          for k in keys if k not in axes)
        first = next(k for k in keys if k not in axes)
        guess = next((a for a, n in enumerate(getattr(initial[first], "shape", ())) if n == 1), 0)
        raise UndeclaredStateError(
            f"cannot tell the batch axis of state {names} ({failure}). Declare it, e.g. "
            f"declare_step(..., batch_axes={{{_key_str(first)!r}: {guess}}}), or \"uniform\" for one value shared "
            "by the batch")

    def _batch_aware(self, arg: str) -> bool:
        """Whether the declaration of ``arg`` makes its initial value for any batch."""
        decl = self._state_args[arg]
        return _is_shape(decl) or callable(decl) and _takes_batch(decl)

    def _make_slot(self, key, start, values, axis, grow) -> _Slot:
        path = _key_str(key)
        final = values[-1]
        if any(not isinstance(v, torch.Tensor) for v in values):
            raise UndeclaredStateError(f"state {path} is sometimes a tensor and sometimes "
                                       f"{next(state_tree.describe(v) for v in values if not isinstance(v, torch.Tensor))}")
        shapes = [tuple(v.shape) for v in values]
        if len({len(s) for s in shapes}) != 1:
            raise UndeclaredStateError(f"state {path} changes rank between steps: {shapes[:4]}")
        varying = [a for a in range(len(final.shape)) if len({s[a] for s in shapes}) > 1]
        declared_max = state_tree.matches(grow, path)
        if len(varying) > 1 or varying and axis in varying:
            raise UndeclaredStateError(f"state {path} changes shape along several axes: {shapes[:4]}")
        plain = key[0] == "arg" and key[2] == () and _is_shape(self._state_args[key[1]])
        name = self._port_name(key)
        if varying or declared_max is not None:
            grow_axis = varying[0] if varying else (declared_max[0] if isinstance(declared_max, tuple) else None)
            if grow_axis is None:
                raise InvalidInputError(f"grow={{{path!r}: ...}}: the state does not grow here, so give its axis too: "
                                        f"(axis, max_length)")
            limit = declared_max[1] if isinstance(declared_max, tuple) else declared_max
            if limit is None:
                if shapes[-1] != shapes[-2]:
                    raise UndeclaredStateError(
                        f"state {path} grows without a limit over {len(values)} steps (size {shapes[0][grow_axis]} -> "
                        f"{shapes[-1][grow_axis]} on axis {grow_axis}); an edge runtime needs a fixed size. Declare "
                        f"the most it needs, e.g. declare_step(..., grow={{{path!r}: {shapes[-1][grow_axis] * 2}}}): "
                        "a buffer of that size keeps the latest entries, so the model sees at most that many")
                limit = shapes[-1][grow_axis]
            slot = _Slot(key, None, axis, grow_axis=grow_axis, max_length=int(limit), none_start=_empty(start))
            self._decl_for(slot, name, final, start)
            return slot
        slot = _Slot(key, None, axis, plain=plain, none_start=_empty(start))
        self._decl_for(slot, name, final, start)
        return slot

    def _as_growing(self, slot: _Slot, records) -> _Slot:
        """A state that must start empty: a buffer of its usual size with a valid length (0 at first)."""
        final = records[-1][1][slot.key]
        axis = next(a for a in range(final.dim()) if a != slot.model_axis)
        new = _Slot(slot.key, None, slot.model_axis, grow_axis=axis, max_length=int(final.shape[axis]), none_start=True)
        self._decl_for(new, slot.decl.name, final, None)
        return new

    def _decl_for(self, slot: _Slot, name: str, final: torch.Tensor, start) -> None:
        """The port declaration(s) of a slot, from the steady value ``final`` (batch 1)."""
        shape = list(final.shape)
        if slot.grow_axis is not None:
            shape[slot.grow_axis] = slot.max_length
        if slot.model_axis is None:
            shape = [BATCH_DIM] + shape
        else:
            shape[slot.model_axis] = BATCH_DIM
        fill = float(self._init.get(name, 0.0))
        if isinstance(start, torch.Tensor) and not _empty(start):
            values = start.flatten()
            if not bool((values == values[0]).all()):
                raise UnsupportedError(f"state {_key_str(slot.key)} starts with values that are not one constant; "
                                       "the card stores one initial fill value per state")
            fill = values[0].item()
        resets = state_tree.matches(self._resets, name)
        port_axis = None if slot.grow_axis is None else slot.grow_axis + (1 if slot.model_axis is None else 0)
        start_length = 0 if _empty(start) or slot.grow_axis is None else int(start.shape[slot.grow_axis])
        slot.decl = StateDecl(name, tuple(shape), init=fill, dtype=final.dtype,
                              reset_on_end_of_speech=True if resets is None else bool(resets),
                              batch_uniform=slot.model_axis is None,
                              valid_length_state=f"{name}_valid" if port_axis is not None else None,
                              grow_axis=port_axis, description="" if slot.plain else f"lifted from {_key_str(slot.key)}")
        if port_axis is not None:
            slot.length = StateDecl(f"{name}_valid", (BATCH_DIM,), init=start_length, dtype=torch.int64,
                                    reset_on_end_of_speech=slot.decl.reset_on_end_of_speech, batch_uniform=True,
                                    description=f"valid entries of {name} (its last n along axis {port_axis})")

    def _port_name(self, key) -> str:
        if key[0] == "hidden":
            return state_tree.port_name(key[1])
        if key[2] == ():
            return key[1] if _is_shape(self._state_args[key[1]]) else state_tree.port_name(key[1])
        return state_tree.port_name(key[1], state_tree.path_str(key[2]))

    def _finish_slots(self):
        self._decls = []
        for s in self._slots:
            self._decls.append(s.decl)
            if s.length is not None:
                self._decls.append(s.length)
        self._hidden_slots = [s for s in self._slots if s.key[0] == "hidden"]
        self._arg_templates = {arg: self._initial(arg, 1) for arg in self._state_args}

    def _check_lift(self, records):
        """Step the lifted module over the probe's chunks from its initial ports; the first
        ``(step, what)`` whose outputs differ from the module's own loop, or None.

        Once a state outgrows a maximum the user declared, the buffer keeps only the latest
        entries (as declared), so later steps are not compared.
        """
        state = self.init_state(1)
        warm = None
        with torch.no_grad():
            for k, (outputs, observed) in enumerate(records):
                out = self.step(*self._example_step(k, 1, 0), *state)
                n = len(self.output_names)
                truncated = any(s.grow_axis is not None and observed[s.key].shape[s.grow_axis] > s.max_length
                                for s in self._slots)
                for name, got, want in zip(self.output_names, out[:n], () if truncated else outputs):
                    if got.shape != want.shape or not torch.allclose(got, want, **_OUTPUT_CHECK):
                        d = (got - want).abs().max().item() if got.shape == want.shape else None
                        return k, f"output {name!r} " + (f"differs by {d:.3g}" if d is not None else
                                                          f"has shape {tuple(got.shape)}, not {tuple(want.shape)}")
                state = tuple(t.detach().clone() for t in out[n:])
                warm = state
        self._warm = list(warm) if warm is not None else None
        return None

    # -- the protocol -----------------------------------------------------------------------
    def input_specs(self) -> list[InputSpec]:
        return [self._signal, *self._side]

    def state_decls(self):
        return list(self._decls)

    def lifted_modules(self) -> list:
        return [self.inner]

    def trace_state(self, batch: int):
        """A state past the warm-up (from the declaration's probe), so no buffer is traced empty."""
        if self._warm is None:
            return self.init_state(batch)
        return tuple(w if batch == 1 else w.repeat_interleave(batch, dim=d.batch_axis)
                     for w, d in zip(self._warm, self._decls))

    def _model_value(self, slot: _Slot, ports: dict):
        t = ports[slot.decl.name]
        if slot.grow_axis is not None:
            t = take_valid(t, ports[slot.length.name], slot.decl.grow_axis)
        if slot.model_axis is None:
            t = t[0]
        return t if slot.plain else t.clone()

    def _port_values(self, slot: _Slot, value, ports: dict, batch) -> list:
        if not isinstance(value, torch.Tensor):
            raise UndeclaredStateError(f"state {_key_str(slot.key)} came back as {state_tree.describe(value)}")
        if slot.grow_axis is not None:
            buffer_in, length_in = ports[slot.decl.name], ports[slot.length.name]
            if slot.model_axis is None:
                value = value.unsqueeze(0).expand(buffer_in.shape[0], *value.shape)
            axis = slot.decl.grow_axis
            joined = torch.cat([torch.zeros_like(buffer_in), value.to(buffer_in.dtype)], dim=axis)
            index = [slice(None)] * joined.dim()
            index[axis] = slice(-slot.max_length, None)
            length = (torch.zeros_like(length_in) + value.shape[axis]).clamp(max=slot.max_length)
            return [joined[tuple(index)], length]
        if slot.model_axis is None:
            value = value.unsqueeze(0).expand(batch, *value.shape)
        return [value]

    def step(self, x, *rest):
        """One chunk: ``(signal, *side_inputs, *state ports) -> (*outputs, *state ports)``."""
        side = dict(zip((s.name for s in self._side), rest[: len(self._side)]))
        states = rest[len(self._side):]
        if len(states) != len(self._decls):
            raise InvalidInputError(f"expected {len(self._decls)} state tensors, got {len(states)}")
        ports = {d.name: t for d, t in zip(self._decls, states)}
        values = {s.key: self._model_value(s, ports) for s in self._slots}
        structs = {arg: state_tree.rebuild(template, {k[2]: v for k, v in values.items()
                                                      if k[0] == "arg" and k[1] == arg})
                   for arg, template in self._arg_templates.items()}
        hidden = [values[s.key] for s in self._hidden_slots]
        if self._script:
            outputs, structs, hidden = self._call_script(x, side, structs, hidden)
        else:
            with lift.Swap(self.inner, [s.key[1] for s in self._hidden_slots], hidden) as swap:
                ret = self._method(x, *structs.values(), **self._bind, **side)
                hidden = swap.read()
            outputs, structs = self._parse_return(ret, structs)
        new = self._flat_state(structs, dict(zip((s.key[1] for s in self._hidden_slots), hidden)))
        out_states = []
        for slot in self._slots:
            out_states += self._port_values(slot, new[slot.key], ports, x.shape[0])
        return (*outputs, *out_states)

    def _call_script(self, x, side, structs, hidden):
        """The lifted ScriptFunction: the scripted forward's arguments in order, then the lifted state."""
        given = dict(zip(self._script_params, (x, *structs.values())))
        given.update(self._bind)
        given.update(side)
        args = []
        for a in self._lifted_fn.schema.arguments[: len(self._script_params)]:
            if a.name in given:
                args.append(given[a.name])
            elif a.has_default_value():
                args.append(a.default_value)
            else:
                raise InvalidInputError(f"the scripted forward's argument {a.name!r} is neither an input nor bound: "
                                        f"declare_step(..., bind={{{a.name!r}: ...}})")
        ret, lifted = self._lifted_fn(*args, *hidden)
        outputs, structs = self._parse_return(ret, structs)
        return outputs, structs, list(lifted)

    def forward(self, x, *side):
        """The offline reference: the declared one, else the step over the whole input from a
        fresh state (in nominal chunks for a chunk-exact model, frame by frame if frame-wise)."""
        if self._reference is not None:
            kw = dict(zip((s.name for s in self._side), side))
            out = self._reference(x, **kw)
            return tuple(out) if isinstance(out, (tuple, list)) else (out,)
        if self.time_axis is not None and not self.streaming.chunk_exact:
            return super().forward(x, *side)
        return self._stream_whole(x)

    def _stream_whole(self, x):
        """Step from a fresh state over ``x`` [B, N, ...]: one frame at a time when frame-wise,
        else in nominal chunks (plus look-ahead), outputs joined on the time axis."""
        s = self.streaming
        frame_wise = self.time_axis is None
        advance = 1 if frame_wise else s.frames_per_step - s.lookahead_frames
        total = x.shape[1] - (0 if frame_wise else s.lookahead_frames)
        state = self.init_state(x.shape[0])
        pieces = []
        for a in range(0, total, advance):
            chunk = x[:, a] if frame_wise else x[:, a:a + advance + s.lookahead_frames]
            frames = 1 if frame_wise else chunk.shape[1]
            side = [spec.side_value(x.shape[0], frames, a) for spec in self._side]
            out = self.step(chunk, *side, *state)
            pieces.append(out[: len(self.output_names)])
            state = out[len(self.output_names):]
        joined = []
        for i in range(len(self.output_names)):
            parts = [p[i] for p in pieces]
            joined.append(torch.stack(parts, dim=1) if frame_wise else torch.cat(parts, dim=1))
        return tuple(joined)


def declare_step(module: nn.Module, *, input: tuple, outputs: list, states: dict | None = None,
                 **kw) -> DeclaredStepModule:
    """Declare how a streaming module is called and where its state lives; see the module docstring.

    ``input``: ``(name, shape)`` of the signal, ``"batch"`` first, ``"T"`` on the time axis
    (absent: one frame per call). ``outputs``: a name per returned value (None drops it; a state
    argument's name takes its new value). ``states``: state arguments after the signal, each a
    shape with ``"batch"`` (a tensor returned after the outputs), a structure of tensors, or a
    callable making it (``f(batch)`` or ``f()``); buffers and attributes need no entry.

    Keywords: ``method`` (the step, default ``"forward"``); ``bind`` constants passed by keyword
    (``{"sr": 16000}``: recorded in the card); ``side_inputs`` ``{argument: role}`` per-call
    integer inputs (roles: ``chunk_length``, ``stream_offset``); ``reference`` the offline
    reference ``f(signal, **side_inputs) -> outputs`` when the step over the whole input is not
    one; ``chunk`` frames advanced per step, ``chunk_exact`` (only that chunk is valid),
    ``lookahead`` right-context frames each step also takes; ``streaming`` other
    :class:`StreamingConfig` fields; the fixes the errors name: ``batch_axes``
    ``{path: axis | "uniform"}``, ``grow`` ``{path: max_length | (axis, max_length)}``,
    ``ignore`` attribute paths that change but are not state; ``init`` and
    ``reset_on_end_of_speech`` per state port name; ``architecture`` for the card.
    """
    return DeclaredStepModule(module, input=input, outputs=outputs, states=states, **kw)


def _shape_of(value):
    return tuple(value.shape) if isinstance(value, torch.Tensor) else None
