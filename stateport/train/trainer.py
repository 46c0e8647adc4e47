"""Train a streaming CTC digit-string recogniser (the built-in model) on CPU in minutes.

Recipe (the measurements behind each choice: docs/builtin-model.md):
- utterances composed from isolated digits (FSDD training speakers, espeak-ng training
  voices and, with ``--flite-weight``, flite's and festival's recorded-speaker voices), with wide gain,
  noise and speed augmentation;
- features from the torch twin of the runtime frontend (one definition for train and device).
  The built-in model keeps mel filters below 3.8 kHz (``--high-freq-hz``): FSDD is recorded
  at 8 kHz, so above 4 kHz only synthetic voices had energy and the band told real speech
  from synthetic; and it stacks 3 frames per LSTM step (``--subsampling 3``), which fitted
  the training speakers far faster (loss 0.94 vs 4.68 after 2000 steps) and cut held-out WER;
- **emission-restricted CTC**: each token may only be emitted inside its clip plus a short
  delay. Plain CTC on composed strings learned to emit a guessed digit on the leading silence
  and skip the first spoken one; the restriction removes those alignments from the sum;
- the checkpoint is chosen on a development speaker or on held-out synthetic voices, never
  on the test speaker.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InvalidInputError, PoolFileError
from ..nn.frontend import TorchFrontend
from ..runtime.decoders import ctc_greedy
from ..runtime.frontend import FrontendConfig
from ..vocabulary import BLANK_ID
from .augment import NO_AUGMENTATION, AugmentConfig
from .config import TrainConfig
from .data import ClipSource, ComposeConfig, NegativeSource, StringSource, emission_mask, make_batch, spans_to_frame_spans
from .fsdd import FSDD_ATTRIBUTION, leave_one_speaker_out, load_fsdd
from .metrics import token_error_counts


@dataclass
class TrainResult:
    checkpoint_path: str
    best_step: int
    best_dev_wer: float
    history: list


def _sources(cfg: TrainConfig, split) -> tuple[list, list]:
    """Training sources and the dev sources (dev speaker's FSDD clips; else held-out dev voices).

    With spoken strings or negatives, the dev voices speak those too (strings, sentences of the
    training word list), so the checkpoint is chosen on every kind of utterance it trains on.
    The dev voices (:func:`espeak_voice_roles`' ``dev``) are never the evaluation's ``test`` voices.
    """
    train_clips = load_fsdd(speakers=split.train)
    sources = [ClipSource("fsdd-train", train_clips, cfg.fsdd_weight)]
    dev_sources = []
    if split.dev:
        dev_sources.append(ClipSource("fsdd-dev", load_fsdd(speakers=split.dev)))
    recorded = []
    if cfg.flite_weight > 0 or cfg.recorded_string_weight > 0:
        from .recorded_voices import list_recorded_voices

        recorded = list_recorded_voices(cfg.recorded_voices)  # a typed error names the missing package
    connected = cfg.string_weight > 0 or cfg.recorded_string_weight > 0 or cfg.negative_weight > 0
    train_speech, dev_speech = {}, {}
    if cfg.use_synthetic:
        from .synth import (espeak_available, espeak_voice_roles, list_espeak_voices, split_espeak_voices,
                            synthesize_digits)

        if not espeak_available():
            raise InvalidInputError("use_synthetic needs espeak-ng (apt-get install espeak-ng); "
                                    "or train with use_synthetic=False")
        if connected:
            roles = espeak_voice_roles()
            train_voices, dev_voices = roles["train"], roles["dev"]
        else:  # the original recipe: dev on every held-out voice (it has no test voices)
            train_voices, dev_voices = split_espeak_voices(list_espeak_voices(), seed=0)
        if cfg.negative_weight > 0 or cfg.compose.get("filler_probability", 0) > 0:
            from .speech import TRAIN_WORDS, spoken_sentences

            train_speech = spoken_sentences(list(train_voices) + recorded, TRAIN_WORDS, cfg.sentences, seed=cfg.seed)
            dev_speech = spoken_sentences(dev_voices, TRAIN_WORDS, max(cfg.sentences // 10, 20), seed=cfg.seed + 1)
        synth = synthesize_digits(train_voices, renditions_per_digit=cfg.synthetic_renditions_per_digit, seed=0)
        sources.append(ClipSource("espeak-train", synth, cfg.synthetic_weight, fillers=train_speech))
        if not split.dev:
            dev_sources.append(ClipSource("espeak-heldout", synthesize_digits(dev_voices, renditions_per_digit=1, seed=1),
                                          fillers=dev_speech))
        if cfg.string_weight > 0:
            from .strings import spoken_strings

            sources.append(StringSource("espeak-strings", spoken_strings(train_voices, cfg.spoken_strings, seed=cfg.seed),
                                        cfg.string_weight, fillers=train_speech))
            dev_sources.append(StringSource("espeak-strings-dev",
                                            spoken_strings(dev_voices, max(cfg.spoken_strings // 20, 40),
                                                           seed=cfg.seed + 1), fillers=dev_speech))
        if cfg.negative_weight > 0:
            sources.append(NegativeSource("negatives", train_speech, cfg.negative_weight))
            dev_sources.append(NegativeSource("negatives-dev", dev_speech, 0.5))
    if cfg.flite_weight > 0:
        from .recorded_voices import synthesize_recorded_digits

        clips = synthesize_recorded_digits(recorded, renditions_per_digit=cfg.flite_renditions_per_digit)
        sources.append(ClipSource("flite-train", clips, cfg.flite_weight, fillers=train_speech))
    if cfg.recorded_string_weight > 0:
        from .strings import spoken_strings

        sources.append(StringSource("recorded-strings", spoken_strings(recorded, max(cfg.spoken_strings // 3, 1),
                                                                       seed=cfg.seed),
                                    cfg.recorded_string_weight, fillers=train_speech))
    if cfg.voice_shift_weight > 0:
        from .voice_shift import VoiceShiftConfig, voice_shifted_clips

        shift = VoiceShiftConfig(speakers_per_speaker=cfg.voice_shift_speakers_per_speaker)
        sources.append(ClipSource("fsdd-shifted", voice_shifted_clips(train_clips, shift, seed=cfg.seed),
                                  cfg.voice_shift_weight))
    if not dev_sources:
        raise InvalidInputError("no development data: give a dev speaker or enable synthetic voices")
    return sources, dev_sources


def restricted_ctc_loss(log_probs: torch.Tensor, frame_lengths: torch.Tensor, targets: torch.Tensor,
                        target_lengths: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
    """CTC over the alignments that emit each token inside its allowed frames.

    log_probs: [B, T, V] log-softmax outputs; token_mask: bool [B, U, T], True where target
    token u may be emitted. A vocabulary entry is allowed at frame t if some target token with
    that id may be emitted there; blank is always allowed. The loss is the negative log of the
    probability mass of the allowed alignments under the model's full distribution.

    Why the extra class: torch's ctc_loss backward returns ``exp(log_probs) - posterior``,
    which is the right gradient only if each frame's probabilities sum to one. Simply masking
    disallowed entries breaks that and, measured here, kept the model emitting nothing. So the
    disallowed mass moves into one extra class that no target uses: frames still sum to one,
    the allowed alignments are unchanged, and the gradient is exact.
    """
    B, T, V = log_probs.shape
    one_hot = F.one_hot(targets, V).to(log_probs.dtype)  # [B, U, V]
    allowed = torch.einsum("but,buv->btv", token_mask.to(log_probs.dtype), one_hot) > 0
    allowed[:, :, BLANK_ID] = True
    kept = log_probs.masked_fill(~allowed, -1e4)
    rest = log_probs.masked_fill(allowed, -1e4).logsumexp(-1, keepdim=True)
    extended = torch.cat([kept, rest], dim=-1)
    loss = F.ctc_loss(extended.transpose(0, 1), targets, frame_lengths, target_lengths, blank=BLANK_ID,
                      reduction="sum", zero_infinity=True)
    return loss / B


def batch_emission_mask(spans: torch.Tensor, frames: torch.Tensor, shift_samples: int, delay_samples: int,
                        output_frames: int) -> torch.Tensor:
    """A batch's token spans (samples, int [B, U, 2]) -> the bool [B, U, output_frames] mask of
    :func:`restricted_ctc_loss`: where each token may be emitted, ``delay_samples`` after its word at most.
    Applied per step, not where batches are made: runs that differ only in the delay share a pool."""
    return torch.from_numpy(emission_mask(spans_to_frame_spans(spans.numpy(), shift_samples, delay_samples=delay_samples,
                                                               num_frames=frames.numpy()), output_frames))


def greedy_tokens(logits: np.ndarray, length: int) -> list[int]:
    """Greedy CTC collapse of one utterance's logits [T, V] -> token ids (the runtime's decoder rule)."""
    return ctc_greedy(logits[:length], BLANK_ID)


class _Featurizer:
    """Waveforms [B, N] -> (features [B, T, F], frame lengths [B]) with the torch frontend.

    subsampling: the model's time subsampling; its output has ``T // subsampling`` frames
    (:meth:`output_frames`), and CTC targets are timed on that grid (:meth:`emission_timing`).
    """

    def __init__(self, frontend_dict: dict, subsampling: int = 1):
        self.config = FrontendConfig.from_dict(frontend_dict)
        self.frontend = TorchFrontend(self.config)
        self.subsampling = int(subsampling)

    @classmethod
    def of(cls, model) -> "_Featurizer":
        return cls(model.streaming.frontend, model.streaming.subsampling)

    def __call__(self, waveforms: np.ndarray, lengths: np.ndarray):
        with torch.no_grad():
            feats = self.frontend(torch.from_numpy(waveforms))
        frames = torch.tensor([self.config.num_frames(int(n)) for n in lengths], dtype=torch.long)
        return feats, frames

    def output_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """Valid model output frames for ``frames`` input frames (offline: strided, floored)."""
        return frames // self.subsampling

    def emission_timing(self, emission_delay_ms: float) -> tuple[int, int]:
        """(samples per output frame, allowed emission delay in samples) for the CTC mask.

        An output frame's last window ends ``frame_length - frame_shift`` samples after its
        hop ends, whatever the subsampling: that is part of the allowed delay.
        """
        c = self.config
        delay = int(emission_delay_ms * c.sample_rate_hz / 1000) + c.frame_length_samples - c.frame_shift_samples
        return c.frame_shift_samples * self.subsampling, delay


def _dev_set(cfg: TrainConfig, dev_sources) -> list:
    rng = np.random.default_rng(10_000 + cfg.seed)
    return [make_batch(rng, 20, dev_sources, num_digits_range=cfg.num_digits_range, augment=NO_AUGMENTATION,
                       compose=ComposeConfig(**cfg.compose))
            for _ in range(max(cfg.dev_utterances // 20, 1))]


def decode_offline(model, featurize: _Featurizer, waveforms: np.ndarray, lengths: np.ndarray) -> list[list[int]]:
    """Greedy CTC token ids of the offline forward, one list per padded waveform [B, N]."""
    device = next(model.parameters()).device
    with torch.no_grad():
        feats, frames = featurize(waveforms, lengths)
        frames = featurize.output_frames(frames)
        (logits,) = model(feats.to(device))
    logits = logits.cpu().numpy()
    return [greedy_tokens(logits[i], int(frames[i])) for i in range(len(frames))]


def evaluate_torch(model, featurize: _Featurizer, batches: list) -> float:
    """Token (digit) error rate of greedy decoding of the offline forward over ``batches``.

    Digits emitted in utterances without any (negatives) count as errors (insertions) over
    the same digit total. Batches may be :class:`Batch` or :class:`_PrefixedBatch` (the frozen
    prefix already applied: only the head runs).
    """
    errors = total = 0
    model.eval()
    device = next(model.parameters()).device
    for b in batches:
        if isinstance(b, _PrefixedBatch):
            with torch.no_grad():
                (logits,) = model.head_forward(b.embeddings.to(device))
            logits = logits.cpu().numpy()
            hyps = [greedy_tokens(logits[i], int(b.frames[i])) for i in range(len(b.frames))]
        else:
            hyps = decode_offline(model, featurize, b.waveforms, b.waveform_lengths)
        for i, hyp in enumerate(hyps):
            e, n = token_error_counts(b.targets[i, : b.target_lengths[i]].tolist(), hyp)
            errors, total = errors + e, total + n
    return errors / max(total, 1)


@dataclass(frozen=True)
class _PrefixedBatch:
    """A dev batch whose frozen prefix ran once: embeddings [B, T', D], valid frames [B], targets."""

    embeddings: torch.Tensor
    frames: torch.Tensor
    targets: np.ndarray
    target_lengths: np.ndarray


def _prefixed(batches: list, featurize: _Featurizer, prefix) -> list:
    """Why: the dev set is decoded at every evaluation, and the frozen embedding is most of a
    forward; running it once keeps evaluations cheap (the head sees the same numbers)."""
    out = []
    for b in batches:
        with torch.no_grad():
            feats, frames = featurize(b.waveforms, b.waveform_lengths)
            frames = featurize.output_frames(frames)
            out.append(_PrefixedBatch(prefix_by_utterance(prefix, feats, frames, featurize.subsampling), frames,
                                      b.targets, b.target_lengths))
    return out


def prefix_by_utterance(prefix, feats: torch.Tensor, frames: torch.Tensor, subsampling: int) -> torch.Tensor:
    """A frozen prefix over each utterance's own frames: [B, T, F] -> [B, T // subsampling, D], zeros past
    each utterance's ``frames`` (valid output frames [B]).

    Why not the padded batch at once: a batch's utterances differ several-fold in length, and
    the prefix (a pretrained embedding) is nearly all of a batch's cost; measured on the
    connected-speech mix, two thirds of a padded batch's windows were padding. The valid
    outputs are the same either way: the prefix is causal.
    """
    with torch.no_grad():
        parts = [prefix(feats[i:i + 1, :int(n) * subsampling]) for i, n in enumerate(frames)]
    out = torch.zeros(feats.shape[0], feats.shape[1] // subsampling, parts[0].shape[-1], dtype=parts[0].dtype)
    for i, part in enumerate(parts):
        out[i, :part.shape[1]] = part[0]
    return out


def _set_feature_norm(model, featurize: _Featurizer, rng, sources, cfg: TrainConfig) -> None:
    """Per-dimension mean/std of what the trained layers see (valid frames only), into ``model.norm``:
    the features, or for a model with a frozen prefix (:func:`frozen_prefix_of`) its outputs."""
    prefix = frozen_prefix_of(model)
    values = []
    for _ in range(4):
        b = make_batch(rng, 16, sources, num_digits_range=cfg.num_digits_range,
                       augment=AugmentConfig(**cfg.augment))
        feats, frames = featurize(b.waveforms, b.waveform_lengths)
        if prefix is not None:
            feats, frames = prefix(feats), featurize.output_frames(frames)
        for i in range(len(frames)):
            values.append(feats[i, : frames[i]])
    cat = torch.cat(values)
    model.norm.mean.copy_(cat.mean(0))
    model.norm.std.copy_(cat.std(0).clamp_min(1e-3))


def frozen_prefix_of(model):
    """A model's ``frozen_prefix`` (features -> what its trained layers read, with no trainable
    weights, e.g. a pretrained embedding), or None. Training then runs the prefix in the data
    workers, and the model's ``head_forward`` on its output."""
    return getattr(model, "frozen_prefix", None)


def train(cfg: TrainConfig, out_path: str, *, progress: bool = True, log=print) -> TrainResult:
    """Train, evaluate on the dev set every ``eval_every`` steps, keep the best checkpoint."""
    from ..zoo import get_architecture

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    # The architecture first: a wrong name or size is refused before minutes of data are made.
    entry = get_architecture(cfg.arch)
    arch_config = entry.config_for(cfg.size, cfg.arch_overrides)
    split = leave_one_speaker_out(cfg.test_speaker, dev_speaker=cfg.dev_speaker)
    sources, dev_sources = _sources(cfg, split)
    model = entry.build(config=arch_config, seed=cfg.seed).train()
    featurize = _Featurizer.of(model)
    _set_feature_norm(model, featurize, rng, sources, cfg)
    device = torch.device(cfg.device)
    # The frozen prefix runs where the data is made (CPU worker processes): a CPU copy of it.
    prefix = frozen_prefix_of(copy.deepcopy(model)) if frozen_prefix_of(model) is not None else None
    model.to(device)
    dev = _dev_set(cfg, dev_sources)
    if prefix is not None:
        dev = _prefixed(dev, featurize, prefix)
    augment = AugmentConfig(**cfg.augment)
    compose = ComposeConfig(**cfg.compose)
    shift, delay_samples = featurize.emission_timing(cfg.emission_delay_ms)

    opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)

    def lr_at(step):  # linear warm-up, cosine decay to 5 %
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        p = (step - cfg.warmup_steps) / max(cfg.steps - cfg.warmup_steps, 1)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * p))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    # Why an average: measured on a held-out speaker, the WER of consecutive checkpoints
    # swung by 10-20 points as single confusions flipped; a weight average is steadier.
    # (Off in the shipped recipe: with it, fitting was slower within 2500 steps.)
    ema = None
    if cfg.ema_decay > 0:
        ema = torch.optim.swa_utils.AveragedModel(
            model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
    kept = model if ema is None else ema.module
    if cfg.pool_batches > 0:
        batches = _pooled(lambda: _batch_stream(cfg, sources, featurize, augment, compose, prefix), cfg,
                          _pipeline_probe(featurize, prefix), progress=progress, log=log)
    else:
        batches = _batch_stream(cfg, sources, featurize, augment, compose, prefix)
    best = {"wer": float("inf"), "step": -1, "state": None}
    history = []
    bar = None
    if progress:
        from tqdm import tqdm

        # disable=None: a bar on a terminal only, not thousands of redraws in a log file
        bar = tqdm(total=cfg.steps, desc=f"train {cfg.arch}/{cfg.size} (test {cfg.test_speaker})", unit="step",
                   disable=None)
    t0 = time.time()
    running = None
    for step in range(cfg.steps):
        model.train()
        feats, frames, targets, target_lengths, spans = next(batches)
        # The emission window is applied here, not where batches are made: runs that differ
        # only in the delay share a pool (TrainConfig.pool_key).
        token_mask = batch_emission_mask(spans, frames, shift, delay_samples,
                                         feats.shape[1] if prefix is not None else feats.shape[1] // featurize.subsampling)
        feats, frames, targets, target_lengths = (t.to(device) for t in (feats, frames, targets, target_lengths))
        mask = token_mask.to(device)
        (logits,) = model(feats) if prefix is None else model.head_forward(feats)
        loss = restricted_ctc_loss(logits.log_softmax(-1), frames, targets, target_lengths, mask)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        if ema is not None:
            ema.update_parameters(model)
        loss_value = loss.item()
        running = loss_value if running is None else 0.95 * running + 0.05 * loss_value
        if bar:
            bar.update(1)
            bar.set_postfix(loss=f"{running:.3f}")
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
            wer = evaluate_torch(kept, featurize, dev)
            history.append({"step": step + 1, "loss": running, "dev_wer": wer, "elapsed_s": time.time() - t0})
            if wer < best["wer"]:
                best = {"wer": wer, "step": step + 1, "state": copy.deepcopy(kept.state_dict())}
                # Saved at every new best, not only at the end: a run of an hour that is
                # killed keeps its best checkpoint so far (the end rewrites it, full history).
                save_checkpoint(out_path, kept, cfg, arch_config, split, best, history)
            if cfg.keep_eval_checkpoints:
                _save_eval_checkpoints(out_path, step + 1, kept, model if ema is not None else None, cfg,
                                       arch_config, split, {"wer": wer, "step": step + 1}, history)
            msg = f"step {step + 1}: loss {running:.3f}, dev WER {100 * wer:.2f} % (best {100 * best['wer']:.2f} % @ {best['step']})"
            # stderr, where the bar is: stdout is the caller's (one JSON document with --json)
            bar.write(msg, file=sys.stderr) if bar else log(msg)
    if bar:
        bar.close()
    model.load_state_dict(best["state"])
    model.cpu()
    save_checkpoint(out_path, model, cfg, arch_config, split, best, history)
    return TrainResult(out_path, best["step"], best["wer"], history)


class _Batches(torch.utils.data.IterableDataset):
    """Endless training batches made in a worker process, so data and model work overlap.

    Each is (features or the frozen prefix's output [B, T, D], valid output frames [B],
    targets [B, U], target lengths [B], token spans in samples [B, U, 2]).
    """

    def __init__(self, cfg, sources, featurize, augment, compose, prefix=None):
        self.args = (cfg, sources, featurize, augment, compose, prefix)

    def __iter__(self):
        cfg, sources, featurize, augment, compose, prefix = self.args
        info = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([cfg.seed, 1, info.id if info else 0])
        torch.set_num_threads(1)
        while True:
            b = make_batch(rng, cfg.batch_size, sources, num_digits_range=cfg.num_digits_range, augment=augment,
                           compose=compose)
            feats, frames = featurize(b.waveforms, b.waveform_lengths)
            if cfg.channel_eq_probability > 0:
                random_channel_eq(feats, rng, cfg)
            if cfg.spec_augment:
                spec_augment(feats, frames, rng, cfg)
            frames = featurize.output_frames(frames)
            if prefix is not None:
                feats = prefix_by_utterance(prefix, feats, frames, featurize.subsampling)
            yield (feats, frames, torch.from_numpy(b.targets), torch.from_numpy(b.target_lengths),
                   torch.from_numpy(b.spans_samples))


LOG_POWER_PER_DB = math.log(10.0) / 10.0  # fbank features are natural-log power


def random_channel_eq(feats: torch.Tensor, rng: np.random.Generator, cfg: TrainConfig) -> None:
    """A random microphone/room response per utterance, in place: a smooth curve over the
    mel bins added to every frame's log-mel features.

    Why: each FSDD speaker recorded with one microphone, so four training speakers are
    also four channels, and the model learnt them. Measured on the held-out speaker
    (george): 28 dB less energy below 150 Hz and 8-14 dB more at 3-4 kHz than the others;
    shifting his features by the mean difference alone raised a trained model's
    single-digit accuracy from 45 % to 58 %. A linear time-invariant channel is an additive
    per-bin offset in log-mel features (up to the window's smearing), so adding random
    smooth offsets is the channel, drawn cheaply: a linear tilt across the band plus four
    cosine ripples. (Off in the shipped recipe: within 2500 steps it slowed fitting more than
    it helped the held-out speaker; the online mean in ``lstm-ctc`` removes such offsets.)
    """
    B, _, F_ = feats.shape
    position = torch.linspace(0.0, 1.0, F_)
    for i in range(B):
        if rng.random() >= cfg.channel_eq_probability:
            continue
        curve = float(rng.uniform(-cfg.channel_tilt_db, cfg.channel_tilt_db)) * (position - 0.5)
        for k in range(1, 5):
            curve += float(rng.normal(0.0, cfg.channel_ripple_db)) * torch.cos(math.pi * k * position)
        feats[i] += curve * LOG_POWER_PER_DB


def spec_augment(feats: torch.Tensor, frames: torch.Tensor, rng: np.random.Generator, cfg: TrainConfig) -> None:
    """SpecAugment in place: frequency bands and short time spans set to the utterance mean.

    Why: trained on three or four real speakers, the model learnt them (2.5 % WER on a
    training speaker) but not speech (45-67 % on unseen ones, mostly substitutions); masking
    is the cheapest known regulariser against that. Time masks stay short so a masked span
    never hides a whole digit.
    """
    B, T, F_ = feats.shape
    for i in range(B):
        n = int(frames[i])
        fill = feats[i, :n].mean()
        for _ in range(cfg.freq_masks):
            w = int(rng.integers(0, cfg.freq_mask_bins + 1))
            f0 = int(rng.integers(0, F_ - w + 1))
            feats[i, :n, f0:f0 + w] = fill
        for _ in range(cfg.time_masks):
            w = int(rng.integers(0, cfg.time_mask_frames + 1))
            if n > w:
                t0 = int(rng.integers(0, n - w + 1))
                feats[i, t0:t0 + w] = fill


def _pooled(make_batches, cfg: TrainConfig, probe: torch.Tensor, *, progress: bool, log):
    """Draw ``cfg.pool_batches`` batches once, then cycle through them, reshuffled every pass.

    Why: a model whose costly part is frozen (a pretrained embedding) spends nearly all of a
    step computing it; drawing a pool of batches once and training the head over it many
    times costs a fraction of fresh batches every step. The pool's utterances are still each
    composed and augmented at random, just reused. With ``cfg.pool_file``, the pool is saved
    there, and a later run that would draw the same pool (same :meth:`TrainConfig.pool_key`)
    loads it instead: comparing ways to fit the head costs the drawing once. The file also
    keeps ``probe`` (:func:`_pipeline_probe`), so a pool drawn before the code or weights of
    the features or the frozen prefix changed is refused, not silently trained on.
    """
    rng = np.random.default_rng([cfg.seed, 2])
    pool = _load_pool(cfg.pool_file, cfg, probe, log) if cfg.pool_file and os.path.exists(cfg.pool_file) else None
    if pool is None:
        # Data workers start only for a pool that must be drawn, and stop once it is: the
        # last reference to their stream goes with _draw_pool's frame.
        pool = _draw_pool(make_batches(), cfg, progress=progress, log=log)
        if cfg.pool_file:
            os.makedirs(os.path.dirname(os.path.abspath(cfg.pool_file)), exist_ok=True)
            tmp = cfg.pool_file + ".partial"  # never a half-written pool under the real name
            torch.save({"pool_key": cfg.pool_key(), "probe": probe, "batches": pool}, tmp)
            os.replace(tmp, cfg.pool_file)
            log(f"saved the pool of training batches to {cfg.pool_file}")
    while True:
        for i in rng.permutation(len(pool)):
            yield pool[i]


def _draw_pool(batches, cfg: TrainConfig, *, progress: bool, log) -> list:
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.pool_batches, desc="pool of training batches", unit="batch", disable=None)
    else:
        log(f"drawing a pool of {cfg.pool_batches} training batches")
    pool = []
    for _ in range(cfg.pool_batches):
        pool.append(next(batches))
        if bar:
            bar.update(1)
    if bar:
        bar.close()
    return pool


def _pipeline_probe(featurize: _Featurizer, prefix=None) -> torch.Tensor:
    """What the data pipeline makes of one fixed second of noise: the features, or the frozen
    prefix's output on them. Same code and weights, same probe (to float rounding)."""
    samples = featurize.config.sample_rate_hz
    wave = (0.1 * np.random.default_rng(0).standard_normal((1, samples))).astype(np.float32)
    feats, _ = featurize(wave, np.array([wave.shape[1]]))
    return feats if prefix is None else prefix(feats)


def _load_pool(path: str, cfg: TrainConfig, probe: torch.Tensor, log) -> list:
    try:
        saved = torch.load(path, weights_only=False)
        key, saved_probe, pool = saved["pool_key"], saved["probe"], saved["batches"]
    except Exception as e:  # a torn or foreign file: say which, do not train on it
        raise PoolFileError(f"pool file {path} is not a saved pool of training batches ({e})") from e
    expected = cfg.pool_key()
    if key != expected:
        diff = sorted(k for k in set(key) | set(expected) if key.get(k) != expected.get(k))
        raise PoolFileError(f"pool file {path} was drawn for other data settings ({', '.join(diff)} differ); "
                            f"delete it or name another --pool-file")
    if saved_probe.shape != probe.shape or not torch.allclose(saved_probe, probe, rtol=1e-4, atol=1e-4):
        raise PoolFileError(f"pool file {path} was drawn by another version of the features or of the frozen "
                            f"prefix (code or weights changed since); delete it or name another --pool-file")
    log(f"loaded the pool of {len(pool)} training batches from {path}")
    return pool


def _batch_stream(cfg, sources, featurize, augment, compose, prefix=None):
    data = _Batches(cfg, sources, featurize, augment, compose, prefix)
    if cfg.data_workers <= 0:
        return iter(data)
    loader = torch.utils.data.DataLoader(data, batch_size=None, num_workers=cfg.data_workers, prefetch_factor=4)
    return iter(loader)


def _data_description(cfg: TrainConfig) -> str:
    parts = ["FSDD training speakers"] + ["espeak-ng training voices"] * cfg.use_synthetic \
        + [f"recorded-speaker voices {', '.join(cfg.recorded_voices)} (weight {cfg.flite_weight:g})"] \
        * (cfg.flite_weight > 0) \
        + [f"{cfg.voice_shift_speakers_per_speaker} Praat voice-shifted copies of each FSDD training speaker "
           f"(weight {cfg.voice_shift_weight:g})"] * (cfg.voice_shift_weight > 0) \
        + [f"{cfg.spoken_strings} digit strings spoken whole by espeak-ng voices (weight {cfg.string_weight:g})"] \
        * (cfg.string_weight > 0) \
        + [f"{max(cfg.spoken_strings // 3, 1)} spoken whole by the recorded voices "
           f"(weight {cfg.recorded_string_weight:g})"] * (cfg.recorded_string_weight > 0) \
        + [f"utterances without digits: {cfg.sentences} sentences of other words, noise, silence "
           f"(weight {cfg.negative_weight:g})"] * (cfg.negative_weight > 0)
    return " + ".join(parts) + " (see stateport.train)"


def save_checkpoint(path: str, model, cfg: TrainConfig, arch_config: dict, split, best: dict, history: list) -> None:
    """Write atomically (a temporary file, then a rename): a run killed mid-write keeps the old file."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    partial = path + ".partial"
    torch.save({
        "architecture": cfg.arch,
        "config": arch_config,
        "state_dict": model.state_dict(),
        "recipe": {"train_config": cfg.to_dict(), "speakers": dataclasses.asdict(split),
                   "best_step": best["step"], "best_dev_wer": best["wer"], "history": history,
                   "data": _data_description(cfg),
                   "attribution": FSDD_ATTRIBUTION},
    }, partial)
    os.replace(partial, path)


def eval_checkpoint_dir(out_path: str) -> str:
    """Where ``keep_eval_checkpoints`` puts every evaluated checkpoint: ``<out without .pt>.evals/``."""
    return os.path.splitext(out_path)[0] + ".evals"


def _save_eval_checkpoints(out_path, step, kept, raw, cfg, arch_config, split, at, history) -> None:
    """``step<N>.pt`` (the evaluated weights) and, when those are an average, ``step<N>.raw.pt``.

    Why keep them: a held-out speaker's WER swings between consecutive checkpoints, and only
    the whole curve shows how much of a recipe's figure is the recipe and how much the
    checkpoint. They are for study; the run's own choice stays the dev-set best.
    """
    folder = eval_checkpoint_dir(out_path)
    save_checkpoint(os.path.join(folder, f"step{step}.pt"), kept, cfg, arch_config, split, at, history)
    if raw is not None:
        save_checkpoint(os.path.join(folder, f"step{step}.raw.pt"), raw, cfg, arch_config, split, at, history)


def recipe_of(checkpoint_path: str) -> dict:
    data = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    return json.loads(json.dumps(data.get("recipe", {})))
