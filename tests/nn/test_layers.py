"""Every streaming layer: step over ragged chunks with state carried == forward over the whole."""

import numpy as np
import pytest
import torch

from stateport.nn import CausalConv1d, StreamingGRU, StreamingLSTM, StreamingLSTMCell

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
