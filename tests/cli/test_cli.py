"""The command line: every verb's --json prints one JSON document; errors are one line, no traceback."""

import json
import subprocess
import sys

import pytest

from stateport.cli.main import main


def run_json(capsys, *argv):
    code = main([*argv, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out)


def test_export_inspect_verify_list(tmp_path, capsys):
    out = str(tmp_path / "m.onnx")
    code, doc = run_json(capsys, "export", "--arch", "lstm-ctc", "--size", "tiny", "-o", out, "--seconds", "60")
    assert code == 0 and doc["parity"]["passed"] and doc["parity"]["seconds"] >= 60
    code, card = run_json(capsys, "inspect", out)
    assert code == 0 and card["certificate"]["passed"]
    assert [p["name"] for p in card["ports"] if p["role"] == "state"] == ["encoder_h_in", "encoder_c_in"]
    code, report = run_json(capsys, "verify", out, "--seconds", "60")
    assert code == 0 and report["passed"] and report["max_abs_diff"] <= 1e-4
    code, listing = run_json(capsys, "list")
    assert "lstm-ctc" in [a["name"] for a in listing["architectures"]]

    assert main(["inspect", out]) == 0
    text = capsys.readouterr().out
    for heading in ("ports", "streaming", "frontend", "output", "provenance", "parity certificate"):
        assert f"\n{heading}\n" in text
    assert "encoder_h_in" in text and "-> encoder_h_out" in text and "PASSED" in text


def test_export_without_verify_has_no_certificate(tmp_path, capsys):
    out = str(tmp_path / "m.onnx")
    code, doc = run_json(capsys, "export", "--arch", "lstm-ctc", "--size", "tiny", "-o", out, "--no-verify")
    certificate = doc["card"]["certificate"]
    assert code == 0 and doc["parity"] is None
    assert certificate["passed"] is None and "--no-verify" in certificate["reason"]  # the card says why


def test_errors_are_typed_json(tmp_path, capsys):
    code, doc = run_json(capsys, "inspect", str(tmp_path / "missing.onnx"))
    assert code == 2 and doc["error"]["code"] == "INVALID_MODEL_FILE"
    code, doc = run_json(capsys, "export", "--arch", "nope", "-o", str(tmp_path / "x.onnx"))
    assert code == 2 and doc["error"]["code"] == "INVALID_INPUT" and "lstm-ctc" in doc["error"]["message"]
    code, doc = run_json(capsys, "export", "--arch", "lstm-ctc", "--size", "huge", "-o", str(tmp_path / "x.onnx"))
    assert code == 2 and "tiny" in doc["error"]["message"]


def test_verify_of_a_failing_export_exits_1_with_the_report(tmp_path, capsys):
    import onnx
    from onnx import numpy_helper

    out = str(tmp_path / "m.onnx")
    assert main(["export", "--arch", "lstm-ctc", "--size", "tiny", "-o", out, "--no-verify"]) == 0
    proto = onnx.load(out)
    for init in proto.graph.initializer:  # perturb the head's bias: a different model
        if init.dims == [11]:
            arr = numpy_helper.to_array(init).copy() + 0.01
            init.CopyFrom(numpy_helper.from_array(arr, init.name))
    onnx.save(proto, out)
    capsys.readouterr()
    assert main(["verify", out, "--seconds", "60"]) == 1
    captured = capsys.readouterr()
    assert "FAIL" in captured.out and "error[PARITY_FAILED]" in captured.err


@pytest.mark.parametrize("argv, expected", [
    (["inspect", "/nonexistent/model.onnx"], "error[INVALID_MODEL_FILE]: model file '/nonexistent/model.onnx' does not exist"),
    (["verify", "/nonexistent/model.onnx"], "does not exist"),
])
def test_no_stack_trace_on_user_errors(argv, expected):
    proc = subprocess.run([sys.executable, "-m", "stateport.cli.main", *argv, "--quiet"], capture_output=True,
                          text=True)
    assert proc.returncode == 2
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    # Without --quiet, progress lines may come first; the error is still one line, the last.
    loud = subprocess.run([sys.executable, "-m", "stateport.cli.main", *argv], capture_output=True, text=True)
    lines = loud.stderr.strip().splitlines()
    assert loud.returncode == 2 and lines[-1] == proc.stderr.strip()
    assert all(line.startswith("[") for line in lines[:-1]), lines


def test_train_flags_become_the_training_config():
    """The README's training command line maps onto the recipe fields (no training run)."""
    from stateport.cli.main import build_parser
    from stateport.cli.train_cmd import config_from_args

    args = build_parser().parse_args([
        "train", "-o", "x.pt", "--size", "default", "--steps", "3000", "--batch-size", "16",
        "--dev-speaker", "none", "--mel-bins", "40", "--high-freq-hz", "3800", "--subsampling", "3",
        "--channel-eq", "0.5", "--ema-decay", "0.998", "--speed-range", "0.85", "1.15", "--dropout", "0.2",
        "--flite-weight", "0.5", "--recorded-voices", "slt, ked", "--voice-shift-weight", "1", "--voice-shifts", "4",
        "--fsdd-weight", "2", "--synthetic-weight", "0.5", "--onset-cut", "0.3",
        "--onset-cut-level-db", "-20", "0", "--onset-cut-ms", "0", "0"])
    cfg = config_from_args(args)
    assert cfg.dev_speaker is None and cfg.steps == 3000 and cfg.batch_size == 16
    assert cfg.arch_overrides == {"dropout": 0.2, "input_dim": 40, "high_freq_hz": 3800.0, "subsampling": 3}
    assert cfg.channel_eq_probability == 0.5 and cfg.ema_decay == 0.998
    assert cfg.augment == {"speed_range": (0.85, 1.15), "onset_cut_probability": 0.3,
                           "onset_cut_level_db_range": (-20.0, 0.0), "onset_cut_ms_range": (0.0, 0.0)}
    assert cfg.flite_weight == 0.5 and cfg.recorded_voices == ("slt", "ked")
    assert cfg.voice_shift_weight == 1.0 and cfg.voice_shift_speakers_per_speaker == 4
    assert cfg.fsdd_weight == 2.0 and cfg.synthetic_weight == 0.5
    default = config_from_args(build_parser().parse_args(["train", "-o", "x.pt"]))
    assert default.recorded_voices == ("kal16", "awb", "rms", "slt") and default.voice_shift_weight == 0.0


def test_train_json_is_one_document_and_its_progress_is_on_stderr(tmp_path, capsys):
    out = str(tmp_path / "ck.pt")
    assert main(["train", "-o", out, "--size", "tiny", "--steps", "2", "--eval-every", "1", "--batch-size", "4",
                 "--no-synthetic", "--data-workers", "0", "--json"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc["checkpoint"] == out and [h["step"] for h in doc["history"]] == [1, 2]
    assert "step 2: loss" in captured.err
