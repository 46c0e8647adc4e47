"""Proofs for reduced-precision artifacts, built from :func:`stateport.verify.prove_parity`.

Three questions, three measurements:

1. *Does the quantized graph stream like it runs offline?* :func:`stateport.verify.prove_self` runs prove_parity
   with the same file as reference (offline) and candidate (streamed, every chunking, batched),
   at the ONNX Runtime level the client uses. Static QDQ and fp16 graphs run fixed arithmetic, so
   this holds to ~1e-4; dynamic int8 re-scales every call, so it holds only to its recipe's bound.
2. *Does the artifact compute what its own reference computes?* QAT: the QDQ graph vs the frozen
   torch fake-quant model (prove_parity with a TorchRunner), tight.
3. *How far from fp32 did precision move it?* :func:`float_deviation` streams real features
   through the fp32 and the reduced model side by side: reported, not asserted tight.

Plus :func:`ort_level_sweep`: the same stream at every ONNX Runtime optimisation level, each
level first loaded in a child process, because one of them crashes ONNX Runtime outright on some
graphs (measured: ``all`` segfaults on an fp16 LSTM graph in onnxruntime 1.32 in its NCHWc pass).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from ..spec import ModelCard
from ..verify import prove_parity
from ..verify.runners import NamedRunner, OnnxRunner

LEVELS = ("disable", "basic", "extended", "all")


def level_loads(path: str, level: str, *, timeout_s: float = 120.0) -> tuple[bool, str]:
    """Whether ONNX Runtime can open ``path`` at ``level`` (checked in a child process: it may crash)."""
    code = ("import sys, onnxruntime as ort; o = ort.SessionOptions(); o.log_severity_level = 3; "
            f"o.graph_optimization_level = getattr(ort.GraphOptimizationLevel, {_ORT_ENUM[level]!r}); "
            "ort.InferenceSession(sys.argv[1], o, providers=['CPUExecutionProvider'])")
    try:
        done = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return False, f"timed out after {timeout_s:g} s"
    if done.returncode == 0:
        return True, "ok"
    if done.returncode < 0:
        return False, f"crashed (signal {-done.returncode})"
    last = (done.stderr.strip().splitlines() or ["failed"])[-1]
    return False, f"failed: {last[:200]}"


_ORT_ENUM = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
             "all": "ORT_ENABLE_ALL"}


# Weighted layers ONNX Runtime may run in float, and why an int8 recipe leaves them there (the card says it).
FLOAT_COMPUTE_WHY = {
    "LSTM": "ONNX Runtime's CPU provider has no static int8 LSTM kernel: its one int8 LSTM, DynamicQuantizeLSTM, "
            "quantizes the activations per call, which would make streaming differ from offline (the dynamic "
            "recipe uses it under its own bound); its weights are stored int8",
    "GRU": "ONNX Runtime's CPU provider has no int8 GRU kernel; its weights are stored int8 where a recipe can",
    "Conv": "a convolution left in float (see the recipe: the dynamic recipe's ConvInteger was measured slower "
            "and less accurate than the float conv, so it stores int8 weights and computes in float)",
}
FLOAT_COMPUTE_OPS = {"Conv": "Conv", "FusedConv": "Conv", "NchwcConv": "Conv", "ConvTranspose": "Conv",
                     "MatMul": "MatMul", "FusedMatMul": "MatMul", "Gemm": "Gemm", "FusedGemm": "Gemm",
                     "LSTM": "LSTM", "GRU": "GRU"}
INT8_OPS = ("QLinearConv", "QLinearMatMul", "MatMulInteger", "MatMulIntegerToFloat", "DynamicQuantizeMatMul",
            "ConvInteger", "DynamicQuantizeLSTM", "QLinearLeakyRelu", "QLinearSigmoid", "QLinearAdd", "QLinearMul",
            "QGemm", "QLinearAveragePool", "QLinearGlobalAveragePool", "QLinearConcat", "QLinearSoftmax")


def kernel_report(path: str, level: str) -> dict:
    """Which weighted layers ONNX Runtime runs on int8 kernels and which in float, read from the graph it
    actually executes (the session's optimised model at ``level``), with the reason for each float one."""
    import os
    import tempfile

    import onnx
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _ORT_ENUM[level])
    with tempfile.TemporaryDirectory(prefix="stateport-kernels-") as tmp:
        opts.optimized_model_filepath = os.path.join(tmp, "optimized.onnx")
        ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        graph = onnx.load(opts.optimized_model_filepath).graph
    int8, floats = {}, {}
    for node in graph.node:
        if node.op_type in INT8_OPS:
            int8[node.op_type] = int8.get(node.op_type, 0) + 1
        elif node.op_type in FLOAT_COMPUTE_OPS:
            layer = FLOAT_COMPUTE_OPS[node.op_type]
            floats[layer] = floats.get(layer, 0) + 1
    return {"ort_graph_optimization": level, "int8_kernels": dict(sorted(int8.items())),
            "float_layers": {k: {"nodes": n, "why": FLOAT_COMPUTE_WHY.get(k, "no int8 kernel was fused for it")}
                             for k, n in sorted(floats.items())}}


