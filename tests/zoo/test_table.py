"""The architecture table (``stateport list --table``): measured rows and their markdown."""

import json

import pytest

from stateport.cli.main import main
from stateport.errors import InvalidInputError
from stateport.export.table import COLUMNS, architecture_table, markdown_table

SECONDS = 1.0  # the figures are the point here; the 60 s proofs run in test_architectures.py


@pytest.fixture(scope="module")
def rows():
    return architecture_table(size="tiny", seconds=SECONDS, archs=["lstm-ctc", "quartznet"])


def test_rows_carry_the_card_figures(rows):
    by_name = {r["name"]: r for r in rows}
    assert list(by_name) == ["lstm-ctc", "quartznet"]
    lstm = by_name["lstm-ctc"]
    # tiny lstm-ctc: h and c, each [1 layer, B, 32 hidden]
    assert lstm["graphs"] == 1 and lstm["state_ports"] == 2 and lstm["state_floats_per_stream"] == 2 * 32
    assert lstm["algorithmic_latency_ms"] == pytest.approx(175.0)  # 16 frames x 10 ms + 15 ms window
    qn = by_name["quartznet"]
    assert qn["state_ports"] == 4  # prologue, one sub-block per tiny block x 2, epilogue
    for r in rows:
        assert r["parity_passed"] and r["parity_max_abs_diff"] <= 1e-4
        assert 0.0 <= r["streaming_vs_offline_max_abs_diff"] <= r["parity_max_abs_diff"]
        assert r["parity_seconds"] >= SECONDS and r["parameters"] > 0 and r["onnx_bytes"] > 1000


def test_markdown_has_one_line_per_row(rows):
    text = markdown_table(rows + [{"name": "broken", "size": "tiny", "error": "NOT_SUPPORTED: no"}])
    lines = text.splitlines()
    assert len(lines) == 2 + len(rows) + 1
    assert all(line.count("|") == len(COLUMNS) + 1 for line in lines)
    assert "| lstm-ctc | tiny | 1 | 2 | 64 |" in text and "error: NOT_SUPPORTED: no" in text


def test_bad_arguments_are_user_errors():
    with pytest.raises(InvalidInputError, match="at least 1 s"):
        architecture_table(seconds=0)
    with pytest.raises(InvalidInputError, match="unknown architecture"):
        architecture_table(archs=["nope"])
    (row,) = architecture_table(size="huge", archs=["lstm-ctc"])
    assert row["error"].startswith("INVALID_INPUT") and "no size 'huge'" in row["error"]


def test_cli_list_table_json(capsys):
    code = main(["list", "--table", "--arch", "dscnn-kws", "--seconds", str(SECONDS), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0
    assert [a["name"] for a in doc["architectures"]] and [r["name"] for r in doc["table"]] == ["dscnn-kws"]
    assert doc["table"][0]["parity_passed"]
