"""Int8 of the built-in architecture (embedding-ctc: Google's frozen speech embedding, 20 convolutions, + LSTM):
every recipe stores every weighted layer int8, and static and QAT run the convolutions on ONNX Runtime's int8
kernels; the card says which layers compute in float and why.

The model is embedding-ctc ``tiny`` (the pretrained embedding the package ships, a 1x32 LSTM head with
random weights): its size and its graph are the built-in model's but for the head.
"""

import numpy as np
import pytest
import torch

from quantize_helpers import require_fsdd, shipped_clips
from stateport.runtime.model_file import read_card

PROOF_SECONDS = 5.0
EMBEDDING_CONVS = 20  # 19 conv blocks + the last conv
CONTEXT_JOINS = 10  # conv blocks whose output a stream's context is joined to (before convs 2, 4, ..., 18 and the last)
# Measured on embedding-ctc tiny: static 0.376 (the built-in model: 0.337). The weights are a quarter; the rest is
# the graph's own nodes and the streaming embedding's quiet contexts (37 KB, float), a larger share of a tiny model.
# (Before the embedding streamed incrementally: static 0.30, dynamic 0.28, qat-int8-smoke 0.29.)
MAX_SIZE_RATIO = 0.40


@pytest.fixture(scope="module")
def embedding_fp32(tmp_path_factory):
    from stateport.export import export_model

    path = tmp_path_factory.mktemp("embedding") / "embedding_ctc_tiny.onnx"
    export_model(path, arch="embedding-ctc", size="tiny", seconds=PROOF_SECONDS)
    return str(path)


@pytest.fixture(scope="module")
def embedding_int8(embedding_fp32, tmp_path_factory):
    from stateport.quantize import CalibrationConfig, get_recipe, quantize_model

    out = tmp_path_factory.mktemp("embedding_int8")
    recipes = {"dynamic-int8": get_recipe("dynamic-int8"),
               "static-int8": get_recipe("static-int8", calibration=CalibrationConfig(utterances=6))}
    return {name: quantize_model(embedding_fp32, out / f"{name}.onnx", recipe=cfg, calib=shipped_clips(),
                                 seconds=PROOF_SECONDS, log=lambda *_: None)
            for name, cfg in recipes.items()}



def assert_streams_like_offline_up_to_one_step(result):
    """Fixed scales: streamed like offline up to one step of an output's quantizer. A ~1e-7 difference of
    ONNX Runtime's float LSTM between chunk lengths can flip a value on a rounding boundary, and whether one
    does depends on the calibration data: 0.0 with the shipped clips before issue 21's model, 0.0062 with
    today's (one step of the logits)."""
    import onnx

    from stateport.quantize.onnx_graph import output_quantization_step

    proto = onnx.load(result.path)
    step = max(output_quantization_step(proto, o.name) or 0.0 for o in read_card(result.path).outputs)
    diff = result.reports["stream_vs_offline"].max_abs_diff
    assert 0 < step and (diff == 0.0 or diff == pytest.approx(step, rel=1e-3)), (diff, step)  # none, or one whole step

def test_static_int8_runs_every_convolution_on_int8_kernels(embedding_int8):
    result = embedding_int8["static-int8"]
    q = read_card(result.path).provenance.quantization
    assert result.passed and result.sizes["ratio"] < MAX_SIZE_RATIO
    kernels = q["kernels"]
    assert kernels["ort_graph_optimization"] == "all"
    # Every conv is a QLinearConv; the LeakyRelus int8 (clamp folded into the quantizer) but those whose output a
    # stream's context is joined to (10 of 19), which ONNX Runtime 1.32 leaves float between their Q/DQ pairs.
    assert kernels["int8_kernels"]["QLinearConv"] == EMBEDDING_CONVS
    assert kernels["int8_kernels"]["QLinearLeakyRelu"] >= EMBEDDING_CONVS - 1 - CONTEXT_JOINS
    # What stays float is the LSTM (no static int8 LSTM kernel in ONNX Runtime), and the card says why.
    assert set(kernels["float_layers"]) == {"LSTM"}
    assert "DynamicQuantizeLSTM" in kernels["float_layers"]["LSTM"]["why"]
    assert q["float_nodes"] == []  # the first conv is quantized too (recipes.StaticInt8Config.float_input_layer)
    assert_streams_like_offline_up_to_one_step(result)


