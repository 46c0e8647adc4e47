"""Drive a stateport ONNX file from its card alone: state init, pairing, checks, the step.

numpy + onnxruntime only. :class:`OnnxStepSession` exposes the model as the pure function
``run(x, state) -> (outputs, new_state)``; every input is checked against the card before
it reaches ONNX Runtime, so a wrong shape gives a one-line error that says what was expected
instead of a stack trace from inside the runtime, and a failed call never loses the state.
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import ChunkLengthError, InvalidInputError, NonFiniteInputError, StateShapeError
from ..spec import ModelCard
from .model_file import card_from_metadata
from .trust import Trust, certificate_status, check_trust, graph_ports

OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")


def make_ort_session(model: str | os.PathLike | bytes, *, threads: int = 1, optimization: str = "all",
                     profile_prefix: str | None = None):
    """An onnxruntime CPU InferenceSession with ``threads`` intra-op threads.

    ``profile_prefix``: turn on ONNX Runtime's per-op profiling, its JSON trace written under this
    prefix by ``end_profiling()`` (benchmarks/int8_speed.py --profile)."""
    import onnxruntime as ort

    from ..errors import ModelFileError

    if optimization not in OPTIMIZATION_LEVELS:
        raise InvalidInputError(f"optimization {optimization!r}: expected one of {', '.join(OPTIMIZATION_LEVELS)}")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    # Severity 3 hides the warning that state inputs are also initializers: that is by design
    # (it makes them optional), not a problem for the user to fix.
    opts.log_severity_level = 3
    opts.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[optimization]
    if profile_prefix is not None:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    if not isinstance(model, (bytes, bytearray)):
        path = os.fspath(model)
        if not os.path.exists(path):
            raise ModelFileError(f"model file {path!r} does not exist")
        model = path
    try:
        return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own untyped errors for unreadable files
        raise ModelFileError(f"ONNX Runtime cannot load the model: {str(e).splitlines()[0]}") from None


def certified_optimization(card: ModelCard) -> str:
    """The ONNX Runtime graph-optimisation level the card's certificate was proved at, else ``all``."""
    level = (card.certificate or {}).get("ort_graph_optimization") or \
        (card.provenance.quantization or {}).get("ort_graph_optimization")
    return level if level in OPTIMIZATION_LEVELS else "all"


