"""A short drift soak (60 s): divergence per state over time, WER per window, reset bounds the divergence."""

import os

import numpy as np

from quantize_helpers import shipped_soak_audio


def test_short_soak(quantized, tiny_lstm_ctc, tmp_path):
    from stateport.quantize.drift import DriftConfig, drift_soak

    models = {"fp32": tiny_lstm_ctc[0], "static-int8": quantized["static-int8"].path}
    cfg = DriftConfig(minutes=1.0, divergence_window_s=10.0, wer_window_s=30.0)
    audio = shipped_soak_audio(1.0)
    doc = drift_soak(models, str(tmp_path), audio=audio, cfg=cfg, log=lambda *_: None)
    # One WER window per 30 s that an utterance starts in.
    wer_windows = len({start // (30 * audio.sample_rate_hz) for start, _, _ in audio.utterances})
    assert doc["audio_seconds"] >= 60 and doc["utterances"] >= 10
    # The energy VAD finds (nearly) every utterance's end: a reset per utterance.
    assert doc["resets"] >= 0.8 * doc["utterances"]
    # No state carries more than one utterance plus its silences: the reset interval is bounded.
    assert doc["max_reset_interval_s"] < 15.0
    # With reset the peak is no larger than without, to 1 %: it sits inside one utterance, where the two
    # runs start from slightly different states (measured on the shipped clips: 0.07697 vs 0.07695 on h).
    for port, v in doc["reset_bounds_divergence"]["static-int8"].items():
        assert v["peak_reset"] <= v["peak_no_reset"] * 1.01 + 1e-6, (port, v)
    for mode in ("reset", "no-reset"):
        per = doc["modes"][mode]["static-int8"]["divergence"]["encoder_h_out"]["per_window_max"]
        assert len(per) == int(np.ceil(doc["audio_seconds"] / 10.0)) and max(per) > 0
        assert len(doc["modes"][mode]["fp32"]["wer_per_window"]) == wer_windows
    assert os.path.getsize(tmp_path / "drift.json") > 0
    assert doc["plot"] is None or os.path.getsize(doc["plot"]) > 10_000


def test_reset_bounds_the_state_age(quantized, tiny_lstm_ctc, tmp_path):
    """With reset, no state ever holds more than one reset interval of audio, and the divergence is only
    measured over ages up to that interval; without reset the state age reaches the whole session."""
    from stateport.quantize.drift import DriftConfig, drift_soak

    models = {"fp32": tiny_lstm_ctc[0], "dynamic-int8": quantized["dynamic-int8"].path}
    cfg = DriftConfig(minutes=1.0, wer_window_s=30.0)
    doc = drift_soak(models, str(tmp_path), audio=shipped_soak_audio(1.0, seed=3), cfg=cfg, log=lambda *_: None)
    age = doc["max_state_age_s"]
    assert age["reset"] <= doc["max_reset_interval_s"] + doc["step_seconds"] + 1e-9
    assert age["no-reset"] >= 0.95 * doc["audio_seconds"]
    for port, stats in doc["modes"]["reset"]["dynamic-int8"]["divergence"].items():
        oldest = max(row["age_s"][0] for row in stats["by_state_age_s"])
        assert oldest < doc["max_reset_interval_s"], (port, stats["by_state_age_s"])
        no_reset = doc["modes"]["no-reset"]["dynamic-int8"]["divergence"][port]["by_state_age_s"]
        assert max(row["age_s"][0] for row in no_reset) >= 30.0


def test_soak_of_a_subsampled_model_counts_steps_not_output_frames(tmp_path):
    """A model with 3 frames per output (the built-in one) has fewer output frames than
    input frames; state ages are per step and the soak must not mix the two."""
    import torch

    from stateport.export import export_model
    from stateport.quantize.drift import DriftConfig, drift_soak
    from stateport.zoo import get_architecture

    entry = get_architecture("lstm-ctc")
    config = {**entry.config_for("tiny"), "input_dim": 40, "high_freq_hz": 3800.0, "subsampling": 3}
    torch.save({"architecture": "lstm-ctc", "config": config, "state_dict": entry.build(config=config).state_dict()},
               tmp_path / "ck.pt")
    path = export_model(tmp_path / "m.onnx", arch="lstm-ctc", checkpoint=str(tmp_path / "ck.pt"), seconds=5).path
    cfg = DriftConfig(minutes=0.5, wer_window_s=15.0)
    doc = drift_soak({"fp32": path, "same": path}, str(tmp_path / "soak"), audio=shipped_soak_audio(0.5), cfg=cfg,
                     log=lambda *_: None)
    assert doc["step_seconds"] == 0.15
    for mode in ("reset", "no-reset"):
        stats = doc["modes"][mode]["same"]["divergence"]["encoder_c_out"]
        assert stats["max"] == 0.0  # the same file against itself
        steps = sum(row["steps"] for row in stats["by_state_age_s"])
        assert abs(steps - doc["audio_seconds"] / doc["step_seconds"]) <= 1.5  # steps of 15 frames, not 5
