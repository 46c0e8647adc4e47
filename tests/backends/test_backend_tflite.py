"""TFLite / LiteRT: same ports, card in the flatbuffer, parity vs torch with state carried, int8 option."""

import os

import pytest

from backend_helpers import PARITY_SECONDS, causal_conv, lstm_ctc_tiny, requires
from stateport.export import export_torch_model
from stateport.export.pipeline import QUANTIZED_TOLERANCE

pytestmark = requires("tflite")

@pytest.fixture(scope="module")
def lstm_tflite(tmp_path_factory):
    model, prov = lstm_ctc_tiny()
    path = tmp_path_factory.mktemp("tflite") / "lstm_ctc_tiny.tflite"
    return str(path), export_torch_model(model, path, backend="tflite", provenance=prov, seconds=PARITY_SECONDS)

def test_lstm_ctc_streams_like_torch(lstm_tflite):
    _, result = lstm_tflite
    report = result.report
    assert report.passed, report.to_text()
    assert report.max_abs_diff <= 1e-4
    names = [c.name for c in report.checks]
    assert "graph signature" in names and "litert step vs torch step" in names
    assert result.card.streaming.static and result.card.inputs[0].shape == [1, 16, 80]
    assert any("static shapes" in n for n in result.notes)

def test_card_is_a_flatbuffer_metadata_entry(lstm_tflite):
    from stateport.export.backends import read_backend_card
    from stateport.export.backends.tflite import read_metadata

    path, result = lstm_tflite
    with open(path, "rb") as f:
        meta = read_metadata(f.read())
    assert "stateport" in meta and "min_runtime_version" in meta  # the converter's own entry survives
    card = read_backend_card(path)
    assert card.provenance.backend == "tflite"
    assert card.certificate["passed"] and card.certificate["backend"] == "litert"
    assert [s.name for s in card.states] == ["encoder_h_in", "encoder_c_in"]

def test_signature_io_is_named_like_the_card(lstm_tflite):
    from ai_edge_litert.interpreter import Interpreter

    path, result = lstm_tflite
    sig = Interpreter(model_path=path).get_signature_list()["serving_default"]
    assert sorted(sig["inputs"]) == sorted(result.card.input_names)
    assert sorted(sig["outputs"]) == sorted(result.card.output_names)

def test_lstm_is_unrolled_over_the_static_chunk(lstm_tflite):
    """Finding: litert-torch lowers nn.LSTM to one FULLY_CONNECTED + gates per frame (no LSTM op)."""
    from stateport.export.backends.tflite import operator_names

    path, result = lstm_tflite
    with open(path, "rb") as f:
        ops = operator_names(f.read())
    assert not any("LSTM" in op for op in ops)
    assert ops.count("LOGISTIC") == 3 * result.card.streaming.frames_per_step  # i, f, o gates per frame

def test_causal_conv_streams_like_torch(tmp_path):
    model, prov = causal_conv()
    result = export_torch_model(model, tmp_path / "conv.tflite", backend="tflite", provenance=prov,
                                 seconds=PARITY_SECONDS)
    assert result.report.passed, result.report.to_text()
    assert result.report.max_abs_diff <= 1e-4

def test_dynamic_int8_is_smaller_and_within_its_tolerance(tmp_path, lstm_tflite):
    import os

    float_path, _ = lstm_tflite
    model, prov = lstm_ctc_tiny()
    path = tmp_path / "lstm_int8.tflite"
    result = export_torch_model(model, path, backend="tflite", provenance=prov, seconds=PARITY_SECONDS,
                                 quantize="dynamic-int8")
    report = result.report
    assert report.tolerance == QUANTIZED_TOLERANCE
    assert report.passed, report.to_text()
    # int8 weights really changed the numbers (a no-op "quantisation" would be exact) ...
    assert 1e-5 < report.max_abs_diff <= QUANTIZED_TOLERANCE
    # ... and the file (weights are most of it even at this size).
    assert os.path.getsize(path) < 0.8 * os.path.getsize(float_path)
    assert result.card.provenance.precision == "dynamic-int8"
    agreement = [d.argmax_agreement for c in report.checks for d in c.diffs if d.argmax_agreement is not None]
    assert min(agreement) > 0.95

def test_a_failed_proof_keeps_the_flatbuffer_beside_the_path(tmp_path):
    from stateport.errors import ParityError

    model, prov = causal_conv()
    with pytest.raises(ParityError) as e:
        export_torch_model(model, tmp_path / "c.tflite", backend="tflite", provenance=prov, seconds=2.0, tolerance=0.0)
    assert e.value.evidence == str(tmp_path / "c.failed.tflite") and os.listdir(tmp_path) == ["c.failed.tflite"]


def test_quantize_recipe_is_checked(tmp_path):
    from stateport.errors import UnsupportedError

    model, prov = causal_conv()
    with pytest.raises(UnsupportedError, match="dynamic-int8"):
        export_torch_model(model, tmp_path / "c.tflite", backend="tflite", provenance=prov, quantize="int4")
