"""The exported ONNX file: card, state ports, one graph for offline and streaming."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import toy_models
from stateport.errors import InvalidInputError, UndeclaredStateError, UnsupportedError
from stateport.export import verify_file
from stateport.export.backends.onnx_file import export_onnx
from stateport.verify.signals import synthetic_features


def test_tiny_lstm_ctc_card_lists_state_ports(tiny_lstm_ctc):
    path, result = tiny_lstm_ctc
    meta = {p.key: p.value for p in onnx.load(path).metadata_props}
    card = json.loads(meta["stateport"])
    states = [p for p in card["ports"] if p["role"] == "state"]
    assert [(s["name"], s["output"], s["batch_axis"]) for s in states] == [
        ("encoder_h_in", "encoder_h_out", 1), ("encoder_c_in", "encoder_c_out", 1)]
    assert card["output"]["kind"] == "ctc" and card["output"]["blank_id"] == 0
    assert card["frontend"]["num_mel_bins"] == 80
    cert = card["certificate"]
    assert cert["passed"] and cert["seconds"] >= 60 and cert["max_abs_diff"] <= 1e-4


def test_onnxruntime_alone_runs_offline_and_streaming(tiny_lstm_ctc):
    """A client with only onnxruntime and the card: feed audio only, or stream ragged chunks."""
    path, _ = tiny_lstm_ctc
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    card = json.loads(sess.get_modelmeta().custom_metadata_map["stateport"])
    states = [p for p in card["ports"] if p["role"] == "state"]
    x = synthetic_features(3000, 80, seed=7)  # 30 s

    (offline,) = sess.run(["logits"], {"features": x})

    state = {s["name"]: np.zeros([1 if d == "batch" else d for d in s["shape"]], np.float32) for s in states}
    rng = np.random.default_rng(3)
    outs, a = [], 0
    while a < x.shape[1]:
        n = int(rng.integers(1, 40))
        res = sess.run(None, {"features": x[:, a:a + n], **state})
        named = dict(zip([o.name for o in sess.get_outputs()], res))
        outs.append(named["logits"])
        state = {s["name"]: named[s["output"]] for s in states}
        a += n
    streamed = np.concatenate(outs, axis=1)
    assert offline.shape == (1, 3000, 11)
    assert float(np.abs(streamed - offline).max()) <= 1e-4


def test_offline_mode_serves_any_batch(tiny_lstm_ctc):
    path, _ = tiny_lstm_ctc
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    x = np.concatenate([synthetic_features(200, 80, seed=s) for s in range(4)])
    (batched,) = sess.run(["logits"], {"features": x})
    for i in range(4):
        (single,) = sess.run(["logits"], {"features": x[i:i + 1]})
        assert float(np.abs(batched[i:i + 1] - single).max()) <= 1e-5


@pytest.mark.parametrize("kind", sorted(toy_models.ALL_KINDS))
def test_each_kind_of_state_passes_the_60s_proof(kind, tmp_path):
    model = toy_models.build(kind)
    path = str(tmp_path / f"{kind}.onnx")
    export_onnx(model, path)
    report = verify_file(path, reference=model, seconds=60)
    assert report.passed, report.to_text()
    assert report.seconds >= 60
    names = [c.name for c in report.checks]
    for chunking in ("1-frame", "nominal", "ragged"):
        assert f"onnxruntime stream [{chunking}] vs torch offline" in names
    assert report.max_abs_diff <= 1e-4


def test_causal_conv_state_is_the_left_padding_buffer(tmp_path):
    card = export_onnx(toy_models.build("causal-conv"), str(tmp_path / "c.onnx"))
    shapes = {s.name: s.shape for s in card.states}
    # conv1: kernel 3, dilation 1 -> 2 frames of 12 channels; conv2: kernel 3, dilation 2 -> 4 frames.
    assert shapes == {"conv1_buf_in": ["batch", 12, 2], "conv2_buf_in": ["batch", 16, 4]}


def test_static_export_fixes_every_shape(tmp_path):
    model = toy_models.build("lstm")
    path = str(tmp_path / "s.onnx")
    card = export_onnx(model, path, chunk_frames=8, static=True)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    for arg in sess.get_inputs() + sess.get_outputs():
        assert all(isinstance(d, int) for d in arg.shape), (arg.name, arg.shape)
    assert card.streaming.static and card.inputs[0].shape == [1, 8, 12]
    report = verify_file(path, reference=model, seconds=60)
    assert report.passed, report.to_text()


def test_undeclared_buffer_mutation_is_refused_with_its_name(tmp_path):
    with pytest.raises(UndeclaredStateError, match="buffer 'frames_seen'"):
        export_onnx(toy_models.MutatingModel().eval(), str(tmp_path / "m.onnx"))
    assert not (tmp_path / "m.onnx").exists()


def test_chunk_length_the_model_cannot_take(tmp_path):
    model = toy_models.build("lstm")
    model.streaming.frame_multiple = 4
    with pytest.raises(InvalidInputError, match="multiple of 4"):
        export_onnx(model, str(tmp_path / "x.onnx"), chunk_frames=6)


def test_port_name_clash_is_refused(tmp_path):
    model = toy_models.build("gru")
    model.output_names = ("rnn_h_out",)  # collides with the state output of layer "rnn"
    from stateport.errors import PortNameError

    with pytest.raises(PortNameError, match="rnn_h_out"):
        export_onnx(model, str(tmp_path / "x.onnx"))


def test_unknown_exporter(tmp_path):
    with pytest.raises(InvalidInputError, match="exporter"):
        export_onnx(toy_models.build("gru"), str(tmp_path / "x.onnx"), exporter="magic")
    assert UnsupportedError  # imported for the error family
