"""The digit recogniser's inputs for :mod:`stateport.quantize`: calibration audio, the QAT training step,
the held-out evaluation sets and the drift-soak audio, all drawn from FSDD (CC BY-SA 4.0) with the
training recipe's own data pipeline.

``stateport.quantize`` takes its data as inputs and never imports ``stateport.train``; this module
is one provider of those inputs (the CLI uses it for the built-in model when ``--calib`` is not
given). A user's own model brings its own: see docs/quantization.md.

Which speakers: calibration and QAT use the model's *training* speakers (its checkpoint's recipe
names them, else the default recipe's), never its test speaker; evaluation and the soak use the
held-out test speaker.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field

import numpy as np

from ..quantize.calibration import CalibrationSet
from ..quantize.drift import DriftConfig, SoakAudio
from ..quantize.evaluate import EvalSet
from .clips import TRAIN_SAMPLE_RATE_HZ
from .fsdd import FSDD_ATTRIBUTION


def _recipe_speakers(checkpoint) -> dict:
    if checkpoint is None:
        return {}
    from .trainer import recipe_of

    return recipe_of(os.fspath(checkpoint)).get("speakers") or {}


def training_speakers(checkpoint: str | os.PathLike | None = None) -> tuple[tuple, str]:
    """(speakers, where that came from): the checkpoint recipe's training speakers, else the default recipe's."""
    speakers = _recipe_speakers(checkpoint).get("train")
    if speakers:
        return tuple(speakers), f"training speakers of checkpoint {os.path.basename(os.fspath(checkpoint))}"
    from .config import TrainConfig
    from .fsdd import leave_one_speaker_out

    d = TrainConfig()
    split = leave_one_speaker_out(d.test_speaker, dev_speaker=d.dev_speaker)
    return tuple(split.train), f"training speakers of the default recipe (test speaker {d.test_speaker} excluded)"


def held_out_speaker(checkpoint: str | os.PathLike | None = None) -> str:
    """The test speaker of the model's recipe (the checkpoint's, else the default recipe's)."""
    test = _recipe_speakers(checkpoint).get("test")
    if test:
        return test[0]
    from .config import TrainConfig

    return TrainConfig().test_speaker


def dev_speaker(checkpoint: str | os.PathLike | None = None) -> str | None:
    """The development speaker of the model's recipe (None: it chose on held-out synthetic voices)."""
    dev = _recipe_speakers(checkpoint).get("dev")
    if dev is not None:
        return dev[0] if dev else None
    return "next"


@functools.lru_cache(maxsize=8)
def _fsdd_clips(speakers: tuple) -> tuple:
    """FSDD clips of ``speakers`` (cached: decoding and resampling 1500 files takes seconds)."""
    from .fsdd import load_fsdd

    return tuple(load_fsdd(speakers=list(speakers) or None))


def _composed(speakers: tuple, count: int, seed: int, *, augment: bool, num_digits_range=(1, 8)):
    from .augment import NO_AUGMENTATION, AugmentConfig
    from .data import ClipSource, make_utterance

    src = ClipSource("fsdd", _fsdd_clips(tuple(sorted(speakers))))
    rng = np.random.default_rng(seed)
    return [make_utterance(rng, [src], num_digits_range=num_digits_range,
                           augment=AugmentConfig() if augment else NO_AUGMENTATION) for _ in range(count)]


@dataclass(frozen=True)
class FsddCalibration:
    """FSDD digit strings for static calibration.

    utterances: composed digit strings (silences between digits, as the training data).
    speakers: FSDD speakers to draw from; empty = the model's training speakers.
    augment: the training augmentation (gain, noise, speed), so the ranges cover the levels the
        model was trained for (FSDD speakers differ about 10x in level).
    """

    utterances: int = 32
    speakers: tuple = ()
    augment: bool = True
    seed: int = 1234


def fsdd_calibration(checkpoint: str | os.PathLike | None = None, cfg: FsddCalibration = FsddCalibration()
                     ) -> CalibrationSet:
    """Calibration items for ``quantize_model(..., calib=...)``: ``(waveform, 16000)`` pairs and their description."""
    speakers, why = (tuple(cfg.speakers), "given") if cfg.speakers else training_speakers(checkpoint)
    composed = _composed(speakers, cfg.utterances, cfg.seed, augment=cfg.augment)
    return CalibrationSet([(w, TRAIN_SAMPLE_RATE_HZ) for w, _ in composed], {
        "source": "fsdd", "what": "composed FSDD digit strings", "speakers": sorted(speakers), "speakers_from": why,
        "utterances": cfg.utterances, "augment": cfg.augment, "seed": cfg.seed, "attribution": FSDD_ATTRIBUTION})


