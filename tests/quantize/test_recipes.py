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
