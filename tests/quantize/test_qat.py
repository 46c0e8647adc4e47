"""QAT: fake-quant twins, the QDQ export vs the torch fake-quant model, and a 2-process torchrun run."""

import os
import subprocess
import sys
import time

import onnx
import pytest
import torch

from quantize_helpers import require_fsdd
from stateport.runtime.model_file import read_card


def test_qat_artifact_matches_its_fake_quant_model(qat_smoke, tiny_lstm_ctc):
    result = qat_smoke
    card = read_card(result.path)
    q = card.provenance.quantization
    vs_torch = result.checks["vs_torch_fake_quant"]
    # The QDQ graph computes the fake-quant model's arithmetic: states to ~1e-6, logits within one
    # rounding flip of the head input (measured 1.2e-7 .. 1.3e-3).
    assert vs_torch.passed and vs_torch.max_abs_diff < 1e-2, vs_torch.to_text()
    assert q["export_check"]["within_tolerance"] and q["export_check"]["min_argmax_agreement"] == 1.0
    states = [d for c in vs_torch.checks for d in c.diffs if d.port.startswith("encoder_")]
    assert states and max(d.max_abs_diff for d in states) < 1e-4
    assert vs_torch.reference == "torch[qat-int8-smoke]"
    assert result.reports["stream_vs_offline"].passed
    # The certificate is the int8 proof every recipe carries: the file streamed vs itself offline.
    assert card.certificate["backend"] == "onnxruntime[qat-int8-smoke]" and card.certificate["passed"]
    assert any("qat-int8-smoke offline" in c["check"] for c in card.certificate["compared"])
    assert card.provenance.precision == "int8" and q["recipe"] == "qat-int8-smoke"
    assert q["qat"]["replaced_modules"] == ["encoder.lstm", "head"]
    assert q["qat"]["world_size"] == 1
    assert q["qat"]["task"]["test_speaker"] == "george" and "dev_wer" in q["qat"]["evaluation"]["qat"]
    assert card.input_names == read_card(tiny_lstm_ctc[0]).input_names
    # Weights stored int8: every LSTM W/R and the head matmul weight come from DequantizeLinear of int8.
    proto = onnx.load(result.path)
    inits = {i.name: i for i in proto.graph.initializer}
    dq_int8 = [n for n in proto.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits
               and inits[n.input[0]].data_type == onnx.TensorProto.INT8]
    assert len(dq_int8) == 3 and q["folded_weight_quantizers"] == 3


def test_twin_keeps_parameters_and_state_ports():
    from stateport.quantize.qat_modules import QatLSTM, freeze, make_qat_model
    from stateport.zoo import get_architecture

    model = get_architecture("lstm-ctc").build("tiny")
    qat, replaced = make_qat_model(model)
    assert isinstance(qat.encoder.lstm, QatLSTM) and replaced == ["encoder.lstm", "head"]
    assert [d.name for d in qat.state_decls()] == [d.name for d in model.state_decls()]
    float_keys = set(model.state_dict())
    assert float_keys <= set(qat.state_dict())
    qat.train()
    x = torch.randn(2, 40, 80) * 3
    with torch.no_grad():
        qat(x)  # the observers see one batch
        freeze(qat)
        y_q, y_f = qat(x)[0], model(x)[0]
    # Fake quantization moves the output, but only by quantization noise.
    assert 0 < float((y_q - y_f).abs().max()) < 0.5


@pytest.mark.slow
def test_qat_runs_two_processes_under_torchrun(tiny_lstm_ctc, tmp_path):
    """DDP with the gloo backend on CPU: both ranks train, parameters end identical, rank 0 writes."""
    require_fsdd()
    out = tmp_path / "qat2.onnx"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "stateport.cli.main", "quantize", tiny_lstm_ctc[0], "-o", str(out), "--recipe", "qat-int8-smoke",
           "--seconds", "2", "--json"]
    t0 = time.time()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180)
    elapsed = time.time() - t0
    assert done.returncode == 0, done.stderr[-3000:]
    card = read_card(out)
    qat = card.provenance.quantization["qat"]
    assert qat["world_size"] == 2 and qat["params_in_sync"] is True
    assert card.certificate["passed"]
    print(f"torchrun 2 x qat-int8-smoke: {elapsed:.1f} s")


def test_qat_without_a_dev_speaker_chooses_on_synthetic_voices_like_the_float_recipe():
    from stateport.train.quantize_data import DigitQatData, DigitQatTask

    task = DigitQatTask({}, 1)
    task.dev_speaker = None
    assert task.train_config().use_synthetic  # dev = held-out espeak voices
    task.dev_speaker = "jackson"
    assert task.train_config().use_synthetic == DigitQatData().use_synthetic
    assert task.train_config(rank=1).seed == 1  # one data stream per torchrun rank