def held_out_set(speaker: str, *, utterances: int = 60, seed: int = 2024, num_digits_range: tuple = (1, 8)
                 ) -> EvalSet:
    """``utterances`` composed digit strings of ``speaker``: every clip with its silences, pauses between
    digits, no augmentation (the training data's format, on a speaker it never heard)."""
    composed = _composed((speaker,), utterances, seed, augment=False, num_digits_range=num_digits_range)
    return EvalSet(f"{speaker}: composed strings (pauses between digits)",
                   tuple((w, tuple(int(t) for t in c.token_ids)) for w, c in composed), TRAIN_SAMPLE_RATE_HZ,
                   group="composed")


def trimmed_singles(speaker: str) -> EvalSet:
    """Every single-digit recording of ``speaker`` exactly as FSDD ships it: its 8 kHz file, trimmed by
    FSDD's energy detector, nothing appended (the runtime resamples and flushes the card's tail)."""
    import soundfile as sf

    from .data import digits_to_token_ids
    from .fsdd import FSDD_SAMPLE_RATE_HZ, fsdd_dir, load_fsdd

    folder, items = fsdd_dir(), []
    for clip in load_fsdd(speakers=[speaker]):  # the clip list names the files and their digits
        wave, rate = sf.read(str(folder / clip.name), dtype="float32", always_2d=True)
        if rate != FSDD_SAMPLE_RATE_HZ:
            from ..errors import InvalidInputError

            raise InvalidInputError(f"FSDD file {clip.name} is {rate} Hz; FSDD ships {FSDD_SAMPLE_RATE_HZ} Hz")
        items.append((wave.mean(axis=1), tuple(int(t) for t in digits_to_token_ids([clip.digit]))))
    return EvalSet(f"{speaker}: trimmed single digits, as FSDD ships them", tuple(items), FSDD_SAMPLE_RATE_HZ,
                   group="trimmed")


def table_sets(checkpoint: str | os.PathLike | None = None, *, strings: int = 60) -> list[EvalSet]:
    """The accuracy table's sets for the digit recogniser: the held-out speaker's trimmed single digits
    (:func:`trimmed_singles`) and ``strings`` composed strings (:func:`held_out_set`).

    Any other sets go in the same way (``accuracy_table(..., sets=...)``), e.g. the real-speech
    evaluation's connected strings and digit-free speech (``stateport.train.real_speech``).
    """
    speaker = held_out_speaker(checkpoint)
    return [trimmed_singles(speaker), held_out_set(speaker, utterances=strings)]


def fsdd_soak_audio(cfg: DriftConfig, speakers: tuple) -> SoakAudio:
    """Real FSDD digit strings (clean, each with its own silences) separated by random gaps, plus a noise floor,
    ``cfg.minutes`` long."""
    from .augment import NO_AUGMENTATION
    from .data import ClipSource, make_utterance

    rng = np.random.default_rng(cfg.seed)
    src = ClipSource("soak", _fsdd_clips(tuple(sorted(speakers))))
    rate, total = TRAIN_SAMPLE_RATE_HZ, int(cfg.minutes * 60 * TRAIN_SAMPLE_RATE_HZ)
    pieces, utts, pos = [], [], 0
    while pos < total:
        gap = np.zeros(int(rng.uniform(*cfg.gap_s_range) * rate), np.float32)
        w, comp = make_utterance(rng, [src], augment=NO_AUGMENTATION)
        pieces += [gap, w]
        start = pos + len(gap)
        utts.append((start, start + len(w), tuple(int(t) for t in comp.token_ids)))
        pos = start + len(w)
    wave = np.concatenate(pieces)
    wave += (10 ** (cfg.noise_dbfs / 20) * rng.standard_normal(len(wave))).astype(np.float32)
    return SoakAudio(wave, utts, rate, {"source": "fsdd", "speakers": list(speakers),
                                        "gap_s_range": list(cfg.gap_s_range), "noise_dbfs": cfg.noise_dbfs,
                                        "attribution": FSDD_ATTRIBUTION})