def test_static_int8_can_keep_the_first_layer_float(embedding_fp32, tmp_path):
    from stateport.quantize import CalibrationConfig, get_recipe, quantize_model

    cfg = get_recipe("static-int8", float_input_layer=True, calibration=CalibrationConfig(utterances=4))
    result = quantize_model(embedding_fp32, tmp_path / "s.onnx", recipe=cfg, calib=shipped_clips(),
                            seconds=PROOF_SECONDS, log=lambda *_: None)
    q = read_card(result.path).provenance.quantization
    assert len(q["float_nodes"]) == 1 and q["kernels"]["float_layers"]["Conv"]["nodes"] == 1
    assert q["kernels"]["int8_kernels"]["QLinearConv"] == EMBEDDING_CONVS - 1


def test_dynamic_int8_stores_conv_weights_int8_and_says_why_they_compute_in_float(embedding_int8):
    result = embedding_int8["dynamic-int8"]
    q = read_card(result.path).provenance.quantization
    assert result.passed and result.sizes["ratio"] < MAX_SIZE_RATIO
    assert q["config"]["conv"] == "weight-only"
    assert len(q["int8_weights_float_compute"]) == EMBEDDING_CONVS
    kernels = q["kernels"]
    assert kernels["int8_kernels"]["DynamicQuantizeLSTM"] == 1
    assert kernels["float_layers"]["Conv"]["nodes"] == EMBEDDING_CONVS
    assert "ConvInteger" in kernels["float_layers"]["Conv"]["why"] and "ConvInteger" in q["float_nodes_why"]
    assert q["weight_bytes"]["int8"] > 4 * q["weight_bytes"].get("float32", 0)


def test_speech_embedding_twin_quantizes_like_onnx_runtime_and_keeps_its_parameters():
    """The QAT twin: same parameter names, frozen weights; conv outputs and block outputs quantized, each block's
    grid starting exactly at the -0.4 clamp; close to the float embedding."""
    from stateport.quantize.qat_modules import QatSpeechEmbedding, freeze, make_qat_model
    from stateport.zoo import get_architecture
    from stateport.zoo.speech_embedding import ACTIVATION_FLOOR

    model = get_architecture("embedding-ctc").build("tiny").eval()
    qat, replaced = make_qat_model(model)
    assert replaced == ["windows.embedding", "encoder.lstm", "head"]
    twin = qat.windows.embedding
    assert isinstance(twin, QatSpeechEmbedding)
    assert set(model.state_dict()) <= set(qat.state_dict())
    assert not any(p.requires_grad for p in twin.parameters())
    windows = torch.randn(12, 76, 32) * 1.5 + 4.5  # Google-scale log-mel
    qat.train()
    with torch.no_grad():
        twin(windows)  # the observers see one batch
        freeze(qat)
        got, ref = twin(windows), model.windows.embedding(windows)
    assert 0 < float((got - ref).abs().max()) < 0.1 * float(ref.abs().max())
    for block in twin.block_quant:
        lowest = np.float32(block.scale) * np.float32(-128 - block.zero_point)
        assert np.float32(ACTIVATION_FLOOR) <= lowest < ACTIVATION_FLOOR + 1e-6


@pytest.fixture(scope="module")
def builtin_fp32(tmp_path_factory):
    """The built-in model (trained head) exported from its checkpoint: (path, checkpoint)."""
    from stateport.assets import builtin_dir
    from stateport.export import export_model

    checkpoint = str(builtin_dir() / "checkpoint.pt")
    arch = torch.load(checkpoint, map_location="cpu", weights_only=True)["architecture"]
    path = tmp_path_factory.mktemp("builtin") / "digits.onnx"
    export_model(path, arch=arch, checkpoint=checkpoint, seconds=PROOF_SECONDS)
    return str(path), checkpoint


