"""The training recipe: restricted CTC, metrics, and a tiny end-to-end run whose loss decreases."""

import jiwer
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stateport.train.metrics import edit_distance, string_accuracy, word_error_rate
from stateport.train.trainer import TrainConfig, greedy_tokens, restricted_ctc_loss, train


def _random_case(seed=0, B=3, T=30, V=6, U=4):
    g = torch.Generator().manual_seed(seed)
    log_probs = torch.randn(B, T, V, generator=g).log_softmax(-1)
    targets = torch.randint(1, V, (B, U), generator=g)
    frames = torch.tensor([T, T - 5, T - 9])
    target_lengths = torch.tensor([U, U - 1, 2])
    return log_probs, frames, targets, target_lengths


def test_unrestricted_mask_equals_plain_ctc():
    log_probs, frames, targets, tl = _random_case()
    mask = torch.ones(targets.shape[0], targets.shape[1], log_probs.shape[1], dtype=torch.bool)
    ours = restricted_ctc_loss(log_probs, frames, targets, tl, mask)
    ref = F.ctc_loss(log_probs.transpose(0, 1), targets, frames, tl, blank=0, reduction="sum") / 3
    assert abs(float(ours) - float(ref)) < 1e-4


def test_restriction_removes_alignments():
    log_probs, frames, targets, tl = _random_case(1)
    full = torch.ones(targets.shape[0], targets.shape[1], log_probs.shape[1], dtype=torch.bool)
    narrow = full.clone()
    narrow[:, :, :5] = False  # no token may be emitted in the first 5 frames
    a = float(restricted_ctc_loss(log_probs, frames, targets, tl, full))
    b = float(restricted_ctc_loss(log_probs, frames, targets, tl, narrow))
    assert b > a + 1e-3  # fewer allowed alignments: less probability mass, higher loss


def test_metrics_agree_with_jiwer():
    refs = [[1, 2, 3, 4], [5, 5], [7, 8, 9]]
    hyps = [[1, 3, 4], [5, 5, 5], [7, 8, 9]]
    ours = word_error_rate(refs, hyps)
    theirs = jiwer.wer([" ".join(map(str, r)) for r in refs], [" ".join(map(str, h)) for h in hyps])
    assert ours == pytest.approx(theirs)
    assert edit_distance("kitten", "sitting") == 3
    assert string_accuracy(refs, hyps) == pytest.approx(1 / 3)


def test_greedy_collapse():
    logits = np.full((7, 4), -5.0)
    for t, k in enumerate([0, 2, 2, 0, 2, 3, 3]):
        logits[t, k] = 5.0
    assert greedy_tokens(logits, 7) == [2, 2, 3]
    assert greedy_tokens(logits, 3) == [2]


def test_tiny_training_run_reduces_the_loss(tmp_path):
    cfg = TrainConfig(size="tiny", steps=40, batch_size=6, eval_every=20, use_synthetic=False, dev_utterances=20,
                      num_digits_range=(1, 3), learning_rate=5e-3, warmup_steps=5, data_workers=0)
    result = train(cfg, str(tmp_path / "ck.pt"), progress=False, log=lambda *_: None)
    losses = [h["loss"] for h in result.history]
    assert len(losses) == 2 and losses[1] < 0.8 * losses[0]
    ck = torch.load(tmp_path / "ck.pt", weights_only=True)
    assert ck["architecture"] == "lstm-ctc" and ck["config"]["hidden_size"] == 32
    recipe = ck["recipe"]
    assert list(recipe["speakers"]["test"]) == ["george"] and "george" not in recipe["speakers"]["train"]
    assert "CC BY-SA 4.0" in recipe["attribution"]


def test_a_killed_run_keeps_its_best_checkpoint_so_far(tmp_path):
    class Killed(Exception):
        pass

    def kill_after_first_evaluation(message):  # called once per evaluation, after it
        raise Killed(message)

    cfg = TrainConfig(size="tiny", steps=40, batch_size=4, eval_every=10, use_synthetic=False, dev_utterances=20,
                      num_digits_range=(1, 2), warmup_steps=5, data_workers=0)
    with pytest.raises(Killed, match="step 10"):
        train(cfg, str(tmp_path / "ck.pt"), progress=False, log=kill_after_first_evaluation)
    ck = torch.load(tmp_path / "ck.pt", weights_only=True)
    assert ck["recipe"]["best_step"] == 10 and [h["step"] for h in ck["recipe"]["history"]] == [10]
    assert not (tmp_path / "ck.pt.partial").exists()
    from stateport.zoo import get_architecture

    get_architecture("lstm-ctc").build(config=ck["config"]).load_state_dict(ck["state_dict"])