def prove_against_torch(model, path: str, card: ModelCard, *, label: str, level: str, seconds: float,
                        tolerance: float):
    """The artifact vs a torch model computing the same arithmetic (QAT: the frozen fake-quant model)."""
    from ..verify.runners import TorchRunner

    reference = NamedRunner(TorchRunner(model, card), f"torch[{label}]")
    candidate = NamedRunner(OnnxRunner(path, card, optimization=level), f"onnxruntime[{label}]")
    return prove_parity(reference, candidate, card, seconds=seconds, tolerance=tolerance)


def _chunks(total: int, n: int) -> list:
    return [min(n, total - a) for a in range(0, total, n)]


def stream_features(runner, card: ModelCard, feats: np.ndarray) -> tuple[dict, list]:
    """Stream ``feats`` [T, F] in nominal chunks; returns concatenated outputs and per-step states."""
    n = max(card.streaming.frames_per_step, 1)
    state = runner.init_state(1)
    outs = {p.name: [] for p in card.outputs}
    states, a = [], 0
    for m in _chunks(len(feats), n):
        if card.streaming.check_chunk_frames(m) is not None:
            break
        o, state = runner.run(np.ascontiguousarray(feats[None, a:a + m], dtype=np.float32), state)
        a += m
        for p in card.outputs:
            outs[p.name].append(o[p.name])
        states.append(state)
    return {k: np.concatenate(v, axis=1) for k, v in outs.items()}, states


def float_deviation(fp32_path: str, path: str, card: ModelCard, streams: list, *, level: str) -> dict:
    """fp32 vs reduced model over real feature streams: max |diff| per output and state, argmax agreement."""
    ref, cand = OnnxRunner(fp32_path, card, optimization="all"), OnnxRunner(path, card, optimization=level)
    worst: dict = {}
    agree = total = 0
    for feats in streams:
        ro, rs = stream_features(ref, card, feats)
        co, cs = stream_features(cand, card, feats)
        for p in card.outputs:
            worst[p.name] = max(worst.get(p.name, 0.0), float(np.max(np.abs(ro[p.name] - co[p.name]))))
        for r_state, c_state in zip(rs, cs):
            for st in card.states:
                d = float(np.max(np.abs(np.subtract(r_state[st.name], c_state[st.name], dtype=np.float64))))  # bool too
                worst[st.output] = max(worst.get(st.output, 0.0), d)
        main = card.output.port or card.outputs[0].name
        agree += int(np.sum(ro[main].argmax(-1) == co[main].argmax(-1)))
        total += int(np.prod(ro[main].shape[:-1]))
    return {"max_abs_diff": {k: round(v, 6) for k, v in worst.items()},
            "argmax_agreement": round(agree / max(total, 1), 6), "frames": total,
            "note": "fp32 vs this model on real feature streams, nominal chunks: reported, not asserted"}


def ort_level_sweep(path: str, card: ModelCard, feats: np.ndarray, *, levels=LEVELS) -> dict:
    """The same real stream at every ORT level: which levels load, and max |diff| vs ``disable``."""
    results, base, base_level = {}, None, None
    for level in levels:
        ok, why = level_loads(path, level)
        if not ok:
            results[level] = {"loads": False, "why": why}
            continue
        outs, states = stream_features(OnnxRunner(path, card, optimization=level), card, feats)
        flat = dict(outs)
        for st in card.states:
            flat[st.output] = np.stack([s[st.name] for s in states])
        if base is None:
            base, base_level = flat, level
            results[level] = {"loads": True, "max_abs_diff_vs": level, "max_abs_diff": {k: 0.0 for k in flat}}
            continue
        results[level] = {"loads": True, "max_abs_diff_vs": base_level,
                          "max_abs_diff": {k: float(np.max(np.abs(flat[k] - base[k]))) for k in flat}}
    return results
