"""The accuracy table's evaluation sets are an input: any object with name / items / sample_rate_hz goes in,
token sets are scored by WER, token-free sets in false tokens per minute, and the goal check reads the rows."""

import json
import os
from dataclasses import dataclass

import numpy as np
import pytest

from quantize_helpers import shipped_clips
from stateport.errors import InvalidInputError
from stateport.quantize.accuracy import GOAL, meets_goal
from stateport.quantize.evaluate import NEGATIVE, EvalSet, as_eval_sets, evaluate_model


@dataclass(frozen=True)
class ForeignSet:
    """A set made elsewhere (e.g. stateport.train.real_speech): only the three attributes, no kind/group."""

    name: str
    items: tuple
    sample_rate_hz: int


def _shipped_items():
    from stateport.runtime.audio import prepare_samples, read_audio_file
    from stateport.vocabulary import DIGIT_VOCABULARY

    folder = shipped_clips()
    with open(os.path.join(folder, "transcripts.json")) as f:
        entries = json.load(f)
    items, rates = [], set()
    for e in entries[:3]:
        samples, rate = read_audio_file(os.path.join(folder, e["file"]))
        rates.add(rate)
        items.append((prepare_samples(samples), tuple(DIGIT_VOCABULARY.index(w) for w in e["text"].split())))
    assert len(rates) == 1
    return tuple(items), rates.pop()


def test_foreign_sets_are_taken_as_they_are_and_bad_ones_are_refused():
    wave = np.zeros(800, np.float64)
    (s,) = as_eval_sets(ForeignSet("x", ((wave, [1, 2]),), 8000))
    assert isinstance(s, EvalSet) and s.kind == "tokens" and s.group == "" and s.sample_rate_hz == 8000
    assert s.items[0][0].dtype == np.float32 and s.items[0][1] == (1, 2) and s.seconds == 0.1
    with pytest.raises(InvalidInputError, match="sample_rate_hz"):
        as_eval_sets([type("NoRate", (), {"name": "n", "items": ()})()])
    with pytest.raises(InvalidInputError, match="empty"):
        as_eval_sets([ForeignSet("empty", (), 16000)])
    with pytest.raises(InvalidInputError, match="no evaluation sets"):
        as_eval_sets(None)


def test_evaluate_model_scores_each_set_and_times_every_step(tiny_lstm_ctc):
    fp32, _ = tiny_lstm_ctc
    items, rate = _shipped_items()
    rng = np.random.default_rng(0)
    noise = tuple((0.05 * rng.standard_normal(rate * 2).astype(np.float32), ()) for _ in range(2))
    sets = [ForeignSet("clips", items, rate), EvalSet("noise", noise, rate, kind=NEGATIVE)]
    result = evaluate_model(fp32, sets)
    clips, neg = result["sets"]
    assert clips["set"] == "clips" and clips["tokens"] == sum(len(r) for _, r in items)
    assert clips["wer"] == clips["errors"] / clips["tokens"] and clips["errors"] >= 0
    assert "wer" not in neg and neg["false_per_minute"] == pytest.approx(neg["false_tokens"] / (4.0 / 60.0))
    assert result["audio_seconds"] == pytest.approx(clips["audio_seconds"] + 4.0, abs=0.02)
    assert result["steps"] > 0 and 0 < result["step_ms"]["p50"] <= result["step_ms"]["p95"]
    assert 0 < result["model_rtf"] < result["rtf"]
    assert result["threads"] == 1


def _row(precision, size_ratio, wer, fpm):
    return {"precision": precision, "size_ratio": size_ratio,
            "sets": [{"wer": wer}, {"false_per_minute": fpm}]}


def test_goal_is_every_set_within_the_margin_and_the_size_cap():
    fp32 = _row("fp32", 1.0, 0.05, 1.0)
    assert meets_goal(fp32, fp32) is None and meets_goal(_row("fp16", 0.5, 0.05, 1.0), fp32) is None
    ok = _row("int8", GOAL["max_size_ratio"], 0.05 + 0.004, 1.0 + 0.4)
    assert meets_goal(ok, fp32) is True
    assert meets_goal(_row("int8", GOAL["max_size_ratio"] + 0.01, 0.05, 1.0), fp32) is False
    assert meets_goal(_row("int8", 0.3, 0.05 + 0.006, 1.0), fp32) is False
    assert meets_goal(_row("int8", 0.3, 0.05, 1.0 + 0.6), fp32) is False


def test_the_table_reuses_only_a_proved_file_of_this_fp32_and_this_recipe(tiny_lstm_ctc, quantized, tmp_path):
    from stateport.quantize import CalibrationConfig, get_recipe
    from stateport.quantize.accuracy import _reusable

    fp32, _ = tiny_lstm_ctc
    static = str(quantized["static-int8"].path)
    made_with = get_recipe("static-int8", calibration=CalibrationConfig(utterances=8))  # conftest's recipe
    assert _reusable(static, fp32, made_with) is not None
    assert _reusable(static, fp32, get_recipe("static-int8")) is None  # another calibration config
    assert _reusable(str(quantized["dynamic-int8"].path), fp32, made_with) is None
    other = tmp_path / "other.onnx"
    other.write_bytes(open(fp32, "rb").read() + b"\0")  # not the fp32 file it was made from
    assert _reusable(static, str(other), made_with) is None
    assert _reusable(str(tmp_path / "missing.onnx"), fp32, made_with) is None
