"""``stateport check --target snpe|qnn``: readiness up to the SDK's wall, with numbers we can assert."""

import onnx
import pytest
from onnx import TensorProto, helper

from stateport.check import check_qualcomm, load_allow_list
from stateport.cli.main import main
from stateport.errors import InvalidInputError


@pytest.fixture(scope="module")
def static_lstm(tmp_path_factory):
    from stateport.export import export_model

    path = tmp_path_factory.mktemp("check") / "lstm_static.onnx"
    export_model(path, arch="lstm-ctc", size="tiny", static=True, verify=False)
    return str(path)


def _codes(report, level=None):
    return {f.code for f in report.findings if level is None or f.level == level}


def test_allow_list_cites_its_source_and_date():
    allow = load_allow_list()
    assert "80-63442-2" in allow["source"]["doc_id"] and allow["source"]["url"].startswith("https://docs.qualcomm.com")
    assert allow["compiled_utc"] == "2026-11-26"
    assert allow["ops"]["LSTM"]["opset_versions"] == [1, 7, 14]
    assert "qnn" in allow["applies_to"] and "snpe" in allow["applies_to"]


@pytest.mark.parametrize("target", ["snpe", "qnn"])
def test_static_lstm_export_is_ready_with_commands(static_lstm, target):
    report = check_qualcomm(static_lstm, target)
    assert report.ready, report.to_text()
    assert "STATE_DEFAULTS" in _codes(report, "warning")  # the initializers a converter may fold
    assert report.ops["LSTM"] == 1
    text = "\n".join(report.commands)
    assert "--input_dim features 1,16,80" in text and "--input_dim encoder_h_in 1,1,32" in text
    assert "--out_node encoder_c_out" in text
    assert text.startswith("snpe-onnx-to-dlc" if target == "snpe" else "qnn-onnx-converter")


def test_dynamic_export_is_not_ready(tiny_lstm_ctc):
    path, _ = tiny_lstm_ctc
    report = check_qualcomm(path, "snpe")
    assert not report.ready and "DYNAMIC_SHAPES" in _codes(report, "error")
    # The commands still use the card's nominal chunk, so the user sees what a static export takes.
    assert "--input_dim features 1,16,80" in "\n".join(report.commands)


def test_fix_out_drops_the_state_defaults(static_lstm, tmp_path):
    fixed = tmp_path / "fixed.onnx"
    report = check_qualcomm(static_lstm, "qnn", fix_out=fixed)
    proto = onnx.load(str(fixed))
    inputs = {i.name for i in proto.graph.input}
    assert not inputs & {t.name for t in proto.graph.initializer}
    assert (tmp_path / "fixed.onnx.card.json").exists()
    assert "STATE_DEFAULTS" not in _codes(report) and str(fixed) in report.commands[1]


def _tiny_graph(tmp_path, node, inputs, outputs, initializers=(), opset=17):
    graph = helper.make_graph([node], "g", inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    path = tmp_path / "g.onnx"
    onnx.save(model, str(path))
    return str(path)


def test_an_op_outside_the_list_is_an_error(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    path = _tiny_graph(tmp_path, helper.make_node("Mish", ["x"], ["y"]), [x], [y], opset=18)
    report = check_qualcomm(path, "snpe")
    assert not report.ready
    assert any(f.code == "OP_NOT_LISTED" and "Mish" in f.message for f in report.findings)
    assert "NO_CARD" in _codes(report, "warning")


def test_an_op_version_outside_the_list_is_an_error(tmp_path):
    """Opset 22 gives LSTM its version-22 schema; the list documents 1, 7 and 14."""
    import numpy as np
    from onnx import numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 1, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 1, 1, 4])
    w = numpy_helper.from_array(np.zeros((1, 16, 3), np.float32), "w")
    r = numpy_helper.from_array(np.zeros((1, 16, 4), np.float32), "r")
    node = helper.make_node("LSTM", ["x", "w", "r"], ["y"], hidden_size=4, clip=5.0)
    report = check_qualcomm(_tiny_graph(tmp_path, node, [x], [y], [w, r], opset=22), "qnn")
    assert any(f.code == "OP_VERSION" and "version 22" in f.message for f in report.findings)
    assert any(f.code == "RECURRENT_ATTRIBUTES" and "clip" in f.message for f in report.findings)


def test_target_and_file_type_are_checked(static_lstm):
    with pytest.raises(InvalidInputError, match="target"):
        check_qualcomm(static_lstm, "tensorrt")
    with pytest.raises(InvalidInputError, match=r"\.onnx"):
        check_qualcomm("model.tflite", "snpe")


def test_cli_exit_code_follows_readiness(static_lstm, tiny_lstm_ctc, capsys):
    assert main(["check", static_lstm, "--target", "snpe"]) == 0
    assert "snpe-onnx-to-dlc" in capsys.readouterr().out
    assert main(["check", tiny_lstm_ctc[0], "--target", "qnn", "--json"]) == 1
    assert '"ready": false' in capsys.readouterr().out


def test_float64_state_ports_are_flagged(tmp_path):
    """lstm-ctc's online mean keeps float64 state; a DSP/HTP converter would narrow it."""
    from stateport.export import export_model
    from stateport.export.backends.onnx_file import export_onnx
    from stateport.zoo import get_architecture

    arch = get_architecture("lstm-ctc")
    model = arch.build(config={**arch.config_for("tiny"), "online_cmn_frames": 100.0})
    with_mean = tmp_path / "with_mean.onnx"
    export_onnx(model, with_mean, static=True)
    report = check_qualcomm(str(with_mean), "qnn")
    warned = [f.message for f in report.findings if f.code == "FLOAT64_PORTS"]
    assert len(warned) == 1 and "cmn_mean_in" in warned[0] and "cmn_count_out" in warned[0]
    assert "encoder_h_in" not in warned[0]
    # A float32-only model gets no such finding.
    path = tmp_path / "plain.onnx"
    export_model(path, arch="lstm-ctc", size="tiny", static=True, verify=False)
    assert "FLOAT64_PORTS" not in _codes(check_qualcomm(str(path), "qnn"))