class OnnxStepSession:
    """A stateport model in ONNX Runtime, driven by its card.

    ``run(x, state)`` is pure: it returns new state and never mutates what it was given.
    ``step(x)`` is the stateful convenience for one stream (or a batch of streams).
    """

    def __init__(self, model: str | os.PathLike | bytes, *, threads: int = 1, optimization: str | None = None,
                 card: ModelCard | None = None, allow_uncertified: bool = False, wrap=None,
                 check_graph: bool = True):
        """``optimization`` None: the ONNX Runtime level the card's parity certificate was proved at
        (``all`` without a certificate) — a level the proof never ran may change results (measured
        here: an fp16 graph crashed ONNX Runtime at ``all``).

        Trust on load (:mod:`.trust`): the card is compared with the graph's declared ports and a
        disagreement raises CardGraphMismatchError; a model without a PASSED certificate raises
        UncertifiedModelError unless ``allow_uncertified`` (then ``self.trust`` says so).
        ``check_graph=False`` is for the parity proof alone: it compares card and graph itself (its
        "graph signature" check) and must report a disagreement, not be refused by it.
        ``wrap``: turns the ONNX Runtime session into the session-like object used instead (a
        port-mapped third-party graph; see :mod:`.port_mapping`).
        """
        first = optimization or "disable"
        self.session = make_ort_session(model, threads=threads, optimization=first)
        meta = self.session.get_modelmeta().custom_metadata_map
        where = repr(os.fspath(model)) if isinstance(model, (str, os.PathLike)) else "this ONNX model"
        self.card = card or card_from_metadata(meta, where)
        if wrap is not None:
            self.session = wrap(self.session)
        if check_graph:
            self.trust = check_trust(self.card, graph_ports(self.session), allow_uncertified=allow_uncertified,
                                     where=where)
        else:
            self.trust = Trust(certificate_status(self.card), allowed_uncertified=True)
        if optimization is None:
            optimization = certified_optimization(self.card)
            if optimization != first:
                self.session = make_ort_session(model, threads=threads, optimization=optimization)
                if wrap is not None:
                    self.session = wrap(self.session)
        self.optimization = optimization
        self._output_names = list(self.card.output_names)
        # run_prepared's call: ONNX Runtime's binding itself where the session is a plain
        # InferenceSession. Its Python ``run`` checks the feed names and options on every call, which
        # cost more than a one-row joiner's whole run (measured: ~11 us a call against 5-7 us);
        # run_prepared's feeds are built by the runtime in the card's names: nothing for it to find.
        binding = getattr(self.session, "_sess", None)
        if type(self.session).__name__ == "InferenceSession" and callable(getattr(binding, "run", None)):
            self._raw_run = lambda names, feeds, run=binding.run: run(names, feeds, None)
        else:  # a port-mapped wrapper (or a future binding): its own run
            self._raw_run = self.session.run
        self._input = self.card.inputs[0]  # the only input of most models
        # States the graph has no default for (no initializer: e.g. a sherpa-onnx layout): an
        # offline call feeds their initial value.
        required = graph_ports(self.session)["required"]
        self._required_states = [s for s in self.card.states if s.name in required]
        self.state: dict[str, np.ndarray] | None = None

    # -- state ---------------------------------------------------------------------------
    def init_state(self, batch: int = 1) -> dict[str, np.ndarray]:
        """Fresh state for ``batch`` streams, keyed by state input port name."""
        return {s.name: np.full(s.concrete_shape(batch), s.init, dtype=np.dtype(s.dtype)) for s in self.card.states}

    def reset(self, only_end_of_speech: bool = False) -> None:
        """Clear the stored state (all, or only states whose card flag says reset on end of speech)."""
        if self.state is None or not self.card.states:
            return
        fresh = self.init_state(self._batch_of(self.state))
        for s in self.card.states:
            if not only_end_of_speech or s.reset_on_end_of_speech:
                self.state[s.name] = fresh[s.name]

    def _batch_of(self, state: dict) -> int:
        s = self.card.states[0]
        return int(state[s.name].shape[s.batch_axis])

    # -- checks --------------------------------------------------------------------------
    def check_input(self, x):
        """The input as the graph takes it, or a typed error saying what was expected.

        One array for a one-input model (returns the checked array); a dict keyed by input port
        name for any model (returns a dict of checked arrays), e.g. a transducer joiner's
        ``{"encoder_frame": ..., "prediction": ...}``.
        """
        if isinstance(x, dict):
            return self._check_inputs(x)
        if len(self.card.inputs) != 1:
            raise InvalidInputError(f"this model has {len(self.card.inputs)} inputs "
                                    f"({', '.join(p.name for p in self.card.inputs)}): pass a dict of arrays keyed "
                                    "by input name")
        return self._check_port(self._input, x)

    def _check_inputs(self, x: dict) -> dict:
        names = [p.name for p in self.card.inputs]
        missing = [n for n in names if n not in x]
        unknown = sorted(set(x) - set(names))
        if missing or unknown:
            raise InvalidInputError(f"inputs: expected exactly {names}; "
                                    + "; ".join(([f"missing {', '.join(missing)}"] if missing else [])
                                                + ([f"unknown {', '.join(unknown)}"] if unknown else [])))
        checked = {p.name: self._check_port(p, x[p.name]) for p in self.card.inputs}
        batches = {n: int(v.shape[0]) for n, v in checked.items()}
        if len(set(batches.values())) > 1:
            raise InvalidInputError(f"inputs: every input needs the same batch size (axis 0), got {batches}")
        return checked

    def _check_port(self, port, x) -> np.ndarray:
        dtype = np.dtype(port.dtype)
        integer = np.issubdtype(dtype, np.integer)
        if not isinstance(x, np.ndarray):
            raise InvalidInputError(f"{port.name}: expected a numpy array, got {type(x).__name__}")
        if integer and (not np.issubdtype(x.dtype, np.integer) or x.dtype == np.bool_):
            raise InvalidInputError(f"{port.name}: expected integer values ({port.dtype}), got {x.dtype}")
        if not integer and not np.issubdtype(x.dtype, np.floating):
            raise InvalidInputError(f"{port.name}: expected floating-point values ({port.dtype}), got {x.dtype}")
        if x.ndim != len(port.shape):
            raise InvalidInputError(f"{port.name}: expected {len(port.shape)} dimensions {port.shape}, "
                                    f"got shape {tuple(x.shape)}")
        for axis, dim in enumerate(port.shape):
            if isinstance(dim, int) and axis != port.time_axis and x.shape[axis] != dim:
                raise InvalidInputError(f"{port.name}: axis {axis} must be {dim} (shape {port.shape}), "
                                        f"got shape {tuple(x.shape)}")
        if port.time_axis is not None:
            why = self.card.streaming.check_chunk_frames(int(x.shape[port.time_axis]))
            if why:
                raise ChunkLengthError(f"{port.name}: a chunk of {x.shape[port.time_axis]} frames cannot be "
                                       f"taken: {why}")
        if integer:
            if port.value_range is not None and x.size:
                low, high = port.value_range
                if x.min() < low or x.max() >= high:
                    raise InvalidInputError(f"{port.name}: values must lie in [{low}, {high}), got "
                                            f"[{x.min()}, {x.max()}]")
        elif not np.all(np.isfinite(x)):
            raise NonFiniteInputError(f"{port.name}: input contains NaN or Inf; expected finite values")
        return np.ascontiguousarray(x, dtype=dtype)

    def _feeds(self, x) -> dict:
        checked = self.check_input(x)
        return checked if isinstance(checked, dict) else {self._input.name: checked}

    def check_state(self, state: dict, batch: int) -> dict:
        """Every declared state present with the card's shape (for ``batch``) and dtype."""
        missing = [s.name for s in self.card.states if s.name not in state]
        if missing:
            raise StateShapeError(f"state is missing {', '.join(missing)}; expected {self.card.input_names[1:]}")
        unknown = sorted(set(state) - {s.name for s in self.card.states})
        if unknown:
            raise StateShapeError(f"unknown state port(s) {', '.join(unknown)}; expected "
                                  f"{[s.name for s in self.card.states]}")
        for s in self.card.states:
            value = state[s.name]
            expected = s.concrete_shape(batch)
            if not isinstance(value, np.ndarray) or tuple(value.shape) != expected:
                got = tuple(value.shape) if isinstance(value, np.ndarray) else type(value).__name__
                raise StateShapeError(f"state {s.name}: expected shape {expected} (card {s.shape}, batch "
                                      f"{batch}), got {got}")
            if value.dtype != np.dtype(s.dtype):
                raise StateShapeError(f"state {s.name}: expected dtype {s.dtype}, got {value.dtype}")
            if not np.all(np.isfinite(value)):
                raise NonFiniteInputError(f"state {s.name} contains NaN or Inf")
        return state

    # -- running -------------------------------------------------------------------------
    def run(self, x, state: dict | None = None) -> tuple[dict, dict]:
        """One call. ``state=None`` feeds only the input: the offline run from a fresh state.

        ``x``: one array, or a dict of arrays keyed by input port name (several inputs).
        """
        feeds = self._feeds(x)
        batch = int(next(iter(feeds.values())).shape[0])
        if state is not None:
            feeds.update(self.check_state(state, batch))
        elif self._required_states:
            feeds.update({s.name: np.full(s.concrete_shape(batch), s.init, dtype=np.dtype(s.dtype))
                          for s in self._required_states})
        values = self.session.run(self.card.output_names, feeds)
        n = len(self.card.outputs)
        outputs = dict(zip(self.card.output_names[:n], values[:n]))
        new_state = {s.name: v for s, v in zip(self.card.states, values[n:])}
        return outputs, new_state

    def run_prepared(self, feeds: dict) -> list:
        """One call on feeds the runtime built itself, in the card's layout: no checks, raw output list.

        The order of the returned arrays is ``card.output_names`` (outputs, then state outputs).
        The client loop's hot path: the audio was checked where it entered, and the chunk and the
        states are arrays this runtime made or the graph returned (re-checking every state on
        every step cost as much as the loop's own work, measured).
        """
        return self._raw_run(self._output_names, feeds)

    def offline(self, x) -> dict:
        """The whole utterance in one call, feeding only the input (no state)."""
        return self.run(x, None)[0]

    def step(self, x) -> dict:
        """Stateful step: carries the state between calls (for a fixed batch of streams).

        A failed call (bad input) leaves the stored state untouched.
        """
        if self.state is None:
            self.state = self.init_state(int(next(iter(self._feeds(x).values())).shape[0]))
        outputs, self.state = self.run(x, self.state)
        return outputs