@pytest.mark.slow
def test_qat_int8_is_as_small_as_static_and_runs_the_convolutions_int8(builtin_fp32, tmp_path):
    """QAT of the built-in model. (Not the tiny model: its random 1x32 head's logits are near ties, so the
    export check's frame argmax flips on any rounding difference: measured 94 % agreement there.)"""
    require_fsdd()
    from stateport.quantize import CalibrationConfig, get_recipe, quantize_model
    from stateport.train.quantize_data import DigitQatTask

    fp32, checkpoint = builtin_fp32
    static = quantize_model(fp32, tmp_path / "static.onnx", calib=shipped_clips(), seconds=PROOF_SECONDS,
                            recipe=get_recipe("static-int8", calibration=CalibrationConfig(utterances=4)),
                            log=lambda *_: None)
    task = DigitQatTask.for_card(read_card(fp32), checkpoint=checkpoint, recipe="qat-int8-smoke")
    result = quantize_model(fp32, tmp_path / "qat.onnx", recipe="qat-int8-smoke", qat=task, checkpoint=checkpoint,
                            seconds=PROOF_SECONDS, log=lambda *_: None)
    q = read_card(result.path).provenance.quantization
    assert result.passed and q["export_check"]["min_argmax_agreement"] >= 0.98
    assert result.sizes["bytes"] <= static.sizes["bytes"] and result.sizes["ratio"] < MAX_SIZE_RATIO
    assert q["kernels"]["int8_kernels"]["QLinearConv"] == EMBEDDING_CONVS
    assert q["kernels"]["int8_kernels"]["QLinearLeakyRelu"] >= EMBEDDING_CONVS - 1 - CONTEXT_JOINS
    assert set(q["kernels"]["float_layers"]) == {"LSTM"}
    assert "windows.embedding" in q["qat"]["quantization_points"]
    # Its logits leave the graph in float (no output quantizer), so a rounding-boundary flip inside (see
    # assert_streams_like_offline_up_to_one_step) reaches them scaled: 0.0 with FSDD in ../shared, 0.0045 on
    # a bare clone. The bound is the recipe's certified stream tolerance.
    from stateport.quantize.recipes import INT8_STREAM_TOLERANCE

    assert result.reports["stream_vs_offline"].max_abs_diff <= INT8_STREAM_TOLERANCE


def test_fp16_of_the_streaming_embedding_runs_a_batch_offline_from_the_state_defaults(embedding_fp32, tmp_path):
    """Measured before the fix: the fp16 proof failed its 3-streams-batched check, ONNX Runtime refusing the
    offline batch ("Shape mismatch attempting to re-use buffer. {2,1,128} != {2,3,128}" at the LSTM's state
    Concat). The state inputs' defaults hold one stream and the converter's Cast of them sat before their
    broadcast to the batch (see stateport.quantize.ptq.state_broadcast_nodes)."""
    import onnx
    import onnxruntime as ort

    from stateport.quantize import quantize_model

    out = tmp_path / "fp16.onnx"
    result = quantize_model(embedding_fp32, out, recipe="fp16", seconds=PROOF_SECONDS, log=lambda *_: None)
    assert result.passed and read_card(out).certificate["passed"]
    proto = onnx.load(str(out))
    states = {s.name for s in read_card(out).states}
    producers = {o: n for n in proto.graph.node for o in n.output}
    broadcasts = [n for n in proto.graph.node if n.op_type == "Expand" and n.input[0] in states]
    assert len(broadcasts) == len(states)  # each state's broadcast reads the float32 input itself, no Cast first
    assert not any(producers.get(n.input[0]) for n in broadcasts)
    # Offline, 3 streams, only the features fed: the defaults serve the whole batch.
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED  # the card's level
    session = ort.InferenceSession(str(out), options, providers=["CPUExecutionProvider"])
    features = np.random.default_rng(0).standard_normal((3, 32, 32)).astype(np.float32)
    logits = session.run(["logits"], {"features": features})[0]
    one_by_one = [session.run(["logits"], {"features": features[k:k + 1]})[0] for k in range(3)]
    assert np.abs(logits - np.concatenate(one_by_one)).max() < 1e-2
