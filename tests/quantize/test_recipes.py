"""Recipes are typed configs with named presets."""

import pytest

from stateport.errors import InvalidInputError
from stateport.quantize import PRESETS, StaticInt8Config, get_recipe
from stateport.quantize.recipes import precision_of, recipe_dict


def test_presets_are_typed_and_named():
    assert {"dynamic-int8", "static-int8", "fp16", "qat-int8"} <= set(PRESETS)
    for name, cfg in PRESETS.items():
        assert cfg.name == name
        assert precision_of(cfg) in ("int8", "fp16")
        assert recipe_dict(cfg)["name"] == name


def test_overrides_are_checked():
    cfg = get_recipe("static-int8", per_channel=False)
    assert isinstance(cfg, StaticInt8Config) and cfg.per_channel is False
    with pytest.raises(InvalidInputError, match="no option"):
        get_recipe("static-int8", per_chanel=False)
    with pytest.raises(InvalidInputError, match="unknown recipe"):
        get_recipe("int4")
    with pytest.raises(InvalidInputError, match="calibration method"):
        get_recipe("static-int8", method="mse")


def test_accuracy_table_measures_a_recipe_whose_proof_failed_and_says_so(tiny_lstm_ctc, tmp_path, monkeypatch):
    """Measured before the fix: a recipe failing its proof aborted the whole table (UncertifiedModelError when
    its kept FAILED file was opened for measuring), losing every other row."""
    import dataclasses

    import numpy as np

    from stateport.quantize import recipes
    from stateport.quantize.accuracy import accuracy_table

    monkeypatch.setitem(recipes.PRESETS, "fp16", dataclasses.replace(PRESETS["fp16"], stream_tolerance=1e-12))
    noise = [(0.05 * np.random.default_rng(k).standard_normal(8000)).astype(np.float32) for k in range(2)]
    sets = [type("Set", (), {"name": "noise", "items": tuple((w, (1, 2)) for w in noise), "sample_rate_hz": 16000})]
    table = accuracy_table(tiny_lstm_ctc[0], str(tmp_path), sets=sets, recipes=("fp16",), seconds=2.0, log=lambda *_: None)
    fp32, fp16 = table.rows
    assert fp32["proof_passed"] and not fp16["proof_passed"] and fp16["path"].endswith(".failed.onnx")
    assert fp16["sets"][0]["tokens"] == 4 and fp16["model_rtf"] > 0  # measured all the same
    assert "FAIL" in (tmp_path / "accuracy_table.md").read_text()
    assert any("qat-int8: not measured" in n for n in table.notes)
