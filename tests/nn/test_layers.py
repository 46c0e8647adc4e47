"""Every streaming layer: step over ragged chunks with state carried == forward over the whole."""

import numpy as np
import pytest
import torch

from stateport.nn import CausalConv1d, RunningMeanNorm, StreamingGRU, StreamingLSTM, StreamingLSTMCell

RAGGED = [1, 7, 3, 16, 1, 1, 29, 4, 8, 30]  # 100 frames


def stream(layer, x, lengths, time_dim):
    state = layer.init_state(x.shape[0])
    outs, a = [], 0
    for n in lengths:
        y, *state = layer.step(x.narrow(time_dim, a, n), *state)
        outs.append(y)
        a += n
    return torch.cat(outs, dim=time_dim)


@pytest.mark.parametrize("make, time_dim, shape", [
    (lambda: StreamingLSTM(6, 10, 2), 1, (3, 100, 6)),
    (lambda: StreamingGRU(6, 10, 3), 1, (3, 100, 6)),
    (lambda: StreamingLSTMCell(6, 10), 1, (3, 100, 6)),
    (lambda: CausalConv1d(6, 5, 5, dilation=3), 2, (3, 6, 100)),
    (lambda: CausalConv1d(6, 6, 3, dilation=2, groups=6), 2, (3, 6, 100)),
    (lambda: RunningMeanNorm(6, prior_frames=10.0), 1, (3, 100, 6)),
])
def test_step_over_ragged_chunks_equals_forward(make, time_dim, shape):
    torch.manual_seed(0)
    layer = make().eval()
    x = torch.randn(shape)
    with torch.no_grad():
        full = layer(x)
        for lengths in (RAGGED, [1] * 100, [100]):
            got = stream(layer, x, lengths, time_dim)
            assert float((got - full).abs().max()) < 1e-5


def test_lstmcell_layer_equals_the_plain_cell_loop():
    torch.manual_seed(1)
    layer = StreamingLSTMCell(6, 10).eval()
    x = torch.randn(2, 40, 6)
    h, c = layer.init_state(2)
    with torch.no_grad():
        fused = layer.step(x, h, c)
        loop = layer.step_reference(x, h, c)
    for a, b in zip(fused, loop):
        assert float((a - b).abs().max()) < 1e-5


def test_state_declarations_carry_batch_axes():
    assert [d.batch_axis for d in StreamingLSTM(4, 8, 2).state_decls()] == [1, 1]
    assert [d.batch_axis for d in StreamingLSTMCell(4, 8).state_decls()] == [0, 0]
    conv = CausalConv1d(4, 4, 3, dilation=4)
    assert conv.state_decls()[0].concrete_shape(2) == (2, 4, 8)  # (k-1)*d frames of context
    assert CausalConv1d(4, 4, 1).state_decls() == []


def test_model_discovers_and_names_layer_states():
    from toy_models import CausalConvModel

    names = [d.name for d in CausalConvModel().state_decls()]
    assert names == ["conv1_buf", "conv2_buf"]
    assert np.prod(CausalConvModel().state_decls()[1].concrete_shape(1)) == 16 * 4


def test_running_mean_norm_removes_a_channel_offset_and_keeps_bounded_state():
    """A constant per-bin offset (a microphone) is subtracted once the mean has settled;
    the carried state is a mean and a frame count, not a growing sum."""
    torch.manual_seed(0)
    layer = RunningMeanNorm(4, prior_frames=20.0)
    speech = 0.5 * torch.randn(2, 3000, 4)  # stays inside the +-5 clamp with the offset added
    offset = torch.tensor([2.0, -1.5, 0.5, 2.5])
    y_plain, *_ = layer.step(speech, *layer.init_state(2))
    y_shift, mean, count = layer.step(speech + offset, *layer.init_state(2))
    # After 10 s of frames the outputs no longer depend on the offset (within the 1/t residue).
    assert float((y_shift[:, 1000:] - y_plain[:, 1000:]).abs().max()) < 0.05
    assert count.dtype == mean.dtype == torch.float64  # float64: see RunningMeanNorm's docstring
    assert torch.equal(count, torch.full((2, 1), 3000.0, dtype=torch.float64))
    assert float((mean - offset).abs().max()) < 0.1  # the state is the offset plus speech's own mean
    # Digital silence (log of zero energy) is clamped before it reaches the mean.
    _, mean_silence, _ = layer.step(torch.full((1, 200, 4), -40.0), *layer.init_state(1))
    assert float(mean_silence.min()) >= -5.0
    assert all(not d.reset_on_end_of_speech for d in layer.state_decls())
