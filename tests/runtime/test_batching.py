"""Many streams in one call: stack/unstack/reset per-stream state along each state's card batch axis.

Exported tiny models with different state layouts: lstm-ctc (h, c [L, B, H]: batch axis 1),
quartznet (conv buffers [B, C, K]: batch axis 0), dscnn-kws (2-D conv buffers [B, C, K, F]).
"""

import subprocess
import sys

import numpy as np
import pytest

from stateport.errors import InvalidInputError, StateShapeError
from stateport.runtime.batching import batch_size, reset_stream, stack_states, unstack_states
from stateport.runtime.session import OnnxStepSession
from stateport.spec import ModelCard
from stateport.verify.signals import synthetic_features

ARCHS = ("lstm-ctc", "quartznet", "dscnn-kws")
STREAMS = 3
CHUNKS = [1, 7, 16, 3, 40, 2, 25, 9, 16, 31]  # ragged, equal across streams within a call
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    """``arch -> OnnxStepSession`` of the tiny export (no parity proof: the zoo tests do that)."""
    from stateport.export import export_model

    out = {}
    for arch in ARCHS:
        path = tmp_path_factory.mktemp("batching") / f"{arch}.onnx"
        export_model(path, arch=arch, size="tiny", verify=False)
        out[arch] = OnnxStepSession(path, allow_uncertified=True)
    return out


def _features(session, frames: int) -> list:
    dim = session.card.inputs[0].shape[-1]
    return [synthetic_features(frames, dim, seed=100 + i) for i in range(STREAMS)]


def _run_alone(session, x: np.ndarray, chunks: list, state=None):
    """One stream, its own state carried: (concatenated logits, final state)."""
    state = state if state is not None else session.init_state(1)
    outs, a = [], 0
    for n in chunks:
        o, state = session.run(x[:, a:a + n], state)
        outs.append(o["logits"])
        a += n
    return np.concatenate(outs, axis=1), state


def _run_batched(session, xs: list, chunks: list, states: list):
    """All streams in one call per chunk: stack, run, unstack. Returns per-stream logits and states."""
    card = session.card
    outs, a = [[] for _ in xs], 0
    for n in chunks:
        o, batched = session.run(np.concatenate([x[:, a:a + n] for x in xs]), stack_states(card, states))
        states = unstack_states(card, batched)
        for i in range(len(xs)):
            outs[i].append(o["logits"][i:i + 1])
        a += n
    return [np.concatenate(o, axis=1) for o in outs], states


def _max_diff(a, b) -> float:
    return float(np.abs(np.asarray(a, np.float64) - b).max())


def test_the_models_use_different_batch_axes(sessions):
    axes = {arch: {s.batch_axis for s in sessions[arch].card.states} for arch in ARCHS}
    assert axes == {"lstm-ctc": {1}, "quartznet": {0}, "dscnn-kws": {0}}
    assert {len(s.shape) for s in sessions["dscnn-kws"].card.states} == {3, 4}


@pytest.mark.parametrize("arch", ARCHS)
def test_batched_streams_equal_streams_run_alone(arch, sessions):
    session = sessions[arch]
    xs = _features(session, sum(CHUNKS))
    alone = [_run_alone(session, x, CHUNKS) for x in xs]
    got, states = _run_batched(session, xs, CHUNKS, [session.init_state(1) for _ in xs])
    for i in range(STREAMS):
        assert got[i].shape == alone[i][0].shape
        assert _max_diff(got[i], alone[i][0]) <= TOLERANCE
        for name, value in states[i].items():
            assert _max_diff(value, alone[i][1][name]) <= TOLERANCE
    # The streams differ, so equal outputs are not a coincidence of identical inputs.
    assert _max_diff(got[0], got[1]) > 1e-3


