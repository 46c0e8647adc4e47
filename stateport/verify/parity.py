"""The parity proof: the exported model is the same model, streaming and offline.

Checks (each collected into one :class:`ParityReport` before anything raises):

1. ``graph signature``: the graph declares every card port, and leaves symbolic every dim the
   card says is symbolic (an exporter that freezes the time axis is caught here);
2. ``torch stream [chunking] vs torch offline``: the torch module's own step equals its forward;
3. ``<backend> offline vs torch offline``: only the audio fed, whole utterance, no state;
4. ``<backend> stream [chunking] vs torch offline``: state carried chunk by chunk, for
   min-chunk (1 frame, or the smallest multiple), nominal, and ragged random chunk lengths;
5. ``<backend> step vs torch step``: lock-step, every output and every state output per step;
6. ``<backend> stream, 3 streams batched``: streams stacked on each state's batch axis.

Frame-wise models (no time axis) take one frame per step: checks 3 and the chunkings other
than one frame do not apply, and the report says so.
"""

from __future__ import annotations

import numpy as np

from ..spec import ModelCard
from .report import CheckResult, ParityReport, diff_output
from .signals import synthetic_features

DEFAULT_TOLERANCE = 1e-4
DEFAULT_SECONDS = 60.0
BATCH_CHECK_SECONDS = 5.0


