"""``stateport demo`` on a fresh install: the whole job, one JSON report."""

import json

from stateport.cli.main import main


def test_demo_runs_end_to_end(tmp_path, capsys, monkeypatch):
    # Nothing beside the package: the int8 step uses the shipped calibration set, never FSDD.
    monkeypatch.setenv("STATEPORT_FSDD_DIR", str(tmp_path / "no-fsdd-here"))
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out), "--json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report == json.loads((out / "report.json").read_text())
    rows = {r["artifact"]: r for r in report["artifacts"]}
    assert "fp32" in rows and "int8 (dynamic)" in rows
    fp32, int8 = rows["fp32"], rows["int8 (dynamic)"]
    assert fp32["parity_max_abs_diff"] < 1e-3
    # dynamic-int8 quantises the LSTM and the output layer; the embedding's convolutions (1.2 of
    # the 2.35 MB) stay float in that recipe (measured 69 % of fp32).
    assert int8["size_bytes"] < 0.75 * fp32["size_bytes"]
    for row in rows.values():
        assert 0 < row["rtf"] < 0.5 and row["latency_ms"]["p95"] > 0
        assert len(row["transcripts"]) == 6
    assert fp32["wer"] <= 0.25 and int8["wer"] <= 0.25  # measured 0.125 both: see the README on the built-in model
    assert report["model"]["state_ports"] == ["windows_frames_in", "encoder_h_in", "encoder_c_in"]
    # --json: stdout is the document alone; the steps went to stderr as progress, without library noise.
    assert "1. export the built-in model" in captured.err and "4. stream 6 demo clips" in captured.err
    assert "WARNING" not in captured.err and "pre-processing" not in captured.err
