"""``stateport quantize`` and ``stateport drift`` are thin verbs over the library."""

import json

from stateport.cli.main import main
from stateport.runtime.model_file import read_card


def test_quantize_verb(tiny_lstm_ctc, tmp_path, capsys):
    out = tmp_path / "dyn.onnx"
    code = main(["quantize", tiny_lstm_ctc[0], "-o", str(out), "--recipe", "dynamic-int8", "--seconds", "2", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and doc["parity"]["stream_vs_offline"]["passed"]
    assert read_card(out).provenance.quantization["recipe"] == "dynamic-int8"


def test_quantize_refuses_a_quantized_input(quantized, tmp_path, capsys):
    code = main(["quantize", quantized["static-int8"].path, "-o", str(tmp_path / "x.onnx"), "--json"])
    assert code == 2 and "INVALID_INPUT" in capsys.readouterr().out