@pytest.mark.parametrize("arch", ARCHS)
def test_reset_stream_restarts_one_stream_and_leaves_the_others(arch, sessions):
    session, card = sessions[arch], sessions[arch].card
    before, after = CHUNKS[:5], CHUNKS[5:]
    xs = _features(session, sum(CHUNKS))
    split = sum(before)
    _, states = _run_batched(session, [x[:, :split] for x in xs], before, [session.init_state(1) for _ in xs])

    batched = stack_states(card, states)
    reset = reset_stream(card, batched, 1)
    assert batch_size(card, reset) == STREAMS
    for s in card.states:  # the input is untouched: reset returns a new dict of new arrays
        assert _max_diff(batched[s.name], stack_states(card, states)[s.name]) == 0.0
    got, _ = _run_batched(session, [x[:, split:] for x in xs], after, unstack_states(card, reset))

    for i in (0, 2):  # carried on as if nothing happened
        continued, _ = _run_alone(session, xs[i][:, split:], after, states[i])
        assert _max_diff(got[i], continued) <= TOLERANCE
    fresh, _ = _run_alone(session, xs[1][:, split:], after)  # stream 1 restarted from the card's init
    assert _max_diff(got[1], fresh) <= TOLERANCE
    carried, _ = _run_alone(session, xs[1][:, split:], after, states[1])
    assert _max_diff(fresh, carried) > 1e-4  # the reset really changed stream 1


def test_reset_only_end_of_speech_respects_each_states_flag(sessions):
    d = sessions["lstm-ctc"].card.to_dict()
    for p in d["ports"]:
        if p["name"] == "encoder_c_in":
            p["reset_on_end_of_speech"] = False
    card = ModelCard.from_dict(d)
    batched = {s.name: np.full(s.concrete_shape(STREAMS), 5.0, np.float32) for s in card.states}

    partial = reset_stream(card, batched, 2, only_end_of_speech=True)
    assert np.all(partial["encoder_h_in"][:, 2] == 0.0) and np.all(partial["encoder_h_in"][:, :2] == 5.0)
    assert np.all(partial["encoder_c_in"] == 5.0)  # flag off: kept across the end of speech
    full = reset_stream(card, batched, 2)
    assert np.all(full["encoder_c_in"][:, 2] == 0.0) and np.all(full["encoder_c_in"][:, :2] == 5.0)


def test_unstacked_states_are_copies(sessions):
    card = sessions["quartznet"].card
    batched = {s.name: np.ones(s.concrete_shape(2), np.float32) for s in card.states}
    first = unstack_states(card, batched)[0]
    for value in first.values():
        value[...] = 7.0
    assert all(np.all(v == 1.0) for v in batched.values())
    assert [tuple(v.shape) for v in first.values()] == [s.concrete_shape(1) for s in card.states]


def test_mismatched_states_raise_clear_errors(sessions):
    card = sessions["lstm-ctc"].card
    one = sessions["lstm-ctc"].init_state(1)
    with pytest.raises(InvalidInputError, match="non-empty list"):
        stack_states(card, [])
    with pytest.raises(StateShapeError, match="stream 1: .*missing encoder_c_in"):
        stack_states(card, [one, {"encoder_h_in": one["encoder_h_in"]}])
    with pytest.raises(StateShapeError, match="unknown bogus_in"):
        stack_states(card, [{**one, "bogus_in": one["encoder_h_in"]}])
    wrong = {**one, "encoder_h_in": np.zeros((1, 1, 5), np.float32)}  # hidden size 32 expected
    with pytest.raises(StateShapeError, match=r"encoder_h_in has shape \(1, 1, 5\); expected \(1, 1, 32\)"):
        stack_states(card, [one, wrong])
    with pytest.raises(StateShapeError, match="dtype float64"):
        stack_states(card, [{k: v.astype(np.float64) for k, v in one.items()}])
    ragged = {"encoder_h_in": np.zeros((1, 2, 32), np.float32), "encoder_c_in": np.zeros((1, 3, 32), np.float32)}
    with pytest.raises(StateShapeError, match="different numbers of streams"):
        unstack_states(card, ragged)
    with pytest.raises(StateShapeError, match="expected 4 streams"):
        unstack_states(card, stack_states(card, [one, one]), streams=4)
    with pytest.raises(InvalidInputError, match=r"integer in \[0, 2\)"):
        reset_stream(card, stack_states(card, [one, one]), 2)


def test_batching_does_not_import_torch():
    code = ("import sys\nimport stateport.runtime.batching\n"
            "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\nassert not bad, bad\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
