"""Small ONNX graph passes the quantization recipes need (onnx + numpy only).

- the state inputs' defaults leave before every quantization tool and come back after
  (:mod:`stateport.verify.state_defaults`): ONNX Runtime's quantizers take any input that has an
  initializer for a *constant weight* and would quantize (and replace) it.
- :func:`qdq_lstm`: ONNX Runtime's QDQ quantizer has no LSTM handler, which would leave most of
  an LSTM model's weights in float32. This pass stores W and R as int8 (symmetric, one scale per
  gate row) behind DequantizeLinear, and puts a calibrated Q/DQ pair on the LSTM's input X.
- :func:`fold_weight_quantize`: a QAT export writes ``QuantizeLinear(float weight) ->
  DequantizeLinear``; folding the constant QuantizeLinear stores the weight as int8 (4x smaller)
  and computes the same numbers.
- :func:`int8_weights`: int8 weights behind a DequantizeLinear for ops computed in float (the
  dynamic recipe's convolutions): ONNX Runtime's quantizer has no weight-only mode for Conv.
- :func:`floor_anchored_qparams`: the int8 grid whose lowest level is a clamp's floor, for QAT's
  fake quantizers after a ``Clip(min)`` (see there).
"""

from __future__ import annotations

import os

import numpy as np

INT8_MIN, INT8_MAX = -128, 127


def file_size_bytes(path: str | os.PathLike) -> int:
    return os.path.getsize(os.fspath(path))


def _initializers(proto) -> dict:
    return {i.name: i for i in proto.graph.initializer}


def _constant_value(proto, name: str, inits: dict, constants: dict):
    """The numpy value of an initializer or a Constant node's output, else None."""
    from onnx import numpy_helper

    if name in inits:
        return numpy_helper.to_array(inits[name])
    if name in constants:
        return constants[name]
    return None


def _constant_nodes(proto) -> dict:
    from onnx import numpy_helper

    out = {}
    for node in proto.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    out[node.output[0]] = numpy_helper.to_array(attr.t)
    return out


def affine_qparams(low: float, high: float, *, symmetric: bool) -> tuple[np.float32, np.int8]:
    """int8 scale and zero point covering ``[low, high]`` (which is widened to include 0)."""
    low, high = min(float(low), 0.0), max(float(high), 0.0)
    if symmetric:
        scale = max(abs(low), abs(high)) / INT8_MAX
        zero_point = 0
    else:
        scale = (high - low) / (INT8_MAX - INT8_MIN)
        zero_point = 0 if scale == 0 else int(round(INT8_MIN - low / scale))
    scale = scale if scale > 0 else 1.0  # an all-zero tensor: any scale represents it exactly
    return np.float32(scale), np.int8(np.clip(zero_point, INT8_MIN, INT8_MAX))


def floor_anchored_qparams(floor: float, high: float) -> tuple[np.float32, np.int8] | None:
    """int8 scale and zero point whose lowest level (-128) is exactly ``floor`` (< 0) and whose range reaches ``high``.

    Why: an activation clamped below at ``floor`` (``Clip(min=floor)``, e.g. the speech embedding's
    ``max(x, -0.4)``) is then quantized with a grid that starts at the clamp, so the quantizer's
    own saturation *is* the clamp: ``Q(Clip(x)) == Q(x)`` for every x. ONNX Runtime removes a
    ``Clip -> QuantizeLinear`` pair's Clip only when the quantizer's float range lies inside the
    clip's (ClipQuantFusion, to float epsilon); a min/max calibrator's zero point rounds the low
    end to anywhere within half a step of ``floor``, so about half the clamps stayed, and with
    them a float island (DequantizeLinear, LeakyRelu, Clip, QuantizeLinear: measured 0.39 of
    1.64 ms per step of the built-in model's static int8 graph). Chosen: the largest zero
    point whose grid ``floor + k * scale`` (``scale = -floor / (128 + zp)``) still reaches ``high``,
    i.e. the finest such grid. None when no int8 grid anchored at ``floor`` reaches ``high``
    (``high > 255 * -floor``).
    """
    floor, high = float(floor), max(float(high), 0.0)
    if not floor < 0:
        raise ValueError(f"floor must be negative; got {floor}")
    if high > -floor * (INT8_MAX - INT8_MIN):
        return None
    zp = INT8_MAX - 1
    while zp > INT8_MIN and -floor * (INT8_MAX - zp) / (-INT8_MIN + zp) < high:
        zp -= 1
    scale = np.float32(-floor / (-INT8_MIN + zp))
    # ONNX Runtime checks scale * (-128 - zp) >= floor in float32: keep the rounding on that side.
    while np.float32(scale * np.float32(INT8_MIN - zp)) < np.float32(floor):
        scale = np.nextafter(scale, np.float32(0))
    return np.float32(scale), np.int8(zp)


