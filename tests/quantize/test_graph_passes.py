"""The graph passes the int8 recipes add to ONNX Runtime's quantizer: clamp-anchored grids, int8 conv weights."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

from stateport.quantize.onnx_graph import INT8_MAX, INT8_MIN, floor_anchored_qparams, int8_weights


@pytest.mark.parametrize("floor,high", [(-0.4, 3.0), (-0.4, 0.01), (-0.4, 101.0), (-1.0, 7.5), (-0.05, 12.0)])
def test_floor_anchored_grid_starts_at_the_floor_and_reaches_the_top(floor, high):
    scale, zp = floor_anchored_qparams(floor, high)
    assert scale.dtype == np.float32 and zp.dtype == np.int8
    # ONNX Runtime's ClipQuantFusion test, in float32: the quantizer's lowest level is not below the clamp.
    lowest = np.float32(scale * np.float32(INT8_MIN - int(zp)))
    assert lowest >= np.float32(floor) and lowest - floor < 1e-6
    assert float(scale) * (INT8_MAX - int(zp)) >= high * (1 - 1e-6)
    # The finest such grid: one more zero-point step would not reach ``high``.
    if zp < INT8_MAX - 1:
        finer = -floor / (-INT8_MIN + int(zp) + 1)
        assert finer * (INT8_MAX - int(zp) - 1) < high


def test_floor_anchored_grid_refuses_a_range_it_cannot_cover():
    assert floor_anchored_qparams(-0.01, 3.0) is None  # 255 steps of 0.01 end at 2.54
    with pytest.raises(ValueError):
        floor_anchored_qparams(0.0, 1.0)


def test_quantizing_after_the_clamp_is_the_clamp():
    """Q(max(x, floor)) == Q(x) for every x on the anchored grid: the clamp is the quantizer's saturation."""
    scale, zp = floor_anchored_qparams(-0.4, 5.0)
    x = np.linspace(-8, 6, 20001).astype(np.float32)

    def q(v):
        return np.clip(np.rint(v / scale) + int(zp), INT8_MIN, INT8_MAX)

    assert np.array_equal(q(np.maximum(x, np.float32(-0.4))), q(x))


def _conv_model(w: np.ndarray, b: np.ndarray) -> onnx.ModelProto:
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1], name="conv")], "g",
                              [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, w.shape[1], 12, 12])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_int8_weights_store_conv_weights_int8_and_compute_the_float_conv():
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.2, (16, 8, 3, 3)).astype(np.float32)
    w[3] *= 10  # channels with very different ranges: one scale per output channel
    b = rng.normal(size=16).astype(np.float32)
    proto = _conv_model(w, b)
    fp32_bytes = len(proto.SerializeToString())
    assert int8_weights(proto) == ["conv"]
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    dq = next(n for n in proto.graph.node if n.op_type == "DequantizeLinear")
    assert inits[dq.input[0]].dtype == np.int8 and inits[dq.input[0]].shape == w.shape
    assert next(a.i for a in dq.attribute if a.name == "axis") == 0
    scales = inits[dq.input[1]]
    assert scales.shape == (16,) and np.allclose(scales, np.abs(w).reshape(16, -1).max(1) / 127)
    assert "w" not in inits and len(proto.SerializeToString()) < 0.4 * fp32_bytes
    x = rng.normal(size=(1, 8, 12, 12)).astype(np.float32)

    def run(m):
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        return ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]

    got, ref = run(proto), run(_conv_model(w, b))
    # Each weight moves by at most half its channel's step: the output by at most sum |x| * step / 2.
    bound = (np.abs(x).sum() * scales.max() / 2)
    assert 0 < np.abs(got - ref).max() < bound
    assert np.abs(got - ref).max() < 0.02 * np.abs(ref).max()
