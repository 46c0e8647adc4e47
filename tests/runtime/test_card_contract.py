"""What a card asks of a client, done by the Recognizer for models declared with ``declare_step``: side
inputs computed per step, look-ahead frames fed and not advanced, batch-uniform states batched only
while equal; streamed (alone or batched) equals the model's whole-stream run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from stateport.export.backends.onnx_file import export_onnx
from stateport.nn import declare_step
from stateport.runtime.events import RawOutput
from stateport.runtime.recognizer import Recognizer
from stateport.runtime.session import OnnxStepSession
from toy_models import Counters

F = 8
IN = ("x", ("batch", "T", F))


class PositionalStep(nn.Module):
    """A sinusoid of the absolute frame index (``offset``: frames before this chunk) plus a running sum."""

    def forward(self, x, total, offset):
        t = offset.unsqueeze(1) + torch.arange(x.shape[1]).unsqueeze(0)
        y = x + torch.sin(t.to(x.dtype) / 7.0).unsqueeze(-1) + (total.unsqueeze(1) + x.cumsum(1)) / 100
        return y, total + x.sum(1)


class RightContextConv(nn.Module):
    """Sees 2 frames back and 3 ahead: each step takes its chunk plus 3 look-ahead frames."""

    R = 3

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(F, F, 2 + self.R + 1)

    def forward(self, x, past):
        full = torch.cat([past, x], 1)
        y = self.conv(full.transpose(1, 2)).transpose(1, 2)
        end = full.shape[1] - self.R
        return y, full[:, end - 2:end]


def _export(tmp_path, name, module, **declare):
    torch.manual_seed(0)
    path = str(tmp_path / f"{name}.onnx")
    card = export_onnx(declare_step(module, input=IN, outputs=["y"], **declare), path)
    return path, card


class Counting(OnnxStepSession):
    def run_prepared(self, feeds):
        self.batches = getattr(self, "batches", [])
        self.batches.append(int(feeds["x"].shape[0]))
        return super().run_prepared(feeds)


def _stream_all(rec, signals, reads):
    """Each signal [T, F] fed in ragged reads to its own stream, all decoded together; per stream the
    main output's frames, concatenated."""
    streams = [rec.create_stream() for _ in signals]
    outs = [[] for _ in signals]
    fed = [0] * len(signals)
    while not all(s.is_closed for s in streams):
        for k, (s, x) in enumerate(zip(streams, signals)):
            if not s.is_finished:
                n = reads[(k + fed[k]) % len(reads)]
                s.accept_features(x[fed[k]:fed[k] + n])
                fed[k] += n
                if fed[k] >= x.shape[0]:
                    s.input_finished()
        while any(rec.is_ready(s) for s in streams):
            for k, events in enumerate(rec.decode_streams(streams)):
                outs[k] += [e.outputs["y"][0] for e in events if isinstance(e, RawOutput)]
    return [np.concatenate(o) if o else np.zeros((0, F), np.float32) for o in outs]


def _signals(lengths, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((n, F)).astype(np.float32) for n in lengths]


def _offline(path, x, extra=None):
    sess = OnnxStepSession(path, allow_uncertified=True)
    feeds = {"x": x[None], **(extra or {})}
    return sess.session.run(["y"], feeds)[0][0]


def test_side_input_stream_offset_is_fed(tmp_path):
    path, card = _export(tmp_path, "positional", PositionalStep(), states={"total": ("batch", F)},
                         side_inputs={"offset": "stream_offset"})
    assert card.inputs[1].side_role == "stream_offset"
    session = Counting(path, allow_uncertified=True)
    rec = Recognizer(session)
    signals = _signals([37, 90, 64, 15])
    got = _stream_all(rec, signals, [5, 11, 23, 2])
    for x, y in zip(signals, got):
        assert np.abs(y - _offline(path, x, {"offset": np.zeros(1, np.int64)})).max() < 1e-4
    assert max(session.batches) >= 2


def test_lookahead_frames_are_fed_and_not_advanced(tmp_path):
    path, card = _export(tmp_path, "lookahead", RightContextConv(), states={"past": ("batch", 2, F)}, chunk=8,
                         lookahead=RightContextConv.R)
    st = card.streaming
    assert (st.frames_per_step, st.frames_advanced_per_step, st.lookahead_frames) == (11, 8, 3)
    rec = Recognizer(OnnxStepSession(path, allow_uncertified=True))
    signals = _signals([40, 29, 71], seed=1)
    got = _stream_all(rec, signals, [3, 9, 20])
    for x, y in zip(signals, got):
        offline = _offline(path, x)  # the whole stream at once: outputs for all but the last R frames
        assert y.shape == offline.shape == (x.shape[0] - 3, F)
        assert np.abs(y - offline).max() < 1e-4


def test_batch_uniform_state_batches_only_equal_streams(tmp_path):
    path, card = _export(tmp_path, "counters", Counters(F))
    frames_state = card.states[0]
    assert frames_state.batch_uniform and frames_state.dtype == "int64" and card.states[1].dtype == "bool"
    session = Counting(path, allow_uncertified=True)
    rec = Recognizer(session)
    signals = _signals([48, 48, 80, 33], seed=2)
    signals[1][5] = 3.0  # one stream's latch turns on
    got = _stream_all(rec, signals, [16, 16, 7])  # streams reach each step with different counters
    for x, y in zip(signals, got):
        alone = Recognizer(OnnxStepSession(path, allow_uncertified=True))
        assert np.abs(y - _stream_all(alone, [x], [x.shape[0]])[0]).max() < 1e-5
        assert np.abs(y - _offline(path, x)).max() < 1e-4
    assert max(session.batches) >= 2  # streams whose counters agreed did share steps


@pytest.mark.parametrize("role", ["chunk_length"])
def test_chunk_length_side_input(tmp_path, role):
    class ChunkMean(nn.Module):
        """Uses the chunk length it is told (here equal to the frames it gets)."""

        def forward(self, x, n, length):
            return x * length.to(x.dtype).unsqueeze(-1).unsqueeze(-1) / 100 + n.unsqueeze(-1), n + 1

    path, card = _export(tmp_path, "chunklen", ChunkMean(), states={"n": ("batch", 1)},
                         side_inputs={"length": role}, chunk=16)
    rec = Recognizer(OnnxStepSession(path, allow_uncertified=True))
    x = _signals([37], seed=3)[0]
    (y,) = _stream_all(rec, [x], [37])
    steps = [16, 16, 5]
    expected = np.concatenate([x[a:a + n] * n / 100 + k for k, (a, n) in enumerate(zip([0, 16, 32], steps))])
    assert np.abs(y - expected).max() < 1e-5
