"""The parity proof: the exported model is the same model, streaming and offline.

Checks (each collected into one :class:`ParityReport` before anything raises):

1. ``graph signature``: the graph declares every card port, and leaves symbolic every dim the
   card says is symbolic (an exporter that freezes the time axis is caught here);
2. ``torch stream [chunking] vs torch offline``: the torch module's own step equals its forward;
3. ``<backend> offline vs torch offline``: only the audio fed, whole utterance, no state;
4. ``<backend> stream [chunking] vs torch offline``: state carried chunk by chunk, for
   min-chunk (1 frame, or the smallest multiple), nominal (unless it is the min-chunk), and ragged
   random chunk lengths;
5. ``<backend> step vs torch step``: lock-step, every output and every state output per step;
6. ``<backend> stream, 3 streams batched``: streams stacked on each state's batch axis.

Frame-wise models (no time axis) take one frame per step: checks 3 and the chunkings other
than one frame do not apply, and the report says so.

Models with several inputs (a transducer joiner's two vectors) or integer inputs (a predictor's
token ids) get one generated sequence per input port (:func:`synthetic_inputs`); every input
with a time axis is chunked along it, so the same checks apply. A predictor's time axis counts
tokens: its "frames" are tokens, and the report notes it.
"""

from __future__ import annotations

import numpy as np

from ..spec import SAMPLE_DIM, TIME_DIM, ModelCard
from .report import CheckResult, ParityReport, diff_output, scaled_diff
from .audio_in import audio_chunk_plan, runtime_frontend_note
from .signals import synthetic_inputs

DEFAULT_TOLERANCE = 1e-4
DEFAULT_SECONDS = 60.0
BATCH_CHECK_SECONDS = 5.0
# A proof shorter than this carries state across too few steps to show anything: with ``seconds``
# near 0 the proof stepped one frame and still said PASS.
MIN_PROOF_SECONDS = 1.0


def check_proof_options(seconds, tolerance) -> None:
    """Refuse a proof length or tolerance no certificate should rest on (typed, before any work).

    ``tolerance`` None means "the artifact's own" and is accepted.
    """
    import math

    from ..errors import InvalidInputError

    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) \
            or seconds < MIN_PROOF_SECONDS:
        raise InvalidInputError(f"seconds={seconds!r}: the parity proof needs at least {MIN_PROOF_SECONDS:g} s of "
                                "input (fewer steps cannot show that state is carried)")
    if tolerance is not None and (isinstance(tolerance, bool) or not isinstance(tolerance, (int, float))
                                  or not math.isfinite(tolerance) or tolerance < 0):
        raise InvalidInputError(f"tolerance={tolerance!r}: expected a finite number >= 0 (max |diff| allowed)")