def quantize_per_row(weight: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per slice along ``axis``: (int8 weight, float32 scales [weight.shape[axis]])."""
    reduce_axes = tuple(a for a in range(weight.ndim) if a != axis)
    absmax = np.abs(weight).max(axis=reduce_axes)
    scale = np.where(absmax > 0, absmax / INT8_MAX, 1.0).astype(np.float32)
    shape = [1] * weight.ndim
    shape[axis] = -1
    q = np.clip(np.rint(weight / scale.reshape(shape)), -INT8_MAX, INT8_MAX).astype(np.int8)
    return q, scale


def qdq_lstm(proto, input_ranges: dict, *, symmetric_activations: bool = False) -> list[str]:
    """Quantize every LSTM's W and R to int8 and Q/DQ its input X (in place); returns the LSTM names.

    ``input_ranges``: tensor name -> (low, high) from calibration; an LSTM whose X has no range
    keeps X in float (its weights are still stored int8). Bias and the state inputs stay float.
    """
    from onnx import helper, numpy_helper

    inits = _initializers(proto)
    new_nodes, new_inits, done = [], [], []
    for node in proto.graph.node:
        if node.op_type != "LSTM":
            new_nodes.append(node)
            continue
        tag = (node.name or f"lstm{len(done)}").replace("/", "_").strip("_")
        for slot in (1, 2):  # W [D, 4H, I], R [D, 4H, H]: one scale per gate row (axis 1)
            name = node.input[slot]
            if name not in inits:
                continue
            w = numpy_helper.to_array(inits[name])
            q, scale = quantize_per_row(w.astype(np.float32), axis=1)
            qn, sn, zn, dq = f"{tag}_w{slot}_int8", f"{tag}_w{slot}_scale", f"{tag}_w{slot}_zp", f"{tag}_w{slot}_dq"
            new_inits += [numpy_helper.from_array(q, qn), numpy_helper.from_array(scale, sn),
                          numpy_helper.from_array(np.zeros_like(scale, dtype=np.int8), zn)]
            new_nodes.append(helper.make_node("DequantizeLinear", [qn, sn, zn], [dq], name=f"{tag}_w{slot}_DQ", axis=1))
            node.input[slot] = dq
        x = node.input[0]
        if x in input_ranges:
            scale, zp = affine_qparams(*input_ranges[x], symmetric=symmetric_activations)
            sn, zn = f"{tag}_x_scale", f"{tag}_x_zp"
            new_inits += [numpy_helper.from_array(np.array(scale, np.float32), sn),
                          numpy_helper.from_array(np.array(zp, np.int8), zn)]
            new_nodes.append(helper.make_node("QuantizeLinear", [x, sn, zn], [f"{tag}_x_q"], name=f"{tag}_x_Q"))
            new_nodes.append(helper.make_node("DequantizeLinear", [f"{tag}_x_q", sn, zn], [f"{tag}_x_dq"],
                                              name=f"{tag}_x_DQ"))
            node.input[0] = f"{tag}_x_dq"
        new_nodes.append(node)
        done.append(node.name)
    del proto.graph.node[:]
    proto.graph.node.extend(new_nodes)
    proto.graph.initializer.extend(new_inits)
    _drop_unused_initializers(proto)
    return done


def int8_weights(proto, op_types=("Conv",), *, axis: int = 0) -> list[str]:
    """Store the constant weight (input 1) of every ``op_types`` node as int8 behind a DequantizeLinear (in place).

    Symmetric int8, one scale per output channel (``axis`` 0 of a Conv weight); the op itself
    keeps computing in float on the dequantized weight, so the file shrinks ~4x for those layers
    and the arithmetic is the float op's. Written here because ONNX Runtime's quantizer has no
    weight-only mode for Conv (``quantize_dynamic`` turns a Conv into ConvInteger, which the
    dynamic recipe measured slower and less accurate: see :class:`~.recipes.DynamicInt8Config`).
    Returns the names of the nodes whose weights were stored int8.
    """
    from onnx import helper, numpy_helper

    inits = _initializers(proto)
    new_nodes, new_inits, done = [], [], []
    for node in proto.graph.node:
        name = node.input[1] if node.op_type in op_types and len(node.input) > 1 else None
        if name in inits and inits[name].data_type == 1:  # float32 constant weight
            q, scale = quantize_per_row(numpy_helper.to_array(inits[name]), axis=axis)
            tag = name.replace("/", "_").strip("_")
            new_inits += [numpy_helper.from_array(q, f"{tag}_int8"), numpy_helper.from_array(scale, f"{tag}_scale"),
                          numpy_helper.from_array(np.zeros_like(scale, dtype=np.int8), f"{tag}_zp")]
            new_nodes.append(helper.make_node("DequantizeLinear", [f"{tag}_int8", f"{tag}_scale", f"{tag}_zp"],
                                              [f"{tag}_dq"], name=f"{tag}_DQ", axis=axis))
            node.input[1] = f"{tag}_dq"
            done.append(node.name)
        new_nodes.append(node)
    del proto.graph.node[:]
    proto.graph.node.extend(new_nodes)
    proto.graph.initializer.extend(new_inits)
    _drop_unused_initializers(proto)
    return done


def fold_weight_quantize(proto) -> int:
    """Replace ``QuantizeLinear(constant float)`` by its int8 result (in place); returns how many."""
    from onnx import numpy_helper

    inits = _initializers(proto)
    constants = _constant_nodes(proto)
    folded, keep = 0, []
    for node in proto.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] in inits:
            x = numpy_helper.to_array(inits[node.input[0]]).astype(np.float32)
            scale = _constant_value(proto, node.input[1], inits, constants)
            zp = _constant_value(proto, node.input[2], inits, constants) if len(node.input) > 2 else None
            if scale is not None and (zp is not None or len(node.input) <= 2):
                axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
                zp = np.zeros_like(scale, dtype=np.int8) if zp is None else zp
                shape = [1] * x.ndim
                if scale.ndim == 1 and scale.size > 1:
                    shape[axis] = -1
                    scale_b, zp_b = scale.reshape(shape), zp.reshape(shape).astype(np.int32)
                else:
                    scale_b, zp_b = scale, zp.astype(np.int32)
                # Round half to even, as QuantizeLinear (and torch's fake quantize) do.
                q = np.clip(np.rint(x / scale_b) + zp_b, INT8_MIN, INT8_MAX).astype(zp.dtype)
                proto.graph.initializer.append(numpy_helper.from_array(q, node.output[0]))
                folded += 1
                continue
        keep.append(node)
    del proto.graph.node[:]
    proto.graph.node.extend(keep)
    _drop_unused_initializers(proto)
    return folded


def _drop_unused_initializers(proto) -> None:
    used = {i for n in proto.graph.node for i in n.input} | {o.name for o in proto.graph.output}
    used |= {i.name for i in proto.graph.input}
    kept = [i for i in proto.graph.initializer if i.name in used]
    del proto.graph.initializer[:]
    proto.graph.initializer.extend(kept)


def op_histogram(proto) -> dict:
    """Op type -> count, for reports (e.g. how many DequantizeLinear a recipe produced)."""
    counts: dict = {}
    for n in proto.graph.node:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    return dict(sorted(counts.items()))


def weight_bytes_by_dtype(proto) -> dict:
    """Initializer bytes per dtype name: shows where the size went (e.g. {"int8": ..., "float32": ...})."""
    from onnx import helper

    out: dict = {}
    for init in proto.graph.initializer:
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(init.data_type))
        n = int(np.prod(init.dims)) if len(init.dims) else 1
        out[dtype.name] = out.get(dtype.name, 0) + n * dtype.itemsize
    return out


MOVEMENT_OPS = ("Slice", "Concat", "Unsqueeze", "Squeeze", "Reshape", "Transpose", "Identity")


def fold_dequantize_movement(proto) -> int:
    """Move data-movement chains after a constant DequantizeLinear into the int8 weights (in place).

    The TorchScript exporter writes an LSTM's gate weights as ``DQ(int8) -> Slice x4 -> Concat ->
    Unsqueeze`` (torch's gate order ifgo becomes ONNX's iofc) and a Linear's as ``DQ -> Transpose``.
    ONNX Runtime does not constant-fold through DequantizeLinear, so that chain would run on every
    call (measured: 3x the step time of the tiny model). Here the chain is evaluated once on the
    dequantized values and on the broadcast scales, and replaced by one DequantizeLinear of the
    rearranged int8 tensor along whatever axis the scales ended up on. Returns how many were folded.
    """
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    inits = _initializers(proto)
    constants = _constant_nodes(proto)
    consumers: dict = {}
    for n in proto.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def const(name):
        return _constant_value(proto, name, inits, constants)

    folded = 0
    for dq in [n for n in proto.graph.node if n.op_type == "DequantizeLinear"]:
        q = const(dq.input[0])
        if q is None or any(const(i) is None for i in dq.input[1:]):
            continue
        # Collect the movement ops fed (directly or not) only by this DQ, and the tensors leaving them.
        chain, frontier, ends = [], [dq.output[0]], []
        while frontier:
            t = frontier.pop()
            users = consumers.get(t, [])
            movers = [u for u in users if u.op_type in MOVEMENT_OPS]
            if not movers or len(movers) != len(users):
                ends.append(t)
                continue
            for u in movers:
                if u not in chain:
                    chain.append(u)
                    frontier.extend(u.output)
        if not chain or len(ends) != 1:
            continue
        end = ends[0]
        axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
        scale = const(dq.input[1]).astype(np.float32)
        zp = const(dq.input[2]) if len(dq.input) > 2 and dq.input[2] else np.zeros_like(scale, dtype=np.int8)
        shape = [1] * q.ndim
        if scale.ndim == 1 and q.ndim > 1:
            shape[axis] = -1
        s_full = np.broadcast_to(scale.reshape(shape), q.shape).astype(np.float32)
        z_full = np.broadcast_to(zp.reshape(shape), q.shape).astype(np.float32)
        ordered = [n for n in proto.graph.node if n in chain]
        side = {i for n in ordered for i in n.input if i and i not in {o for c in ordered for o in c.output}
                and i != dq.output[0]}
        if any(const(i) is None for i in side):
            continue
        graph = helper.make_graph(ordered, "chain", [helper.make_tensor_value_info(dq.output[0], 1, q.shape)],
                                  [helper.make_tensor_value_info(end, 1, None)],
                                  [numpy_helper.from_array(np.asarray(const(i)), i) for i in sorted(side)])
        model = helper.make_model(graph, opset_imports=list(proto.opset_import))
        run = ReferenceEvaluator(model)
        moved_q = run.run(None, {dq.output[0]: q.astype(np.float32)})[0]
        moved_s = run.run(None, {dq.output[0]: s_full})[0]
        moved_z = run.run(None, {dq.output[0]: z_full})[0]
        new_axis = next((a for a in range(moved_s.ndim)
                         if np.all(moved_s == moved_s.max(axis=tuple(b for b in range(moved_s.ndim) if b != a),
                                                           keepdims=True))), None)
        if new_axis is None:
            continue
        reduce = tuple(b for b in range(moved_s.ndim) if b != new_axis)
        tag = (dq.name or dq.output[0]).replace("/", "_").strip("_") + "_moved"
        new_scale = moved_s.max(axis=reduce) if moved_s.ndim > 1 else moved_s
        new_zp = moved_z.max(axis=reduce).astype(zp.dtype) if moved_s.ndim > 1 else moved_z.astype(zp.dtype)
        proto.graph.initializer.extend([numpy_helper.from_array(moved_q.astype(q.dtype), tag + "_q"),
                                        numpy_helper.from_array(new_scale.astype(np.float32), tag + "_scale"),
                                        numpy_helper.from_array(new_zp, tag + "_zp")])
        new_dq = helper.make_node("DequantizeLinear", [tag + "_q", tag + "_scale", tag + "_zp"], [end],
                                  name=tag, axis=int(new_axis))
        drop = set(id(n) for n in chain) | {id(dq)}
        nodes = [n for n in proto.graph.node if id(n) not in drop]
        # Keep topological order: the new DQ goes where the chain's last node was.
        last = max(i for i, n in enumerate(proto.graph.node) if id(n) in drop)
        before = sum(1 for n in list(proto.graph.node)[:last] if id(n) not in drop)
        nodes.insert(before, new_dq)
        del proto.graph.node[:]
        proto.graph.node.extend(nodes)
        folded += 1
        consumers = {}
        for n in proto.graph.node:
            for i in n.input:
                consumers.setdefault(i, []).append(n)
        inits = _initializers(proto)
    _drop_dead_nodes(proto)
    _drop_unused_initializers(proto)
    return folded


def _drop_dead_nodes(proto) -> None:
    """Remove nodes whose outputs nobody uses (e.g. Constants a folded chain needed)."""
    while True:
        used = {i for n in proto.graph.node for i in n.input} | {o.name for o in proto.graph.output}
        keep = [n for n in proto.graph.node if any(o in used for o in n.output)]
        if len(keep) == len(proto.graph.node):
            return
        del proto.graph.node[:]
        proto.graph.node.extend(keep)


# Ops that carry a quantized value to an output without changing its grid spacing by more than
# an additive constant (a bias add keeps the step size) or a layout change.
_GRID_PRESERVING = {"Add", "Identity", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten"}


def output_quantization_step(proto, port: str) -> float | None:
    """The step (scale) of the last DequantizeLinear feeding output ``port``, if there is one.

    Why it matters: ONNX Runtime's float kernels differ by ~1e-7 between chunk lengths, and a
    QuantizeLinear downstream turns such a difference into a whole step when a value sits on a
    rounding boundary. So a static int8 graph streamed can differ from itself run offline by one
    output step (measured: 0.0918 on the built-in model's logits, whose step is 0.0918), and no
    fixed tolerance smaller than that step can hold.
    """
    from onnx import numpy_helper

    inits = {i.name: i for i in proto.graph.initializer}
    producer = {o: n for n in proto.graph.node for o in n.output}
    name, seen = port, set()
    while name in producer and name not in seen:
        seen.add(name)
        node = producer[name]
        if node.op_type == "DequantizeLinear":
            scale = inits.get(node.input[1])
            return float(np.max(numpy_helper.to_array(scale))) if scale is not None else None
        if node.op_type not in _GRID_PRESERVING:
            return None
        # Follow the non-constant input (a bias or shape is an initializer).
        dynamic = [i for i in node.input if i and i not in inits]
        if len(dynamic) != 1:
            return None
        name = dynamic[0]
    return None
