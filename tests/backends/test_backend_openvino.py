"""OpenVINO: the IR converted from the ONNX export, and the ONNX export itself, proven against torch."""

import os

import pytest

from backend_helpers import PARITY_SECONDS, causal_conv, lstm_ctc_tiny, requires
from stateport.export.backends import read_backend_card
from stateport.export import export_torch_model

pytestmark = requires("openvino")


@pytest.mark.parametrize("which", ["lstm", "conv"])
def test_ir_streams_like_torch(tmp_path, which):
    model, prov = lstm_ctc_tiny() if which == "lstm" else causal_conv()
    path = tmp_path / f"{which}.xml"
    result = export_torch_model(model, path, backend="openvino", provenance=prov, seconds=PARITY_SECONDS)
    report = result.report
    assert report.passed, report.to_text()
    assert report.max_abs_diff <= 1e-4
    names = [c.name for c in report.checks]
    assert "graph signature" in names  # batch and time stayed dynamic in the IR
    assert "openvino stream, 3 streams batched" in names
    card = read_backend_card(path)
    assert card.provenance.backend == "openvino" and card.certificate["passed"]
    # The .xml and its .bin moved into place together; no temporary left beside them.
    assert sorted(os.listdir(tmp_path)) == [f"{which}.bin", f"{which}.xml"]


def test_verify_writes_a_new_certificate_into_the_ir(tmp_path):
    """`stateport verify --write-certificate` on an IR: proved on a copy (xml + bin), which then replaces it."""
    from stateport.export import verify_file

    model, prov = causal_conv()
    path = tmp_path / "conv.xml"
    export_torch_model(model, path, backend="openvino", provenance=prov, seconds=PARITY_SECONDS)
    report = verify_file(path, reference=model, seconds=2.0, write_certificate=True)
    assert report.passed and read_backend_card(path).certificate["seconds"] == report.seconds == 2.0
    assert sorted(os.listdir(tmp_path)) == ["conv.bin", "conv.xml"]


def test_onnx_file_state_inputs_need_their_defaults_removed(tiny_lstm_ctc):
    """Finding: OpenVINO's ONNX frontend folds an input that has an initializer into a constant."""
    import openvino as ov

    from stateport.verify import prove_parity
    from stateport.verify.backend_runners import OpenVinoRunner
    from stateport.verify.state_defaults import onnx_without_state_defaults
    from stateport.verify.runners import TorchRunner

    path, exported = tiny_lstm_ctc
    direct = ov.Core().read_model(path)
    assert [i.get_any_name() for i in direct.inputs] == ["features"]  # the state ports vanished
    stripped = ov.Core().read_model(onnx_without_state_defaults(path))
    assert [i.get_any_name() for i in stripped.inputs] == exported.card.input_names

    model, _ = lstm_ctc_tiny()
    report = prove_parity(TorchRunner(model, exported.card), OpenVinoRunner(path, exported.card), exported.card,
                          seconds=PARITY_SECONDS)
    assert report.passed, report.to_text()