def _reference_restricted_ctc(log_probs, target, allowed):
    """Plain alpha recursion over the extended label sequence, disallowed emissions removed."""
    T = log_probs.shape[0]
    ext = [0]
    for tok in target:
        ext += [tok, 0]
    neg = torch.tensor(-1e30, dtype=log_probs.dtype)

    def emit(t, s):
        lab = ext[s]
        if lab != 0 and not allowed[t, s // 2]:
            return neg
        return log_probs[t, lab]

    alpha = [neg] * len(ext)
    alpha[0], alpha[1] = emit(0, 0), emit(0, 1)
    for t in range(1, T):
        new = []
        for s in range(len(ext)):
            terms = [alpha[s]] + ([alpha[s - 1]] if s >= 1 else [])
            if s >= 2 and ext[s] != 0 and ext[s] != ext[s - 2]:
                terms.append(alpha[s - 2])
            new.append(torch.logsumexp(torch.stack(terms), 0) + emit(t, s))
        alpha = new
    return -torch.logsumexp(torch.stack([alpha[-1], alpha[-2]]), 0)


def test_restricted_ctc_loss_and_gradient_match_a_reference_recursion():
    g = torch.Generator().manual_seed(3)
    T, V = 12, 5
    logits = torch.randn(1, T, V, generator=g, dtype=torch.float64, requires_grad=True)
    target = [2, 3, 3]
    mask = torch.zeros(1, 3, T, dtype=torch.bool)
    mask[0, 0, 0:5] = True
    mask[0, 1, 3:8] = True
    mask[0, 2, 6:12] = True
    ours = restricted_ctc_loss(logits.log_softmax(-1), torch.tensor([T]), torch.tensor([target]),
                               torch.tensor([3]), mask)
    (g_ours,) = torch.autograd.grad(ours, logits)
    logits2 = logits.detach().clone().requires_grad_(True)
    # The reference allows a token id wherever any target position with that id is allowed.
    allowed_id = {tok: mask[0, [i for i, t in enumerate(target) if t == tok]].any(0) for tok in set(target)}
    allowed = torch.stack([allowed_id[tok] for tok in target], dim=1)  # [T, U]
    ref = _reference_restricted_ctc(logits2.log_softmax(-1)[0], target, allowed)
    (g_ref,) = torch.autograd.grad(ref, logits2)
    assert abs(float(ours) - float(ref)) < 1e-8
    assert float((g_ours - g_ref).abs().max()) < 1e-8


def test_random_channel_eq_adds_one_smooth_curve_per_utterance():
    from stateport.train.trainer import LOG_POWER_PER_DB, random_channel_eq

    cfg = TrainConfig(channel_eq_probability=1.0, channel_tilt_db=12.0, channel_ripple_db=3.0)
    feats = torch.randn(4, 50, 40)
    before = feats.clone()
    random_channel_eq(feats, np.random.default_rng(0), cfg)
    offset = feats - before
    # A channel is time-invariant: every frame of an utterance moves by the same curve ...
    assert float((offset - offset[:, :1]).abs().max()) < 1e-5
    curves = offset[:, 0] / LOG_POWER_PER_DB  # [B, bins] in dB
    # ... the curves differ between utterances and are not flat ...
    assert float((curves[0] - curves[1]).abs().max()) > 1.0
    assert float(curves.std(dim=1).min()) > 0.5
    # ... and are smooth: neighbouring bins differ far less than the curve's range.
    steps = (curves[:, 1:] - curves[:, :-1]).abs().max(dim=1).values
    ranges = curves.max(dim=1).values - curves.min(dim=1).values
    assert bool((steps < 0.25 * ranges).all())


def test_random_channel_eq_probability_zero_changes_nothing():
    from stateport.train.trainer import random_channel_eq

    feats = torch.randn(3, 20, 40)
    before = feats.clone()
    random_channel_eq(feats, np.random.default_rng(0), TrainConfig(channel_eq_probability=0.0))
    assert torch.equal(feats, before)


def test_tiny_training_run_with_weight_average_and_band_limited_frontend(tmp_path):
    """The averaged weights are the ones evaluated and saved, and the card's band is the recipe's.

    It also trains on voice-shifted virtual speakers, so that source is exercised end to end."""
    pytest.importorskip("parselmouth")
    cfg = TrainConfig(size="tiny", steps=20, batch_size=4, eval_every=10, use_synthetic=False, dev_utterances=20,
                      num_digits_range=(1, 2), warmup_steps=5, data_workers=0, ema_decay=0.9,
                      channel_eq_probability=1.0, arch_overrides={"input_dim": 40, "high_freq_hz": 3800.0},
                      voice_shift_weight=1.0, voice_shift_speakers_per_speaker=1, keep_eval_checkpoints=True)
    result = train(cfg, str(tmp_path / "ck.pt"), progress=False, log=lambda *_: None)
    ck = torch.load(tmp_path / "ck.pt", weights_only=True)
    assert ck["config"]["input_dim"] == 40 and ck["recipe"]["train_config"]["ema_decay"] == 0.9
    assert "voice-shifted" in ck["recipe"]["data"]
    # Every evaluation's weights are kept: the average (what was evaluated) and the raw weights.
    kept = sorted(p.name for p in (tmp_path / "ck.evals").iterdir())
    assert kept == ["step10.pt", "step10.raw.pt", "step20.pt", "step20.raw.pt"]
    chosen = torch.load(tmp_path / "ck.evals" / f"step{result.best_step}.pt", weights_only=True)
    assert all(torch.equal(chosen["state_dict"][k], ck["state_dict"][k]) for k in ck["state_dict"])
    assert result.best_step in (10, 20) and 0.0 <= result.best_dev_wer <= 3.0

    from stateport.zoo import get_architecture

    model = get_architecture("lstm-ctc").build(config=ck["config"])
    assert model.streaming.frontend["high_freq_hz"] == 3800.0 and model.streaming.frontend["num_mel_bins"] == 40
    model.load_state_dict(ck["state_dict"])  # the average has exactly the model's parameters and buffers


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_on_cuda_saves_a_cpu_checkpoint(tmp_path):
    cfg = TrainConfig(size="tiny", steps=10, batch_size=4, eval_every=10, use_synthetic=False, dev_utterances=20,
                      num_digits_range=(1, 2), warmup_steps=2, data_workers=0, device="cuda")
    train(cfg, str(tmp_path / "ck.pt"), progress=False, log=lambda *_: None)
    ck = torch.load(tmp_path / "ck.pt", weights_only=True)
    assert all(t.device.type == "cpu" for t in ck["state_dict"].values())


def test_a_model_with_a_frozen_prefix_trains_only_its_head_over_a_pool(tmp_path):
    """embedding-ctc: the pretrained embedding runs in the data pipeline, once per pooled batch; the
    head learns; the checkpoint keeps the pretrained weights unchanged."""
    from stateport.zoo.speech_embedding import SpeechEmbedding

    cfg = TrainConfig(arch="embedding-ctc", size="tiny", steps=40, batch_size=6, eval_every=20, use_synthetic=False,
                      dev_utterances=10, num_digits_range=(1, 2), learning_rate=1e-2, warmup_steps=5,
                      data_workers=0, pool_batches=4)
    result = train(cfg, str(tmp_path / "ck.pt"), progress=False, log=lambda *_: None)
    losses = [h["loss"] for h in result.history]
    assert len(losses) == 2 and losses[1] < 0.8 * losses[0]
    state = torch.load(tmp_path / "ck.pt", weights_only=True)["state_dict"]
    pretrained = SpeechEmbedding().load_pretrained().state_dict()
    assert all(torch.equal(state[f"windows.embedding.{k}"], v) for k, v in pretrained.items())
    assert float(state["norm.std"].min()) > 1e-3  # the head's input statistics were measured



def test_a_saved_pool_is_reused_by_runs_with_the_same_data_and_refused_by_others(tmp_path):
    """--pool-file: a second run with other fitting settings loads the first run's pool (training
    on it exactly as on the freshly drawn one); a run with other data settings is told why not."""
    from stateport.errors import PoolFileError

    pool = str(tmp_path / "pool.pt")
    cfg = TrainConfig(arch="embedding-ctc", size="tiny", steps=6, batch_size=3, eval_every=6, use_synthetic=False,
                      dev_utterances=4, num_digits_range=(1, 2), warmup_steps=2, data_workers=0, pool_batches=2,
                      pool_file=pool)
    logs = []
    first = train(cfg, str(tmp_path / "a.pt"), progress=False, log=logs.append)
    assert any("saved the pool" in m for m in logs)
    logs.clear()
    again = train(cfg, str(tmp_path / "b.pt"), progress=False, log=logs.append)
    assert any("loaded the pool of 2" in m for m in logs)
    assert again.history[-1]["loss"] == pytest.approx(first.history[-1]["loss"], rel=1e-6)
    refit = TrainConfig(**{**cfg.to_dict(), "learning_rate": 1e-2, "arch_overrides": {"input_noise": 0.3}})
    train(refit, str(tmp_path / "c.pt"), progress=False, log=logs.append)
    other = TrainConfig(**{**cfg.to_dict(), "num_digits_range": (1, 3)})
    with pytest.raises(PoolFileError, match="num_digits_range"):
        train(other, str(tmp_path / "d.pt"), progress=False, log=lambda *_: None)
    saved = torch.load(pool, weights_only=False)
    saved["probe"] = saved["probe"] + 0.01  # as if the frozen prefix's code or weights had changed since
    torch.save(saved, tmp_path / "stale.pt")
    with pytest.raises(PoolFileError, match="another version"):
        train(TrainConfig(**{**cfg.to_dict(), "pool_file": str(tmp_path / "stale.pt")}), str(tmp_path / "s.pt"),
              progress=False, log=lambda *_: None)
    (tmp_path / "torn.pt").write_bytes(b"not a pool")
    with pytest.raises(PoolFileError, match="not a saved pool"):
        train(TrainConfig(**{**cfg.to_dict(), "pool_file": str(tmp_path / "torn.pt")}), str(tmp_path / "e.pt"),
              progress=False, log=lambda *_: None)