@dataclass(frozen=True)
class DigitQatData:
    """What the digit task draws per QAT step: the float recipe's data at a smaller batch.

    use_synthetic: add espeak-ng voices (forced on when the recipe chose its checkpoint on held-out
    synthetic voices, i.e. has no dev speaker: QAT then evaluates on them the same way).
    """

    batch_size: int = 12
    num_digits_range: tuple = (1, 6)
    emission_delay_ms: float = 300.0
    augment: dict = field(default_factory=dict)
    dev_utterances: int = 40
    use_synthetic: bool = False


# The digit task's data per QAT preset (a few dozen small steps for the smoke preset).
DIGIT_QAT_DATA = {"qat-int8": DigitQatData(),
                  "qat-int8-smoke": DigitQatData(batch_size=4, num_digits_range=(1, 3), dev_utterances=8)}


class DigitQatTask:
    """The digit recogniser's QAT step (:class:`stateport.quantize.qat.QatTask`): the float recipe's
    composed FSDD digit strings, augmentation and emission-restricted CTC; evaluated by greedy
    decoding on the recipe's development speaker.

    ``frontend`` / ``subsampling``: the model's (its card's ``frontend`` and ``streaming.subsampling``).
    The data pipeline starts on the first step, in the process that trains (per torchrun rank).
    """

    def __init__(self, frontend: dict, subsampling: int, *, checkpoint: str | os.PathLike | None = None,
                 data: DigitQatData = DigitQatData(), seed: int = 0):
        self.frontend, self.subsampling, self.data, self.seed = dict(frontend), int(subsampling), data, seed
        self.test_speaker = held_out_speaker(checkpoint)
        self.dev_speaker = dev_speaker(checkpoint)
        self._batches = self._dev = self._featurize = None

    @classmethod
    def for_card(cls, card, *, checkpoint=None, recipe: str = "qat-int8", seed: int = 0) -> "DigitQatTask":
        return cls(card.frontend, card.streaming.subsampling, checkpoint=checkpoint,
                   data=DIGIT_QAT_DATA.get(recipe, DigitQatData()), seed=seed)

    def train_config(self, rank: int = 0):
        """The float recipe's TrainConfig for this task (one data stream per rank)."""
        from .config import TrainConfig

        d = self.data
        # A float recipe without a dev speaker chose its checkpoint on held-out synthetic voices;
        # QAT does the same, so it needs the synthetic voices then.
        return TrainConfig(test_speaker=self.test_speaker, dev_speaker=self.dev_speaker, batch_size=d.batch_size,
                           seed=self.seed + rank, use_synthetic=d.use_synthetic or self.dev_speaker is None,
                           num_digits_range=tuple(d.num_digits_range), emission_delay_ms=d.emission_delay_ms,
                           dev_utterances=d.dev_utterances, data_workers=0, augment=dict(d.augment))

    def _start(self):
        import torch.distributed as dist

        from . import trainer as T
        from .augment import AugmentConfig
        from .data import ComposeConfig
        from .fsdd import leave_one_speaker_out

        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        tc = self.train_config(rank)
        split = leave_one_speaker_out(self.test_speaker, dev_speaker=self.dev_speaker)
        sources, dev_sources = T._sources(tc, split)
        self._featurize = T._Featurizer(self.frontend, self.subsampling)
        self._timing = self._featurize.emission_timing(tc.emission_delay_ms)  # (frame shift, delay) in samples
        self._batches = T._batch_stream(tc, sources, self._featurize, AugmentConfig(**tc.augment),
                                        ComposeConfig(**tc.compose))
        self._dev = T._dev_set(tc, dev_sources) if rank == 0 else []

    def loss(self, model, step: int):
        from .trainer import batch_emission_mask, restricted_ctc_loss

        if self._batches is None:
            self._start()
        feats, frames, targets, target_lengths, spans = next(self._batches)
        mask = batch_emission_mask(spans, frames, *self._timing, feats.shape[1] // self._featurize.subsampling)
        (logits,) = model(feats)
        return restricted_ctc_loss(logits.log_softmax(-1), frames, targets, target_lengths, mask)

    def evaluate(self, model) -> dict:
        from .trainer import evaluate_torch

        if self._batches is None:
            self._start()
        return {"dev_wer": evaluate_torch(model, self._featurize, self._dev)} if self._dev else {}

    def describe(self) -> dict:
        return {"task": "digit strings, emission-restricted CTC (stateport.train)", "test_speaker": self.test_speaker,
                "dev_speaker": self.dev_speaker, "data": {**self.data.__dict__}, "attribution": FSDD_ATTRIBUTION}
