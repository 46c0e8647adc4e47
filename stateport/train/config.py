"""The training run's configuration: a plain dataclass, importable without torch or scipy
(the CLI builds its parser from these defaults)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass
class TrainConfig:
    """Everything that determines a training run (saved in the checkpoint)."""

    arch: str = "lstm-ctc"
    size: str = "default"
    test_speaker: str = "george"
    dev_speaker: str | None = "next"
    steps: int = 3000
    batch_size: int = 24
    learning_rate: float = 2e-3
    weight_decay: float = 1e-2
    warmup_steps: int = 150
    grad_clip: float = 5.0
    ema_decay: float = 0.0  # > 0: evaluate and keep an exponential moving average of the weights
    seed: int = 0
    use_synthetic: bool = True
    synthetic_weight: float = 1.0
    fsdd_weight: float = 1.0
    synthetic_renditions_per_digit: int = 2
    flite_weight: float = 0.0  # > 0: add the recorded-speaker voices below as a source of this weight
    flite_renditions_per_digit: int = 20
    recorded_voices: tuple = ("kal16", "awb", "rms", "slt")  # stateport.train.recorded_voices names
    voice_shift_weight: float = 0.0  # > 0: add virtual speakers made from the FSDD training speakers
    voice_shift_speakers_per_speaker: int = 6
    num_digits_range: tuple = (1, 8)
    # Connected speech (issue 21): whole strings a synthesiser spoke in one go, in the training
    # espeak-ng voices and the recorded voices above, and utterances without digits (sentences
    # of stateport.train.speech.TRAIN_WORDS in those voices, noise, silence). 0 = off.
    string_weight: float = 0.0  # > 0: espeak-ng spoken strings, a source of this weight
    recorded_string_weight: float = 0.0  # > 0: recorded voices' spoken strings, a source of this weight
    spoken_strings: int = 3000  # strings drawn for the espeak-ng source (a third as many for the recorded one)
    negative_weight: float = 0.0  # > 0: utterances without digits, a source of this weight
    sentences: int = 2000  # sentences without digits spoken for the negatives and fillers
    compose: dict = field(default_factory=dict)  # stateport.train.data.ComposeConfig overrides
    emission_delay_ms: float = 300.0
    eval_every: int = 250
    keep_eval_checkpoints: bool = False  # also save every evaluated checkpoint (see trainer.eval_checkpoint_dir)
    dev_utterances: int = 120
    threads: int = 1  # measured: 2 intra-op threads made LSTM training 30x slower on a busy 2-core box
    data_workers: int = 1
    pool_batches: int = 0  # > 0: draw this many batches once and train over them (models with a frozen prefix)
    pool_file: str | None = None  # where that pool is saved, and loaded by runs that would draw the same one
    device: str = "cpu"  # torch device for the model ("cuda" when there is one); data stays on CPU
    augment: dict = field(default_factory=dict)
    arch_overrides: dict = field(default_factory=dict)  # e.g. {"dropout": 0.2}
    channel_eq_probability: float = 0.0  # chance an utterance's features get a random channel curve
    channel_tilt_db: float = 12.0  # that curve's tilt across the band, uniform in +-this (dB)
    channel_ripple_db: float = 3.0  # std of its 4 smooth cosine terms (dB)
    spec_augment: bool = False  # the shipped model was trained without it (see the README)
    freq_masks: int = 2
    freq_mask_bins: int = 10
    time_masks: int = 2
    time_mask_frames: int = 8

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def pool_key(self) -> dict:
        """What determines the pool of training batches (``pool_batches``): everything but how
        the model is fitted to it, so runs that differ only in those may share a saved pool."""
        d = self.to_dict()
        for name in FITTING_ONLY:
            d.pop(name)
        d["pool_format"] = POOL_FORMAT
        d["arch_overrides"] = {k: v for k, v in d["arch_overrides"].items() if k not in REGULARISER_OVERRIDES}
        return d


# What a pooled batch holds. 2: token spans in samples, so the emission window (the delay) is
# applied when a batch is trained on and runs with other delays share a pool.
POOL_FORMAT = 2
# Settings that act on the model's fitting, never on the training batches it sees.
FITTING_ONLY = ("emission_delay_ms", "steps", "learning_rate", "weight_decay", "warmup_steps", "grad_clip", "ema_decay", "eval_every",
                "keep_eval_checkpoints", "dev_utterances", "threads", "device", "pool_file")
# Architecture options that only regularise trained layers (active in training mode only).
REGULARISER_OVERRIDES = ("dropout", "input_dropout", "input_noise")
