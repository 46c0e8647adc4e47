"""``lstm-ctc`` with frame stacking (``subsampling=3``, 30 ms LSTM steps), a telephone band and
online mean normalisation (the built-in model's configuration): the card states the chunk
contract and the non-resetting normaliser state, and the full parity proof holds."""

import pytest
import torch

from stateport.errors import InvalidInputError
from stateport.export import export_model
from stateport.zoo import get_architecture

PARITY_SECONDS = 60.0
TOLERANCE = 1e-4
ENTRY = get_architecture("lstm-ctc")
CONFIG = {**ENTRY.config_for("tiny"), "input_dim": 40, "high_freq_hz": 3800.0, "subsampling": 3,
          "online_cmn_frames": 100.0}


@pytest.fixture(scope="module")
def stacked(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lstm-stacked")
    model = ENTRY.build(config=CONFIG, seed=3)
    torch.save({"architecture": "lstm-ctc", "config": CONFIG, "state_dict": model.state_dict()}, folder / "ck.pt")
    return export_model(folder / "m.onnx", arch="lstm-ctc", checkpoint=str(folder / "ck.pt"),
                        seconds=PARITY_SECONDS, tolerance=TOLERANCE)


def test_stacked_lstm_passes_the_full_proof(stacked):
    report = stacked.report
    assert report.passed, report.to_text()
    assert report.seconds >= PARITY_SECONDS and report.max_abs_diff <= TOLERANCE
    names = {c.name for c in report.checks}
    assert "onnxruntime offline vs torch offline" in names
    assert "onnxruntime stream [ragged] vs torch offline" in names


def test_card_states_the_stacking_and_the_band(stacked):
    card = stacked.card
    st = card.streaming
    assert (st.subsampling, st.frame_multiple, st.min_frames, st.frames_per_step) == (3, 3, 3, 15)
    assert card.outputs[0].shape == ["batch", "T_div_3", 11]
    # Stacking adds no state; the normaliser's mean and count outlive an end of speech.
    resets = {s.name: s.reset_on_end_of_speech for s in card.states}
    assert resets == {"cmn_mean_in": False, "cmn_count_in": False, "encoder_h_in": True, "encoder_c_in": True}
    assert card.frontend["num_mel_bins"] == 40 and card.frontend["high_freq_hz"] == 3800.0


def test_offline_output_has_one_frame_per_three_inputs():
    model = ENTRY.build(config=CONFIG)
    (logits,) = model(torch.randn(2, 61, 40))
    assert logits.shape == (2, 20, 11)


@pytest.mark.parametrize("bad", [0, -1, 1.5])
def test_subsampling_must_be_a_positive_int(bad):
    with pytest.raises(InvalidInputError, match="subsampling"):
        ENTRY.build(config={**CONFIG, "subsampling": bad})


def test_client_loop_carries_the_float64_normaliser_state_and_keeps_it_at_end_of_speech(stacked):
    import numpy as np

    from stream_helpers import AlwaysSpeech

    from stateport.runtime.endpoint import EndpointConfig
    from stateport.runtime.streamer import Streamer

    # A VAD that cuts the utterance every 0.5 s: each cut clears the states the card marks.
    streamer = Streamer(stacked.path, vad=AlwaysSpeech(), endpoint=EndpointConfig(max_utterance_duration_ms=500))
    audio = (0.05 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32)
    for a in range(0, len(audio), 320):
        streamer.accept_waveform(audio[a:a + 320], 16000)
    state = streamer.stream.state
    assert state["cmn_mean_in"].dtype == np.float64 and state["cmn_count_in"].dtype == np.float64
    assert streamer.counters.resets >= 1
    # About one second of 10 ms frames went through the running mean: it outlived the cut.
    assert float(state["cmn_count_in"][0, 0]) >= 90


@pytest.mark.parametrize("recipe", ["fp16", "dynamic-int8", "static-int8"])
def test_float64_normaliser_survives_quantisation(stacked, recipe, tmp_path):
    """The normaliser's float64 island stays float64 (fp16 used to rewrite the Cast leaving it into a
    float16 one, a graph ONNX Runtime refused to open); the quantized file passes its own proof."""
    import onnx
    from onnx import TensorProto

    from stateport.quantize.api import quantize_model

    from stateport.quantize.calibration import shipped_speech

    result = quantize_model(stacked.path, tmp_path / f"{recipe}.onnx", recipe=recipe, calib=shipped_speech(),
                            log=lambda *_: None)
    assert all(r.passed for r in result.reports.values()), {k: r.to_text() for k, r in result.reports.items()}
    graph = onnx.load(str(result.path)).graph
    dtypes = {v.name: v.type.tensor_type.elem_type for v in list(graph.input) + list(graph.output)}
    assert dtypes["cmn_mean_in"] == dtypes["cmn_count_out"] == TensorProto.DOUBLE
    assert dtypes["features"] == TensorProto.FLOAT


def test_static_int8_keeps_the_input_layer_float(stacked, tmp_path):
    """With online mean normalisation (a state) before it, the stacking convolution reads features whose
    range follows the speaker: static-int8 keeps it float by default (measured: quantised, it cost the
    previous built-in model 8 WER points); the LSTM and the head are int8."""
    import onnx

    from stateport.quantize.api import quantize_model
    from stateport.quantize.ptq import input_layer_nodes
    from stateport.quantize.recipes import CalibrationConfig, get_recipe

    fp32 = onnx.load(str(stacked.path))
    assert [n.op_type for n in fp32.graph.node if n.name in input_layer_nodes(fp32, "features", ("Conv", "MatMul"))] \
        == ["Conv"]
    recipe = get_recipe("static-int8", calibration=CalibrationConfig(utterances=4))
    from stateport.quantize.calibration import shipped_speech

    q = onnx.load(str(quantize_model(stacked.path, tmp_path / "s.onnx", recipe=recipe, calib=shipped_speech(),
                                     log=lambda *_: None).path))
    producers = {o: n.op_type for n in q.graph.node for o in n.output}
    conv = next(n for n in q.graph.node if n.op_type == "Conv")
    assert producers.get(conv.input[1]) != "DequantizeLinear"  # float weights
    head = next(n for n in q.graph.node if n.op_type == "MatMul")
    assert producers[head.input[1]] == "DequantizeLinear"  # int8 weights


def test_static_int8_quantizes_an_input_layer_no_state_feeds(tmp_path):
    """Without the online mean, nothing carried in state reaches the first conv: the auto rule quantizes
    it (as on the built-in model, where that measured no WER cost); float_input_layer=True keeps it float."""
    import onnx

    from stateport.quantize.api import quantize_model
    from stateport.quantize.calibration import shipped_speech
    from stateport.quantize.recipes import CalibrationConfig, get_recipe

    config = {**CONFIG, "online_cmn_frames": 0.0}
    model = ENTRY.build(config=config, seed=3)
    torch.save({"architecture": "lstm-ctc", "config": config, "state_dict": model.state_dict()}, tmp_path / "ck.pt")
    fp32 = export_model(tmp_path / "m.onnx", arch="lstm-ctc", checkpoint=str(tmp_path / "ck.pt"), seconds=PARITY_SECONDS,
                        tolerance=TOLERANCE)
    for setting, float_weights in ((None, False), (True, True)):
        recipe = get_recipe("static-int8", float_input_layer=setting, calibration=CalibrationConfig(utterances=4))
        q = onnx.load(str(quantize_model(fp32.path, tmp_path / f"s{setting}.onnx", recipe=recipe, calib=shipped_speech(),
                                         log=lambda *_: None).path))
        producers = {o: n.op_type for n in q.graph.node for o in n.output}
        conv = next(n for n in q.graph.node if n.op_type == "Conv")
        assert (producers.get(conv.input[1]) != "DequantizeLinear") == float_weights, setting
