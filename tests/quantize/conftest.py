"""Quantized artifacts of the tiny lstm-ctc, made once per session (each recipe runs its own proofs)."""

import pytest

pytest.importorskip("torchao", reason="the quantize extra (torchao) is not installed")
pytest.importorskip("onnxconverter_common", reason="the quantize extra (onnxconverter-common) is not installed")

# Short proofs and a small calibration set keep the whole quantize test set within a few minutes.
PROOF_SECONDS = 5.0


@pytest.fixture(scope="session")
def quantized(tiny_lstm_ctc, tmp_path_factory):
    """recipe name -> QuantizeResult for dynamic-int8, static-int8, fp16 and qat-int8-smoke."""
    from stateport.quantize import CalibrationConfig, get_recipe, quantize_model

    fp32, _ = tiny_lstm_ctc
    out = tmp_path_factory.mktemp("quantized")
    recipes = {
        "dynamic-int8": get_recipe("dynamic-int8"),
        "static-int8": get_recipe("static-int8", calibration=CalibrationConfig(utterances=8)),
        "fp16": get_recipe("fp16"),
        "qat-int8-smoke": get_recipe("qat-int8-smoke"),
    }
    return {name: quantize_model(fp32, out / f"{name}.onnx", recipe=cfg, seconds=PROOF_SECONDS, log=lambda *_: None)
            for name, cfg in recipes.items()}
