"""Post-training recipes on an fp32 stateport ONNX file: dynamic int8, static int8 (QDQ), fp16.

Each function takes the fp32 model (path) and its card and returns ``(ModelProto, info)``; the
card, the proofs and the file are the job of :mod:`stateport.quantize.api`. The state inputs'
default initializers are taken out around every tool call (see :mod:`.onnx_graph`) so that no
tool mistakes a state port for a constant.
"""

from __future__ import annotations

import os
import tempfile

from ..spec import ModelCard
from .calibration import StateLoopReader
from ..verify.state_defaults import restore_state_defaults, strip_state_defaults
from .onnx_graph import int8_weights, qdq_lstm
from .recipes import DynamicInt8Config, Fp16Config, StaticInt8Config


def _stripped_copy(fp32_path: str, card: ModelCard, tmp: str):
    import onnx

    proto = onnx.load(fp32_path)
    removed = strip_state_defaults(proto, [s.name for s in card.states])
    path = os.path.join(tmp, "stripped.onnx")
    onnx.save(proto, path)
    return path, removed


def quantize_dynamic_int8(fp32_path: str, card: ModelCard, cfg: DynamicInt8Config):
    """``onnxruntime.quantization.quantize_dynamic``: LSTM -> DynamicQuantizeLSTM, MatMul -> MatMulInteger;
    convolutions as ``cfg.conv`` says (int8 weights computed in float by default)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    op_types = list(cfg.op_types) + (["Conv"] if cfg.conv == "integer" else [])
    with tempfile.TemporaryDirectory(prefix="stateport-q-") as tmp:
        src, removed = _stripped_copy(fp32_path, card, tmp)
        out = os.path.join(tmp, "q.onnx")
        quantize_dynamic(src, out, op_types_to_quantize=op_types, per_channel=cfg.per_channel,
                         reduce_range=cfg.reduce_range, weight_type=QuantType.QInt8)
        proto = onnx.load(out)
    weight_only = int8_weights(proto, ("Conv",)) if cfg.conv == "weight-only" else []
    restore_state_defaults(proto, removed)
    float_compute = [n.name for n in proto.graph.node if n.op_type == "Conv"]
    return proto, {"tool": _ort_tool(), "int8_weights_float_compute": weight_only,
                   "float_nodes": float_compute, "float_nodes_why": _DYNAMIC_CONV_WHY[cfg.conv] if float_compute
                   else None}


_DYNAMIC_CONV_WHY = {
    "weight-only": "convolutions: int8 weights, float compute (ONNX Runtime's dynamic conv, ConvInteger, was "
                   "measured slower than the float conv and less accurate; see DynamicInt8Config.conv)",
    "float": "convolutions left float by the recipe (conv='float')",
    "integer": None,
}


LAYER_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")  # ops with weights: what "the first layer" means


def input_layer_nodes(proto, input_name: str, op_types) -> list[str]:
    """Names of the first ``op_types`` nodes downstream of ``input_name`` (not past an LSTM/GRU/RNN).

    A breadth-first walk from the feature input through elementwise/shape nodes; it stops at
    the first quantizable nodes it meets (they are returned) and at recurrent nodes (those
    are quantized by their own pass, and what follows them no longer sees raw features). It
    does not follow a ``Shape``/``Size``: the input's dimensions are not its values (the
    built-in model's batch size reaches every state's ``Where`` that way).
    """
    consumers: dict = {}
    for node in proto.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    found, seen, frontier = [], set(), [input_name]
    while frontier:
        tensor = frontier.pop(0)
        for node in consumers.get(tensor, []):
            if node.name in seen:
                continue
            seen.add(node.name)
            if node.op_type in op_types:
                found.append(node.name)
            elif node.op_type not in ("LSTM", "GRU", "RNN", "Shape", "Size"):
                frontier.extend(node.output)
    return found


def state_normalised_nodes(proto, input_name: str, state_inputs) -> set[str]:
    """Names of the nodes downstream of a normaliser carried in state: a ``Sub``/``Div`` of the signal
    by something a state input feeds (an online mean), not a buffer a state merely extends.

    ONNX keeps graph nodes in topological order, so one forward pass carries each dependency.
    """
    from_state, from_input, normalised, names = set(state_inputs), {input_name}, set(), set()
    # Index arithmetic (shapes, slice bounds) is not a normaliser: tensors computed only from shapes
    # and constants are followed apart, and never carry the normalised mark.
    constant = {t.name for t in proto.graph.initializer} - set(state_inputs)  # a state's default is not constant
    shapes = set()
    for node in proto.graph.node:
        ins = [i for i in node.input if i]
        if node.op_type in ("Shape", "Size", "Constant") or (ins and all(i in shapes or i in constant for i in ins)):
            shapes.update(node.output)
            continue
        data = [i for i in ins if i not in shapes and i not in constant]
        if any(i in normalised for i in data) or (
                node.op_type in ("Sub", "Div") and len(data) == 2
                and data[0] in from_input and data[1] in from_state):
            names.add(node.name)
            normalised.update(node.output)
        if any(i in from_state for i in ins):
            from_state.update(node.output)
        if any(i in from_input for i in ins):
            from_input.update(node.output)
    return names


def float_input_layer_nodes(proto, card: ModelCard, op_types, setting: bool | None) -> list[str]:
    """The first-layer nodes ``static-int8`` leaves float (``StaticInt8Config.float_input_layer``).

    ``None`` (auto): those whose features an online normaliser carried in state has scaled (their
    range follows the speaker: measured to cost 8 WER points quantised), none otherwise.
    """
    if setting is False:
        return []
    first = input_layer_nodes(proto, card.inputs[0].name, op_types)
    if setting:
        return first
    normalised = state_normalised_nodes(proto, card.inputs[0].name, [s.name for s in card.states])
    return [n for n in first if n in normalised]


def quantize_static_int8(fp32_path: str, card: ModelCard, cfg: StaticInt8Config, streams: list):
    """QDQ static quantization calibrated by :class:`StateLoopReader` over ``streams`` of features.

    Returns the model and info holding the calibration reader's state ranges (what each state
    input was fed) and the LSTM input ranges used by :func:`.onnx_graph.qdq_lstm`.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
              "entropy": CalibrationMethod.Entropy}[cfg.method]
    fp32 = onnx.load(fp32_path)
    lstm_inputs = tuple(n.input[0] for n in fp32.graph.node if n.op_type == "LSTM") if cfg.quantize_lstm else ()
    reader = StateLoopReader(fp32_path, card, streams, max_steps=cfg.calibration.max_steps,
                             extra_outputs=lstm_inputs, full_chunks_only=cfg.method != "minmax")
    with tempfile.TemporaryDirectory(prefix="stateport-q-") as tmp:
        src, removed = _stripped_copy(fp32_path, card, tmp)
        out = os.path.join(tmp, "q.onnx")
        layer_ops = [t for t in cfg.op_types if t in LAYER_OPS]
        excluded = float_input_layer_nodes(fp32, card, layer_ops, cfg.float_input_layer)
        quantize_static(src, out, reader, quant_format=QuantFormat.QDQ, op_types_to_quantize=list(cfg.op_types),
                        nodes_to_exclude=excluded, per_channel=cfg.per_channel, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        calibrate_method=method,
                        extra_options={"ActivationSymmetric": cfg.activation_symmetric, "WeightSymmetric": True})
        proto = onnx.load(out)
    lstms = qdq_lstm(proto, reader.tensor_ranges, symmetric_activations=cfg.activation_symmetric) \
        if cfg.quantize_lstm else []
    restore_state_defaults(proto, removed)
    return proto, {"tool": _ort_tool(), "calibration_steps": reader.steps, "quantized_lstms": len(lstms),
                   "float_nodes": excluded,
                   "float_nodes_why": ("the first layer on the feature path, kept float ("
                                       + ("float_input_layer=True" if cfg.float_input_layer else
                                          "its input is scaled by an online normaliser carried in state, so its "
                                          "range follows the speaker") + ")") if excluded else None,
                   "state_ranges": {k: v.to_dict() for k, v in reader.state_ranges.items()},
                   "lstm_input_ranges": {k: [round(a, 6) for a in v] for k, v in reader.tensor_ranges.items()}}