def chunk_plan(card: ModelCard, total_frames: int, seed: int = 0) -> dict:
    """Chunk lengths per chunking name; every plan covers ``total_frames`` exactly."""
    s = card.streaming
    if s.frames_per_step == 0:
        return {"1-frame": [1] * total_frames}
    if s.static:
        return {"nominal": [s.frames_per_step] * (total_frames // s.frames_per_step)}
    smallest = max(s.frame_multiple, s.min_frames)
    smallest += (-smallest) % s.frame_multiple
    plans = {}
    plans["1-frame" if smallest == 1 else f"min-chunk {smallest}"] = _fill([smallest], total_frames, s.frame_multiple)
    plans["nominal"] = _fill([s.frames_per_step], total_frames, s.frame_multiple)
    rng = np.random.default_rng(seed)
    top = max(3 * s.frames_per_step // s.frame_multiple, 2)
    lengths = []
    while sum(lengths) < total_frames:
        lengths.append(int(rng.integers(1, top + 1)) * s.frame_multiple)
    plans["ragged"] = _fill(lengths, total_frames, s.frame_multiple)
    return plans


def _fill(pattern: list, total: int, multiple: int) -> list:
    out, i = [], 0
    while sum(out) < total:
        out.append(pattern[i % len(pattern)])
        i += 1
    excess = sum(out) - total
    if excess:
        out[-1] -= excess
        if out[-1] <= 0 or out[-1] % multiple:
            out.pop()
    return out


def usable_frames(card: ModelCard, frames: int) -> int:
    """Trim a frame count so every chunking can cover it (multiples, static chunk size)."""
    s = card.streaming
    unit = s.frames_per_step if s.static else max(s.frame_multiple, 1)
    return max(unit, frames - frames % max(unit, 1))


def _slice(x: np.ndarray, card: ModelCard, a: int, b: int) -> np.ndarray:
    if card.streaming.frames_per_step == 0:
        return x[:, a]
    return x[:, a:b]


def run_stream(runner, x: np.ndarray, lengths: list, card: ModelCard):
    """Feed ``x`` chunk by chunk with state carried; concatenated outputs and per-step frame ranges."""
    state = runner.init_state(x.shape[0])
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


def _offline_reference(reference, x: np.ndarray, card: ModelCard) -> dict:
    if card.streaming.frames_per_step == 0:
        # The offline result of a frame-wise module is its step over every frame.
        return run_stream(reference, x, [1] * x.shape[1], card)[0]
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
    """Compare ``candidate`` (a backend runner) with the torch ``reference`` runner."""
    s = card.streaming
    frames = usable_frames(card, int(round(seconds * s.sample_rate_hz / s.frame_hop_samples)))
    feat_dim = card.inputs[0].shape[-1]
    x = synthetic_features(frames, feat_dim, batch=1, seed=seed)
    report = ParityReport(backend=candidate.name, tolerance=tolerance,
                          seconds=round(frames * s.frame_hop_samples / s.sample_rate_hz, 3), frames=frames,
                          optimization=getattr(candidate, "optimization", None))
    if hasattr(candidate, "declared_shapes"):
        report.checks.append(signature_check(candidate, card, tolerance))

    ref_offline = _offline_reference(reference, x, card)
    plans = chunk_plan(card, frames, seed)
    frame_wise = s.frames_per_step == 0

    if check_reference and not frame_wise:
        for cname, lengths in plans.items():
            check = CheckResult(f"torch stream [{cname}] vs torch offline", f"{len(lengths)} steps", tolerance)

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
    else:
        check = CheckResult(f"{candidate.name} offline vs torch offline", "only the input fed, no state", tolerance)
        report.checks.append(_guarded(check, lambda c: _compare_outputs(
            c, candidate.run(x, None)[0], ref_offline, card, None)))

    for cname, lengths in plans.items():
        check = CheckResult(f"{candidate.name} stream [{cname}] vs torch offline", f"{len(lengths)} steps", tolerance)

        def body(c, lengths=lengths):
            got, bounds, _ = run_stream(candidate, x, lengths, card)
            _compare_outputs(c, got, ref_offline, card, bounds)
        report.checks.append(_guarded(check, body))

    report.checks.append(_guarded(CheckResult(f"{candidate.name} step vs torch step", "lock-step, states compared",
                                              tolerance),
                                  lambda c: _lockstep(c, reference, candidate, x, plans["nominal" if "nominal" in plans
                                                                                     else "1-frame"], card)))
    if not s.static:
        report.checks.append(_guarded(CheckResult(f"{candidate.name} stream, 3 streams batched",
                                                  f"{BATCH_CHECK_SECONDS:g} s each, nominal chunks", tolerance),
                                      lambda c: _batched(c, reference, candidate, card, plans, seed)))
    return report


def _lockstep(check: CheckResult, reference, candidate, x, lengths, card: ModelCard) -> None:
    """Both runners step the same chunks; every output and state output compared per step."""
    rs, cs = reference.init_state(1), candidate.init_state(1)
    worst: dict = {}
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
            worst[name] = max(worst.get(name, 0.0), d)
            if d > check.tolerance and name not in first_bad:
                first_bad[name] = i
    from .report import OutputDiff

    for st in card.states:
        worst[st.output] = worst.pop(st.name)
        if st.name in first_bad:
            first_bad[st.output] = first_bad.pop(st.name)
    for name, d in worst.items():
        check.diffs.append(OutputDiff(name, max_abs_diff=d, first_divergent_step=first_bad.get(name)))


def _batched(check: CheckResult, reference, candidate, card: ModelCard, plans: dict, seed: int) -> None:
    """Three different streams batched in one call equal each stream's own offline result."""
    s = card.streaming
    frames = usable_frames(card, int(BATCH_CHECK_SECONDS * s.sample_rate_hz / s.frame_hop_samples))
    xb = np.concatenate([synthetic_features(frames, card.inputs[0].shape[-1], batch=1, seed=seed + 1 + i)
                         for i in range(3)], axis=0)
    lengths = plans["nominal" if "nominal" in plans else "1-frame"]
    lengths = _fill(lengths, frames, max(s.frame_multiple, 1)) if not s.frames_per_step == 0 else [1] * frames
    got, bounds, _ = run_stream(candidate, xb, lengths, card)
    ref = {p.name: np.concatenate([_offline_reference(reference, xb[i:i + 1], card)[p.name] for i in range(3)], 0)
           for p in card.outputs}
    _compare_outputs(check, got, ref, card, bounds)
