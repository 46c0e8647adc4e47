"""Exporting declared third-party modules: side inputs, integer/bool states, look-ahead, frozen
values, a wrong offline reference, and the hidden-state guard's messages."""

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from stateport.errors import ParityError, UndeclaredStateError, UnsupportedError
from stateport.export import verify_file
from stateport.export.backends.onnx_file import export_onnx
from stateport.nn import StateDecl, StreamingModule, declare_step
from toy_models import Counters

F = 8
IN = ("x", ("batch", "T", F))


def export_and_prove(model, tmp_path, seconds=10.0, name="m.onnx"):
    path = str(tmp_path / name)
    card = export_onnx(model, path)
    return path, card, verify_file(path, reference=model, seconds=seconds)


class PositionalStep(nn.Module):
    """Adds a sinusoid of the absolute frame index, which it takes as ``offset`` (frames before
    this chunk); carries a running sum."""

    def forward(self, x, total, offset):
        t = offset.unsqueeze(1) + torch.arange(x.shape[1]).unsqueeze(0)
        y = x + torch.sin(t.to(x.dtype) / 7.0).unsqueeze(-1) + (total.unsqueeze(1) + x.cumsum(1)) / 100
        return y, total + x.sum(1)


def test_side_input_has_its_role_in_the_card_and_the_proof_feeds_it(tmp_path):
    model = declare_step(PositionalStep(), input=IN, outputs=["y"], states={"total": ("batch", F)},
                         side_inputs={"offset": "stream_offset"})
    path, card, report = export_and_prove(model, tmp_path)
    assert report.passed, report.to_text()
    assert [(p.name, p.shape, p.dtype, p.side_role) for p in card.inputs] == [
        ("x", ["batch", "T", F], "float32", None), ("offset", ["batch"], "int64", "stream_offset")]
    # a client feeds the offset itself: frames advanced so far
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((1, 30, F)).astype(np.float32)
    (offline, _) = sess.run(None, {"x": x, "offset": np.zeros(1, np.int64)})
    total, outs = np.zeros((1, F), np.float32), []
    for a in range(0, 30, 7):
        y, total = sess.run(None, {"x": x[:, a:a + 7], "offset": np.array([a]), "total_in": total})
        outs.append(y)
    assert np.abs(np.concatenate(outs, 1) - offline).max() < 1e-5


class FrozenOffset(nn.Module):
    def forward(self, x, offset):
        start = int(offset[0].item())  # a Python number taken from a tensor: frozen by tracing
        return x * (start % 5)


def test_value_frozen_by_tracing_is_refused_naming_the_line(tmp_path):
    model = declare_step(FrozenOffset(), input=IN, outputs=["y"], side_inputs={"offset": "stream_offset"})
    with pytest.raises(UnsupportedError) as e:
        export_onnx(model, str(tmp_path / "m.onnx"))
    assert "depends on the example values" in str(e.value)
    assert "test_byom_export.py:" in str(e.value) and "start = int(offset[0].item())" in str(e.value)


def test_integer_and_bool_states_keep_their_dtype_in_the_card(tmp_path):
    model = declare_step(Counters(F), input=IN, outputs=["y"])
    path, card, report = export_and_prove(model, tmp_path, seconds=5.0)
    assert report.passed, report.to_text()
    assert [(s.name, s.shape, s.dtype, s.batch_uniform) for s in card.states] == [
        ("frames_in", ["batch"], "int64", True), ("started_in", ["batch"], "bool", False)]


class RightContextConv(nn.Module):
    """A convolution seeing 2 frames back and ``R`` ahead: each step takes its chunk plus R
    look-ahead frames and returns outputs for the chunk; it keeps the 2 frames before it."""

    R = 3

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(F, F, 2 + self.R + 1)

    def forward(self, x, past):
        full = torch.cat([past, x], 1)  # [B, 2 + chunk + R, F]
        y = self.conv(full.transpose(1, 2)).transpose(1, 2)  # chunk frames
        end = full.shape[1] - self.R
        return y, full[:, end - 2:end]


def test_lookahead_is_respected_by_the_proof(tmp_path):
    model = declare_step(RightContextConv(), input=IN, outputs=["y"], states={"past": ("batch", 2, F)},
                         chunk=8, lookahead=RightContextConv.R)
    path, card, report = export_and_prove(model, tmp_path)
    assert report.passed, report.to_text()
    st = card.streaming
    assert (st.frames_per_step, st.frames_advanced_per_step, st.lookahead_frames) == (11, 8, 3)
    assert card.outputs[0].shape == ["batch", "T_minus_3", F]
    assert any("look-ahead model" in n for n in report.notes)


class ChunkNormalised(nn.Module):
    """Normalises each chunk by its own mean: its whole-utterance call is not its stream."""

    def forward(self, x, n):
        return x - x.mean(1, keepdim=True), n + 1


def test_wrong_offline_reference_is_named_as_a_suspect(tmp_path):
    model = declare_step(ChunkNormalised(), input=IN, outputs=["y"], states={"n": ("batch", 1)})
    path = str(tmp_path / "m.onnx")
    card = export_onnx(model, path)
    with pytest.raises(ParityError) as e:
        verify_file(path, reference=model, seconds=3.0)
    assert any("the reference itself may be the wrong one" in n and "reference=" in n for n in e.value.report.notes)


# -- the guard, for hand-written StreamingModule subclasses -----------------------------------------
class HandWrittenWithBuffer(StreamingModule):
    input_name, output_names, input_dim = "x", ("y",), F

    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(F, F, batch_first=True)
        self.register_buffer("h", torch.zeros(1, 1, F))

    def state_decls(self):
        return []

    def step(self, x):
        y, h = self.gru(x, self.h)
        self.h = h
        return (y,)


def test_guard_names_a_batch_one_buffer_instead_of_crashing_at_batch_two(tmp_path):
    with pytest.raises(UndeclaredStateError, match=r"changes buffer 'h'.*declare_step\(module"):
        export_onnx(HandWrittenWithBuffer(), str(tmp_path / "m.onnx"))


class ScriptedState(nn.Module):
    def __init__(self):
        super().__init__()
        self._state = torch.zeros(0)
        self._calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._state.numel() == 0:
            self._state = torch.zeros(x.shape[0], x.shape[2])
        self._state = self._state + x.sum(1)
        self._calls = self._calls + 1
        return x + self._state.unsqueeze(1)


class HandWrittenAroundScript(StreamingModule):
    input_name, output_names, input_dim = "x", ("y",), F

    def __init__(self):
        super().__init__()
        self.inner = torch.jit.script(ScriptedState())

    def state_decls(self):
        return [StateDecl("unused", ("batch", 1))]

    def step(self, x, unused):
        return self.inner(x), unused


def test_guard_reads_scripted_attributes_before_running(tmp_path):
    with pytest.raises(UndeclaredStateError, match=r"TorchScript attribute 'inner._state' \(Tensor\).*"
                                                   r"TorchScript attribute 'inner._calls' \(int\)"):
        export_onnx(HandWrittenAroundScript(), str(tmp_path / "m.onnx"))
