"""The settings chosen after training: the warm start and the rejection threshold, in the graph."""

import numpy as np
import pytest
import torch

from stateport.errors import InvalidInputError
from stateport.train.finish import choose_bias, choose_warm_start
from stateport.zoo import get_architecture
from stateport.zoo.embedding_ctc import MEL_BINS, QUIET_FRAME


def _tiny(**options):
    entry = get_architecture("embedding-ctc")
    return entry.build(config=entry.config_for("tiny", {"pretrained": False, **options}), seed=0)


def test_a_warm_start_is_the_lstm_state_after_silence_carried_as_an_offset():
    model = _tiny(warm_start=True)
    with pytest.raises(InvalidInputError):
        _tiny().settle_start_state(0.32)
    model.settle_start_state(0.32)
    quiet = torch.full((1, 32, MEL_BINS), QUIET_FRAME)  # 0.32 s of silence, whole hops
    x = torch.randn(1, 48, MEL_BINS) + 8.0
    cold = _tiny()
    cold.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("start_")})
    with torch.no_grad():
        _, *after_silence = cold.step(quiet, *cold.init_state(1))
        want, *want_state = cold.step(x, *after_silence)
        got, *got_state = model.step(x, *model.init_state(1))  # ports start at zero
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    torch.testing.assert_close(got_state[-2] + model.start_h, want_state[-2], rtol=0, atol=1e-5)  # h
    assert torch.count_nonzero(model.start_c) > 0 and set(model.state_dict()) >= {"start_h", "start_c"}
    assert "start_h" not in _tiny().state_dict()  # older checkpoints load unchanged


def test_a_blank_bias_raises_the_blank_logit_only():
    plain, biased = _tiny(), _tiny(blank_bias=2.0)
    biased.load_state_dict(plain.state_dict())
    x = torch.randn(1, 32, MEL_BINS) + 8.0
    with torch.no_grad():
        (a,), (b,) = plain(x), biased(x)
    diff = (b - a)[0]
    torch.testing.assert_close(diff[:, 0], torch.full((diff.shape[0],), 2.0))
    assert torch.all(diff[:, 1:] == 0)


def test_the_rules_that_choose_both_settings():
    starts = [{"warm_start_s": 0.0, "dev_wer": 0.06}, {"warm_start_s": 0.16, "dev_wer": 0.05},
              {"warm_start_s": 0.32, "dev_wer": 0.05}]
    assert choose_warm_start(starts)["warm_start_s"] == 0.16
    rows = [{"blank_bias": b, "dev_wer": w, "dev_false_per_minute": f}
            for b, w, f in ((0.0, 0.050, 6.0), (1.0, 0.055, 1.5), (2.0, 0.058, 0.9), (3.0, 0.059, 0.5),
                            (4.0, 0.080, 0.1))]
    assert choose_bias(rows)["blank_bias"] == 2.0  # the smallest that meets both bounds
    assert choose_bias(rows, max_false_per_minute=0.2)["blank_bias"] == 3.0  # none does: the largest within WER
    assert choose_bias(rows, max_wer_rise=0.001)["blank_bias"] == 0.0