def chunk_plan(card: ModelCard, total_frames: int, seed: int = 0) -> dict:
    """Chunk lengths per chunking name; every plan covers ``total_frames`` exactly.

    When the nominal chunk is also the smallest one (a predictor's one token, a chunked
    attention's one chunk), the two plans would be the same run: only the smallest is kept.
    """
    s = card.streaming
    if card.audio_input:  # PCM in: chunk lengths in samples (stateport.verify.audio_in)
        return audio_chunk_plan(card, total_frames, seed)
    if s.frames_per_step == 0:
        return {"1-frame": [1] * total_frames}
    # Plans count the frames each step advances; a look-ahead model's step also takes the next
    # lookahead_frames (see _slice), so the plans cover all but those last frames.
    total_frames -= s.lookahead_frames
    if s.static:  # every step takes exactly frames_per_step frames, look-ahead included
        advance = s.frames_per_step - s.lookahead_frames
        return {"nominal": [advance] * (total_frames // advance)}
    if s.chunk_exact:
        return {"nominal": _fill([s.frames_per_step - s.lookahead_frames], total_frames, 1)}
    smallest = max(s.frame_multiple, s.min_frames - s.lookahead_frames)  # min_frames counts the look-ahead
    smallest += (-smallest) % s.frame_multiple
    plans = {}
    plans["1-frame" if smallest == 1 else f"min-chunk {smallest}"] = _fill([smallest], total_frames, s.frame_multiple)
    advance = s.frames_per_step - s.lookahead_frames
    if advance != smallest:
        plans["nominal"] = _fill([advance], total_frames, s.frame_multiple)
    rng = np.random.default_rng(seed)
    top = max(3 * s.frames_per_step // s.frame_multiple, 2)
    lengths, covered = [], 0
    while covered < total_frames:
        lengths.append(int(rng.integers(1, top + 1)) * s.frame_multiple)
        covered += lengths[-1]
    plans["ragged"] = _fill(lengths, total_frames, s.frame_multiple)
    return plans


def nominal_lengths(plans: dict) -> list:
    """The nominal chunking (the smallest one when they coincide, the only one when frame-wise)."""
    return plans.get("nominal", next(iter(plans.values())))


def _fill(pattern: list, total: int, multiple: int) -> list:
    out, i, covered = [], 0, 0  # a running total: 60 s of 1-frame steps is 6000 chunks
    while covered < total:
        out.append(pattern[i % len(pattern)])
        covered += out[-1]
        i += 1
    excess = covered - total
    if excess:
        out[-1] -= excess
        if out[-1] <= 0 or out[-1] % multiple:
            out.pop()
    return out


def usable_frames(card: ModelCard, frames: int) -> int:
    """Trim a frame count so every chunking can cover it (multiples, static chunk size)."""
    s = card.streaming
    advance = s.frames_per_step - s.lookahead_frames
    if s.static and advance > 0:  # (a frame-wise graph, frames_per_step 0, takes any count of single frames)
        # Whole static steps: each advances ``advance`` frames and reads the look-ahead after them
        # (measured before: a static look-ahead graph was fed its chunk plus the look-ahead again).
        return s.lookahead_frames + max((frames - s.lookahead_frames) // advance, 1) * advance
    unit = max(s.frame_multiple, 1)
    frames = max(unit, frames - frames % unit)
    if s.lookahead_frames and unit > 1:
        # The steps advance over whole multiples; the look-ahead frames come after them.
        frames = s.lookahead_frames + max((frames - s.lookahead_frames) // unit, 1) * unit
    if s.chunk_exact and advance > unit and (frames - s.lookahead_frames) % advance == 0:
        frames -= advance // 2 // unit * unit  # so the stream ends with a shorter chunk, as real ones do
    return frames


def _as_inputs(x, card: ModelCard) -> dict:
    """Whole input sequences keyed by port name (one array is the only input's)."""
    return x if isinstance(x, dict) else {card.inputs[0].name: x}


def _slice(xs: dict, card: ModelCard, a: int, b: int) -> dict:
    """Frames ``[a, b)`` of every input: one frame (no frame axis) for frame-wise models.

    A look-ahead model also gets the ``lookahead_frames`` after ``b`` (as far as there are);
    side inputs get this chunk's values (its frame count, or ``a`` frames advanced before it).
    """
    out = {}
    b = b + card.streaming.lookahead_frames if card.streaming.frames_per_step else b
    for p in card.inputs:
        v = xs[p.name]
        if p.side_role is not None:
            value = (min(b, _num_frames(xs, card)) - a) if p.side_role == "chunk_length" else a
            out[p.name] = np.full(v.shape, value, dtype=v.dtype)
        elif card.streaming.frames_per_step == 0:
            out[p.name] = v[:, a]
        elif p.time_axis is None:
            out[p.name] = v  # no time axis in a streaming model: the same value with every step
        else:
            index = [slice(None)] * v.ndim
            index[p.time_axis] = slice(a, b)
            out[p.name] = v[tuple(index)]
    return out


def _batch_of(xs: dict) -> int:
    return int(next(iter(xs.values())).shape[0])


def _num_frames(xs: dict, card: ModelCard) -> int:
    p = next(p for p in card.inputs if p.side_role is None)
    return int(xs[p.name].shape[1 if p.time_axis is None else p.time_axis])


def run_stream(runner, x, lengths: list, card: ModelCard):
    """Feed ``x`` (an array, or a dict per input) chunk by chunk with state carried.

    Returns the concatenated outputs, the per-step output frame ranges and the last state.
    """
    x = _as_inputs(x, card)
    state = runner.init_state(_batch_of(x))
    collected = {p.name: [] for p in card.outputs}
    bounds, a, out_pos = [], 0, 0
    for n in lengths:
        outputs, state = runner.run(_slice(x, card, a, a + n), state)
        a += n
        produced = None
        for p in card.outputs:
            o = outputs[p.name]
            if p.time_axis is None:
                o = np.expand_dims(o, 1)
                produced = 1
            else:
                produced = o.shape[p.time_axis]
            collected[p.name].append(o)
        bounds.append((out_pos, out_pos + (produced or 0)))
        out_pos += produced or 0
    return {k: np.concatenate(v, axis=1) for k, v in collected.items()}, bounds, state


def _compare_outputs(check: CheckResult, got: dict, ref: dict, card: ModelCard, bounds) -> None:
    for p in card.outputs:
        time_axis = 1 if p.time_axis is None else p.time_axis
        check.diffs.append(diff_output(p.name, got[p.name], ref[p.name], tolerance=check.tolerance,
                                       time_axis=time_axis, step_bounds=bounds, argmax=True))


def _guarded(check: CheckResult, fn) -> CheckResult:
    """Run one comparison; a candidate that fails to run becomes a failed check, not a crash."""
    try:
        fn(check)
    except Exception as e:  # the runtimes raise many types; each is a finding of the proof
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        check.error = f"{type(e).__name__}: {msg[:300]}"
    return check


def _offline_reference(reference, x: dict, card: ModelCard) -> dict:
    if card.streaming.frames_per_step == 0:
        # The offline result of a frame-wise module is its step over every frame.
        return run_stream(reference, x, [1] * _num_frames(x, card), card)[0]
    return reference.run(x, None)[0]


def signature_check(candidate, card: ModelCard, tolerance: float) -> CheckResult:
    """The graph declares every port with the card's symbolic dims still symbolic."""
    check = CheckResult("graph signature", "declared port shapes vs card", tolerance, compact=True)

    def body(c):
        declared = candidate.declared_shapes()
        ports = [(p.name, p.shape) for p in card.inputs + card.outputs]
        ports += [(s.name, s.shape) for s in card.states] + [(s.output, s.shape) for s in card.states]
        for name, shape in ports:
            got = declared.get(name, "missing")
            problem = None
            if got == "missing":
                problem = "the graph has no port of this name"
            elif got is not None and len(got) != len(shape):
                problem = f"graph declares rank {len(got)}, card {len(shape)}"
            elif got is not None:
                frozen = [f"axis {i} ({d!r}) frozen at {g}" for i, (d, g) in enumerate(zip(shape, got))
                          if isinstance(d, str) and isinstance(g, int)]
                wrong = [f"axis {i} is {g}, card says {d}" for i, (d, g) in enumerate(zip(shape, got))
                         if isinstance(d, int) and isinstance(g, int) and d != g]
                if frozen or wrong:
                    problem = "; ".join(frozen + wrong)
            c.diffs.append(_signature_diff(name, problem))

    return _guarded(check, body)


def _signature_diff(name, problem):
    from .report import OutputDiff

    return OutputDiff(name, max_abs_diff=None if problem else 0.0, problem=problem)


def prove_parity(reference, candidate, card: ModelCard, *, seconds: float = DEFAULT_SECONDS,
                 tolerance: float = DEFAULT_TOLERANCE, seed: int = 0, check_reference: bool = True) -> ParityReport:
    """Compare ``candidate`` (a backend runner) with the ``reference`` runner (usually torch).

    Check names use the runners' ``name``: a quantized graph proved against itself offline reads
    ``onnxruntime[static-int8] stream [ragged] vs static-int8 offline``.

    ``check_reference=False`` says the reference is the candidate's own graph (:func:`prove_self`):
    the reference's own streaming is not checked, and the batched streams are compared with the
    same streams run offline batched rather than one by one (why: see :func:`prove_self`).
    """
    check_proof_options(seconds, tolerance)
    ref = getattr(reference, "name", "torch")
    s = card.streaming
    frames = usable_frames(card, int(round(seconds * s.sample_rate_hz / s.frame_hop_samples)))
    x = synthetic_inputs(card, frames, batch=1, seed=seed)
    report = ParityReport(backend=candidate.name, tolerance=tolerance,
                          seconds=round(frames * s.frame_hop_samples / s.sample_rate_hz, 3), frames=frames,
                          optimization=getattr(candidate, "optimization", None), reference=ref)
    non_audio = sorted({str(p.shape[p.time_axis]) for p in card.inputs
                        if p.time_axis is not None and isinstance(p.shape[p.time_axis], str)  # static: an int
                        and p.shape[p.time_axis] not in (TIME_DIM, SAMPLE_DIM)})
    if non_audio:
        report.notes.append(f"the time axis {', '.join(non_audio)} counts tokens, not audio frames: the proof "
                            f"stepped through {frames} of them")
    if card.audio_input:
        report.notes.append(f"audio-in model: it takes PCM samples (recorded speech, noise, silence), so chunk lengths "
                            f"count samples (ragged: 1 sample to 3 nominal chunks); {frames} samples"
                            + (f"; {ref} offline = Kaldi's features as kaldi-native-fbank computes them, with an exact "
                               f"FFT -> the torch model, so the streamed in-graph frontend is compared with Kaldi's "
                               f"recipe" if ref == "torch" else ""))
    if hasattr(candidate, "declared_shapes"):
        report.checks.append(signature_check(candidate, card, tolerance))

    ref_offline = _offline_reference(reference, x, card)
    if card.audio_input:
        note = runtime_frontend_note(reference, x, ref_offline, card)
        report.notes += [note] if note else []
    plans = chunk_plan(card, frames, seed)
    frame_wise = s.frames_per_step == 0
    if not frame_wise and not s.static and "nominal" not in plans:
        report.notes.append(f"the nominal chunk ({s.frames_per_step} frames) is also the smallest one: its "
                            "chunking is checked once")

    if check_reference and not frame_wise:
        for cname, lengths in plans.items():
            check = CheckResult(f"{ref} stream [{cname}] vs {ref} offline", f"{len(lengths)} steps", tolerance)

            def body(c, lengths=lengths):
                got, bounds, _ = run_stream(reference, x, lengths, card)
                _compare_outputs(c, got, ref_offline, card, bounds)
            report.checks.append(_guarded(check, body))

    if frame_wise:
        report.notes.append("frame-wise model (no time axis): one frame per step, so the offline mode and "
                            "other chunkings do not apply")
    elif s.static:
        report.notes.append(f"static export: every step takes exactly {s.frames_per_step} frames, so only the "
                            "nominal chunking applies and there is no whole-utterance offline call")
    elif s.chunk_exact:
        report.notes.append(f"chunk-exact model: every step advances exactly {s.frames_per_step - s.lookahead_frames}"
                            " frames (the last one fewer), so only the nominal chunking applies and the graph is "
                            "not run on the whole utterance at once")
    else:
        check = CheckResult(f"{candidate.name} offline vs {ref} offline", "only the input fed, no state", tolerance)
        report.checks.append(_guarded(check, lambda c: _compare_outputs(
            c, candidate.run(x, None)[0], ref_offline, card, None)))

    for cname, lengths in plans.items():
        check = CheckResult(f"{candidate.name} stream [{cname}] vs {ref} offline", f"{len(lengths)} steps", tolerance)

        def body(c, lengths=lengths):
            got, bounds, _ = run_stream(candidate, x, lengths, card)
            _compare_outputs(c, got, ref_offline, card, bounds)
        report.checks.append(_guarded(check, body))

    report.checks.append(_guarded(CheckResult(f"{candidate.name} step vs {ref} step", "lock-step, states compared",
                                              tolerance),
                                  lambda c: _lockstep(c, reference, candidate, x, nominal_lengths(plans), card)))
    if not s.static:
        report.checks.append(_guarded(CheckResult(f"{candidate.name} stream, 3 streams batched",
                                                  f"{BATCH_CHECK_SECONDS:g} s each, nominal chunks", tolerance),
                                      lambda c: _batched(c, reference, candidate, card, plans, seed,
                                                         same_batch=not check_reference)))
    if s.lookahead_frames and not frame_wise:
        report.notes.append(f"look-ahead model: each step also took the next {s.lookahead_frames} frames; the last "
                            f"{s.lookahead_frames} frames serve only as look-ahead (compared: the frames before)")
    own = [c for c in report.checks if c.name.startswith(f"{ref} stream") and not c.passed]
    if own and all(d.first_divergent_step == 0 for c in own for d in c.diffs if not d.passed(c.tolerance)):
        report.notes.append(
            f"the {ref} model's own streaming disagrees with its offline reference from the first step: the "
            "reference itself may be the wrong one (e.g. forward() runs the whole utterance with full attention "
            "where the stream sees chunks). Give the model's own full-utterance twin as the reference: "
            "declare_step(..., reference=lambda x: ...), or override forward() of a StreamingModule")
    return report


def _lockstep(check: CheckResult, reference, candidate, x, lengths, card: ModelCard) -> None:
    """Both runners step the same chunks; every output and state output compared per step."""
    rs, cs = reference.init_state(1), candidate.init_state(1)
    worst: dict = {}
    worst_scaled: dict = {}
    first_bad: dict = {}
    a = 0
    ports = [p.name for p in card.outputs] + [st.name for st in card.states]
    for i, n in enumerate(lengths):
        chunk = _slice(x, card, a, a + n)
        a += n
        ro, rs = reference.run(chunk, rs)
        co, cs = candidate.run(chunk, cs)
        for name in ports:
            r, c = (ro[name], co[name]) if name in ro else (rs[name], cs[name])
            if r.shape != c.shape:
                raise ValueError(f"step {i}: {name} has shape {c.shape}, reference {r.shape}")
            d = float(np.max(np.abs(r.astype(np.float64) - c))) if r.size else 0.0
            ds = float(np.max(scaled_diff(c, r))) if r.size else 0.0
            worst[name] = max(worst.get(name, 0.0), d)
            worst_scaled[name] = max(worst_scaled.get(name, 0.0), ds)
            if ds > check.tolerance and name not in first_bad:
                first_bad[name] = i
    from .report import OutputDiff

    for st in card.states:
        worst[st.output] = worst.pop(st.name)
        worst_scaled[st.output] = worst_scaled.pop(st.name)
        if st.name in first_bad:
            first_bad[st.output] = first_bad.pop(st.name)
    for name, d in worst.items():
        check.diffs.append(OutputDiff(name, max_abs_diff=d, first_divergent_step=first_bad.get(name),
                                      max_scaled_diff=worst_scaled[name]))


def _batched(check: CheckResult, reference, candidate, card: ModelCard, plans: dict, seed: int,
             same_batch: bool = False) -> None:
    """Three different streams batched in one call equal each stream's own offline result; ``same_batch``:
    the offline result of the three streams batched (a graph proved against itself, see prove_self)."""
    s = card.streaming
    frames = usable_frames(card, int(BATCH_CHECK_SECONDS * s.sample_rate_hz / s.frame_hop_samples))
    streams = [synthetic_inputs(card, frames, batch=1, seed=seed + 1 + i) for i in range(3)]
    xb = {p.name: np.concatenate([st[p.name] for st in streams], axis=0) for p in card.inputs}
    lengths = nominal_lengths(plans)
    lengths = (_fill(lengths, frames - s.lookahead_frames, max(s.frame_multiple, 1)) if not s.frames_per_step == 0
               else [1] * frames)
    got, bounds, _ = run_stream(candidate, xb, lengths, card)
    if same_batch:
        ref = _offline_reference(reference, xb, card)
    else:
        refs = [_offline_reference(reference, st, card) for st in streams]
        ref = {p.name: np.concatenate([r[p.name] for r in refs], 0) for p in card.outputs}
    _compare_outputs(check, got, ref, card, bounds)


def prove_self(path, card: ModelCard, *, label: str, level: str, seconds: float, tolerance: float):
    """An ONNX file that has no torch twin (a quantized artifact) against itself: streamed (every
    chunking, batched) vs the same graph offline, at the ONNX Runtime level ``level``.

    Its batched streams are compared with the same three streams run offline batched, not one by
    one: a quantized graph's float kernels round differently at another batch size (ONNX Runtime's
    LSTM by ~1e-7) and the next quantizer can turn that into a whole step (measured on the built-in
    model's static-int8: one 0.10 step of a logit, in 1 of 3 x 62 output frames, argmax unchanged),
    which says nothing about how the states were stacked, which is what the check proves."""
    from .runners import NamedRunner, OnnxRunner

    reference = NamedRunner(OnnxRunner(path, card, optimization=level), label)
    candidate = NamedRunner(OnnxRunner(path, card, optimization=level), f"onnxruntime[{label}]")
    return prove_parity(reference, candidate, card, seconds=seconds, tolerance=tolerance, check_reference=False)
