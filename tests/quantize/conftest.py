"""Quantized artifacts of the tiny lstm-ctc, made once per session (each recipe runs its own proofs).

Calibration and soak audio are the speech clips the package ships (stateport/assets/digits/clips,
FSDD george, CC BY-SA 4.0): these tests need nothing beside the checkout. Only the digit task's QAT
(FSDD training speakers) needs the corpus and skips without it.
"""

import pytest

from quantize_helpers import require_fsdd, shipped_clips

pytest.importorskip("torchao", reason="the quantize extra (torchao) is not installed")
pytest.importorskip("onnxconverter_common", reason="the quantize extra (onnxconverter-common) is not installed")

# Short proofs and a small calibration set keep the whole quantize test set within a few minutes.
PROOF_SECONDS = 5.0


@pytest.fixture(scope="session")
def quantized(tiny_lstm_ctc, tmp_path_factory):
    """recipe name -> QuantizeResult for dynamic-int8, static-int8 (calibrated on the shipped clips) and fp16."""
    from stateport.quantize import CalibrationConfig, get_recipe, quantize_model

    fp32, _ = tiny_lstm_ctc
    out = tmp_path_factory.mktemp("quantized")
    recipes = {
        "dynamic-int8": get_recipe("dynamic-int8"),
        "static-int8": get_recipe("static-int8", calibration=CalibrationConfig(utterances=8)),
        "fp16": get_recipe("fp16"),
    }
    return {name: quantize_model(fp32, out / f"{name}.onnx", recipe=cfg, calib=shipped_clips(),
                                 seconds=PROOF_SECONDS, log=lambda *_: None)
            for name, cfg in recipes.items()}


@pytest.fixture(scope="session")
def qat_smoke(tiny_lstm_ctc, tmp_path_factory):
    """qat-int8-smoke of the tiny lstm-ctc with the digit recogniser's training step (FSDD)."""
    require_fsdd()
    from stateport.quantize import quantize_model
    from stateport.runtime.model_file import read_card
    from stateport.train.quantize_data import DigitQatTask

    fp32, _ = tiny_lstm_ctc
    task = DigitQatTask.for_card(read_card(fp32), recipe="qat-int8-smoke")
    return quantize_model(fp32, tmp_path_factory.mktemp("qat") / "qat-int8-smoke.onnx", recipe="qat-int8-smoke",
                          qat=task, seconds=PROOF_SECONDS, log=lambda *_: None)