def float64_nodes(proto) -> list[str]:
    """Names of the nodes that read or write a float64 tensor (e.g. an online-CMN sum).

    onnxconverter-common rewrites every ``Cast(to=float)`` into ``Cast(to=float16)``, also
    the one that leaves a float64 island, which yields a graph ONNX Runtime refuses to load.
    Such a node stays as it is (the converter casts at its edges): the island was put in
    float64 for exactness, so it keeps it in the fp16 graph too.
    """
    from onnx import TensorProto, shape_inference

    inferred = shape_inference.infer_shapes(proto)
    g = inferred.graph
    wide = {v.name for v in list(g.value_info) + list(g.input) + list(g.output)
            if v.type.tensor_type.elem_type == TensorProto.DOUBLE}
    return [n.name for n in g.node if wide & (set(n.input) | set(n.output))]


def state_broadcast_nodes(proto, state_names) -> list[str]:
    """Names of the nodes that broadcast a state input to the batch (export's ``FlatStep``: an Expand).

    A state input declares the batch dim ``batch``, like the audio, but its default initializer
    holds one stream, so offline with the defaults it is 1 while the audio's is N. ONNX Runtime
    assumes one symbolic name is one size, and plans buffer reuse by it. In fp32 the state input
    is only read (an input's buffer is never reused), but the fp16 converter puts a Cast between
    it and the Expand, and ONNX Runtime then reused that [2, 1, 128] Cast output for the LSTM's
    [2, N, 128] state output: offline runs of N > 1 streams failed ("Shape mismatch attempting to
    re-use buffer"; measured on the built-in model, batch 3). Kept in float32, the Expand reads
    the input itself and the Cast comes after it, where the batch is N. An Expand does no
    arithmetic: nothing of float16's character is lost.
    """
    states = set(state_names)
    return [n.name for n in proto.graph.node if n.op_type == "Expand" and n.input and n.input[0] in states]


def convert_fp16(fp32_path: str, card: ModelCard, cfg: Fp16Config):
    """float16 weights and compute; float32 graph inputs/outputs when ``keep_io_float32``."""
    import onnx

    from ..errors import MissingDependencyError

    try:
        from onnxconverter_common import float16
    except ImportError:
        raise MissingDependencyError("the fp16 recipe needs onnxconverter-common: pip install "
                                     "'stateport[quantize]'") from None
    proto = onnx.load(fp32_path)
    removed = strip_state_defaults(proto, [s.name for s in card.states])
    proto = float16.convert_float_to_float16(proto, keep_io_types=cfg.keep_io_float32,
                                             op_block_list=list(cfg.op_block_list) or None,
                                             node_block_list=(float64_nodes(proto) + state_broadcast_nodes(
                                                 proto, [st.name for st in card.states])) or None,
                                             disable_shape_infer=False)
    restore_state_defaults(proto, removed)
    import onnxconverter_common

    return proto, {"tool": f"onnxconverter-common {onnxconverter_common.__version__}",
                   "io_dtype": "float32" if cfg.keep_io_float32 else "float16"}


def _ort_tool() -> str:
    import onnxruntime

    return f"onnxruntime.quantization {onnxruntime.__version__}"
