"""Bad input to a model file or session: a typed, one-line error that says what was expected."""

import numpy as np
import onnx
import pytest

from stateport.errors import (ChunkLengthError, MissingCardError, ModelFileError, NonFiniteInputError,
                              StateShapeError)
from stateport.runtime.model_file import read_card
from stateport.runtime.session import OnnxStepSession


@pytest.fixture(scope="module")
def session(tiny_lstm_ctc):
    return OnnxStepSession(tiny_lstm_ctc[0])


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        read_card(tmp_path / "nope.onnx")
    with pytest.raises(ModelFileError, match="does not exist"):
        OnnxStepSession(tmp_path / "nope.onnx")


def test_not_an_onnx_file(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"RIFF....WAVEfmt this is not a model" * 10)
    with pytest.raises(ModelFileError, match="ONNX"):
        read_card(bad)
    with pytest.raises(ModelFileError, match="cannot load"):
        OnnxStepSession(bad)


def test_truncated_file(tiny_lstm_ctc, tmp_path):
    data = open(tiny_lstm_ctc[0], "rb").read()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError):
        read_card(cut)


def test_onnx_without_card(tiny_lstm_ctc, tmp_path):
    proto = onnx.load(tiny_lstm_ctc[0])
    del proto.metadata_props[:]
    plain = tmp_path / "plain.onnx"
    onnx.save(proto, plain)
    with pytest.raises(MissingCardError, match="no stateport model card"):
        read_card(plain)
    with pytest.raises(MissingCardError):
        OnnxStepSession(plain)


def test_state_of_wrong_shape_or_dtype(session):
    x = np.zeros((1, 16, 80), np.float32)
    state = session.init_state(1)
    bad = dict(state, encoder_h_in=np.zeros((1, 1, 31), np.float32))
    with pytest.raises(StateShapeError, match=r"encoder_h_in: expected shape \(1, 1, 32\)"):
        session.run(x, bad)
    bad = dict(state, encoder_c_in=state["encoder_c_in"].astype(np.float64))
    with pytest.raises(StateShapeError, match="expected dtype float32, got float64"):
        session.run(x, bad)
    with pytest.raises(StateShapeError, match="missing encoder_c_in"):
        session.run(x, {"encoder_h_in": state["encoder_h_in"]})
    with pytest.raises(StateShapeError, match=r"batch 2"):
        session.run(np.zeros((2, 16, 80), np.float32), state)


def test_nan_and_inf_input(session):
    x = np.zeros((1, 16, 80), np.float32)
    x[0, 3, 7] = np.nan
    with pytest.raises(NonFiniteInputError, match="NaN or Inf"):
        session.run(x)
    state = session.init_state(1)
    state["encoder_h_in"][0, 0, 0] = np.inf
    with pytest.raises(NonFiniteInputError, match="encoder_h_in"):
        session.run(np.zeros((1, 16, 80), np.float32), state)


def test_wrong_feature_dim_and_rank(session):
    with pytest.raises(Exception, match=r"axis 2 must be 80"):
        session.run(np.zeros((1, 16, 40), np.float32))
    with pytest.raises(Exception, match="expected 3 dimensions"):
        session.run(np.zeros((16, 80), np.float32))
    with pytest.raises(Exception, match="floating-point"):
        session.run(np.zeros((1, 16, 80), np.int16))


def test_chunk_length_the_model_cannot_take(tmp_path):
    import toy_models
    from stateport.export.backends.onnx_file import export_onnx

    path = str(tmp_path / "static.onnx")
    export_onnx(toy_models.build("gru"), path, chunk_frames=8, static=True)
    s = OnnxStepSession(path, allow_uncertified=True)
    with pytest.raises(ChunkLengthError, match="exactly 8 frames"):
        s.run(np.zeros((1, 5, 12), np.float32), s.init_state(1))


def test_failed_step_keeps_the_state(session):
    rng = np.random.default_rng(0)
    session.state = None
    session.step(rng.standard_normal((1, 16, 80)).astype(np.float32))
    before = {k: v.copy() for k, v in session.state.items()}
    bad = np.full((1, 16, 80), np.nan, np.float32)
    with pytest.raises(NonFiniteInputError):
        session.step(bad)
    for k in before:
        np.testing.assert_array_equal(session.state[k], before[k])
