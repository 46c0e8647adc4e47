"""``stateport matrix``: architecture x backend cells; one failing cell never stops the others."""

import json
import os

import numpy as np
import pytest

from stateport.cli.main import main
from stateport.export.backends import get_backend
from stateport.export.card_builder import build_card
from stateport.export.matrix import Cell, markdown_matrix, parity_matrix, run_cell
from stateport.export.sources import build_model
from stateport.verify.parity import _slice, chunk_plan, usable_frames


def test_onnx_cell_passes_and_a_missing_extra_is_a_skipped_cell(monkeypatch, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name == "litert_torch" else real(name, *a, **k))
    cells = parity_matrix(archs=["lstm-ctc"], backends=["onnx", "tflite"], seconds=2.0, isolate=False)
    by = {c.backend: c for c in cells}
    assert by["onnx"].status == "pass" and by["onnx"].stream_vs_offline_max_abs_diff <= 1e-4
    assert by["tflite"].status == "skipped" and "stateport[tflite]" in by["tflite"].reason


def test_a_converter_crash_becomes_its_cell(monkeypatch, tmp_path):
    """A backend that raises an internal error: that cell says so (first line), the next cell still runs."""
    import stateport.export.backends.onnx_file as onnx_file

    def broken(*a, **k):
        raise RuntimeError("Unsupported op aten::frobnicate\nlong traceback text")

    monkeypatch.setattr(onnx_file, "convert", broken)
    cell = run_cell("lstm-ctc", "onnx", size="tiny", seconds=2.0, out_dir=str(tmp_path))
    assert cell.status == "error"
    assert cell.reason == "internal: RuntimeError: Unsupported op aten::frobnicate"
    monkeypatch.undo()
    assert run_cell("lstm-ctc", "onnx", size="tiny", seconds=2.0, out_dir=str(tmp_path)).status == "pass"


def test_multi_graph_architecture_is_proven_on_its_encoder(tmp_path):
    cell = run_cell("rnnt", "onnx", size="tiny", seconds=2.0, out_dir=str(tmp_path))
    assert cell.status == "pass", cell
    assert any("encoder graph only" in n for n in cell.notes)


def test_a_folder_layout_cell_exports_the_whole_model_into_a_folder(tmp_path):
    """Measured before: every sherpa-onnx cell was an error (the matrix named a .onnx file for a folder)."""
    cell = run_cell("lstm-transducer", "sherpa-onnx", size="tiny", seconds=2.0, out_dir=str(tmp_path))
    assert cell.status == "pass", cell
    assert not any("encoder graph only" in n for n in cell.notes)  # the transducer whole: sherpa-onnx runs all three
    assert sorted(os.listdir(tmp_path / "lstm-transducer-sherpa-onnx")) == [
        "decoder.onnx", "encoder.onnx", "joiner.onnx", "tokens.txt"]
    refused = run_cell("lstm-ctc", "sherpa-onnx", size="tiny", seconds=2.0, out_dir=str(tmp_path))
    assert refused.status == "error" and "features sherpa-onnx does not compute" in refused.reason


def test_markdown_layout():
    cells = [Cell("lstm-ctc", "onnx", "pass", 1.2e-7), Cell("lstm-ctc", "coreml", "spec-only", reason="not run"),
             Cell("quartznet", "onnx", "error", reason="UnsupportedError: op X | y")]
    text = markdown_matrix(cells)
    lines = text.splitlines()
    assert lines[0] == "| architecture | onnx | coreml |"
    assert "| lstm-ctc | pass 1.2e-07 | spec-only: not run |" in lines
    assert "op X \\| y" in text  # a | inside a reason does not break the table


def test_cli_json(capsys):
    code = main(["matrix", "--arch", "lstm-ctc", "--backend", "onnx", "--seconds", "2", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and [c["status"] for c in doc["cells"]] == ["pass"]
    assert get_backend("onnx").available()


def test_isolated_cell_matches_and_a_native_crash_stays_in_its_cell(monkeypatch):
    """Each cell in its own process: same result as in-process; a segfaulting child is an error cell."""
    import sys

    from stateport.export import matrix

    cell = matrix.run_cell_isolated("lstm-ctc", "onnx", size="tiny", seconds=2.0)
    assert cell.status == "pass" and cell.stream_vs_offline_max_abs_diff <= 1e-4
    monkeypatch.setattr(matrix, "_cell_command",
                        lambda *a: [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"])
    crashed = matrix.run_cell_isolated("lstm-ctc", "onnx", size="tiny", seconds=2.0)
    assert crashed.status == "error" and crashed.reason == "crashed (SIGSEGV) inside the onnx converter or runtime"


def test_a_static_look_ahead_graph_is_fed_its_own_chunk():
    """A static look-ahead graph takes exactly frames_per_step frames, its look-ahead included. Measured
    before: the proof advanced by frames_per_step and then added the look-ahead, feeding 46 frames to the
    39-frame graph of lstm-transducer's encoder, so its TFLite and ExecuTorch cells failed (XNNPACK could
    not reshape)."""
    model, _ = build_model(arch="lstm-transducer", size="tiny")
    encoder = model.graphs()["encoder"]
    card = build_card(encoder, name="encoder", chunk_frames=encoder.streaming.frames_per_step, static=True,
                      provenance={"architecture": "lstm-transducer"})
    s = card.streaming
    assert s.static and s.lookahead_frames == 7 and s.frames_per_step == 39
    frames = usable_frames(card, 500)
    lengths = chunk_plan(card, frames)["nominal"]
    assert set(lengths) == {32} and sum(lengths) + 7 == frames
    x = {"features": np.zeros((1, frames, 80), np.float32)}
    starts = np.cumsum([0, *lengths[:-1]])
    assert {_slice(x, card, a, a + n)["features"].shape[1] for a, n in zip(starts, lengths)} == {39}


def test_static_look_ahead_encoder_cell_passes_on_tflite(tmp_path):
    cell = run_cell("lstm-transducer", "tflite", size="tiny", seconds=2.0, out_dir=str(tmp_path))
    if cell.status == "skipped":
        pytest.skip(cell.reason)
    assert cell.status == "pass", cell


def test_static_frame_wise_and_token_graphs_keep_their_plans():
    """The static branch must not divide by a frame-wise graph's frames_per_step of 0 (rnnt's joiner)."""
    model, _ = build_model(arch="rnnt", size="tiny")
    plans = {}
    for name, graph in model.graphs().items():
        chunk = 0 if graph.is_frame_wise() else graph.streaming.frames_per_step
        card = build_card(graph, name=name, chunk_frames=chunk, static=True, provenance={"architecture": "rnnt"})
        frames = usable_frames(card, 100)
        plans[name] = (frames, {k: sum(v) for k, v in chunk_plan(card, frames).items()})
    assert plans == {"encoder": (96, {"nominal": 96}), "predictor": (100, {"nominal": 100}),
                     "joiner": (100, {"1-frame": 100})}
