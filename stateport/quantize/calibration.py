"""Static calibration over real audio with the real streaming state loop.

Why the state loop: a streaming graph is called with a chunk *and the state the previous chunk
left*. Calibrating with fresh (zero) state, or with whole utterances in one call, shows the
quantizer activations that never occur on a device 30 s into a stream. Here every calibration
feed is one step of a real stream: ``card.streaming.frames_per_step`` frames of runtime features
(:mod:`stateport.runtime.frontend`) plus the state inputs the fp32 model produced on the step
before, so every state input and every activation downstream of it sees realistic ranges.

Audio: FSDD recordings of the model's *training* speakers (never its test speaker), composed
into digit strings with silences by :mod:`stateport.train.data`, at 16 kHz. A directory of other
``.wav`` files, or ``.npy`` feature arrays ``[T, F]``, can be given instead.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InvalidInputError
from ..spec import ModelCard
from .recipes import CalibrationConfig


def default_training_speakers(checkpoint: str | os.PathLike | None = None) -> tuple[tuple, str]:
    """(speakers, where that came from): the checkpoint recipe's training speakers, else the default recipe's."""
    from ..train.fsdd import leave_one_speaker_out

    if checkpoint is not None:
        from ..train.trainer import recipe_of

        speakers = (recipe_of(os.fspath(checkpoint)).get("speakers") or {}).get("train")
        if speakers:
            return tuple(speakers), f"training speakers of checkpoint {os.path.basename(os.fspath(checkpoint))}"
    from ..train.trainer import TrainConfig

    d = TrainConfig()
    split = leave_one_speaker_out(d.test_speaker, dev_speaker=d.dev_speaker)
    return split.train, f"training speakers of the default recipe (test speaker {d.test_speaker} excluded)"


def held_out_speaker(checkpoint: str | os.PathLike | None = None) -> str:
    """The test speaker of the model's recipe (the checkpoint's, else the default recipe's)."""
    if checkpoint is not None:
        from ..train.trainer import recipe_of

        test = (recipe_of(os.fspath(checkpoint)).get("speakers") or {}).get("test")
        if test:
            return test[0]
    from ..train.trainer import TrainConfig

    return TrainConfig().test_speaker


@functools.lru_cache(maxsize=8)
def _fsdd_clips(speakers: tuple, folder: str | None) -> tuple:
    """FSDD clips of ``speakers`` (cached: decoding and resampling 1500 files takes seconds)."""
    from ..train.fsdd import load_fsdd

    return tuple(load_fsdd(speakers=list(speakers) or None, data_dir=folder))


def _is_fsdd_dir(folder: Path) -> bool:
    import re

    pat = re.compile(r"^\d_[a-z]+_\d+\.wav$")
    return any(pat.match(p.name) for p in folder.glob("*.wav"))


def calibration_waveforms(cfg: CalibrationConfig, *, source: str | os.PathLike | None = None,
                          speakers: tuple = ()) -> tuple[list[np.ndarray], dict]:
    """Composed utterances float32 [N] at 16 kHz, grouped later into streams; plus a description.

    ``source``: None (the FSDD folder stateport.train finds), an FSDD-style folder, or a folder of
    any ``.wav`` files (each resampled to 16 kHz, separated by 300 ms of silence).
    """
    from ..train.augment import NO_AUGMENTATION, AugmentConfig
    from ..train.clips import TRAIN_SAMPLE_RATE_HZ, resample
    from ..train.data import ClipSource, make_utterance

    folder = Path(source) if source is not None else None
    if folder is not None and not folder.is_dir():
        raise InvalidInputError(f"--calib {source!r}: expected a folder of .wav files or .npy features")
    rng = np.random.default_rng(cfg.seed)
    if folder is None or _is_fsdd_dir(folder) or (folder / "recordings").is_dir():
        clips = _fsdd_clips(tuple(sorted(speakers)), None if folder is None else os.fspath(folder))
        src = ClipSource("calibration", clips)
        augment = AugmentConfig() if cfg.augment else NO_AUGMENTATION
        waves = [make_utterance(rng, [src], augment=augment)[0] for _ in range(cfg.utterances)]
        return waves, {"source": "fsdd", "speakers": sorted({c.speaker for c in clips}),
                       "utterances": len(waves), "augment": cfg.augment}
    import soundfile as sf

    files = sorted(folder.glob("*.wav"))
    if not files:
        raise InvalidInputError(f"--calib {source!r}: no .wav files (and no .npy features) there")
    waves = []
    gap = np.zeros(int(0.3 * TRAIN_SAMPLE_RATE_HZ), np.float32)
    for path in files[: cfg.utterances]:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
        w = resample(data.mean(axis=1), rate, TRAIN_SAMPLE_RATE_HZ)
        waves.append(np.concatenate([gap, w, gap]))
    return waves, {"source": os.fspath(folder), "files": len(waves)}


def calibration_streams(card: ModelCard, cfg: CalibrationConfig, *, source: str | os.PathLike | None = None,
                        speakers: tuple = ()) -> tuple[list[np.ndarray], dict]:
    """Feature streams ``[T, F]`` (each ``utterances_per_stream`` utterances long) and a description."""
    from ..runtime.frontend import FrontendConfig, compute_features

    folder = Path(source) if source is not None else None
    if folder is not None and (folder.suffix == ".npy" or (folder.is_dir() and any(folder.glob("*.npy")))):
        files = [folder] if folder.suffix == ".npy" else sorted(folder.glob("*.npy"))
        streams = [np.asarray(np.load(f), dtype=np.float32) for f in files]
        for f, s in zip(files, streams):
            if s.ndim != 2:
                raise InvalidInputError(f"--calib {f}: features must be [T, F], got shape {s.shape}")
        return streams, {"source": os.fspath(folder), "feature_files": len(files)}
    if not card.frontend:
        raise InvalidInputError("this model has no frontend in its card: give --calib a folder of .npy features")
    fe = FrontendConfig.from_dict(card.frontend)
    waves, info = calibration_waveforms(cfg, source=source, speakers=speakers)
    per = cfg.utterances_per_stream
    streams = [compute_features(np.concatenate(waves[i:i + per]), fe) for i in range(0, len(waves), per)]
    info.update(streams=len(streams), seconds=round(sum(len(w) for w in waves) / fe.sample_rate_hz, 1))
    return streams, info


@dataclass
class StateRange:
    """What one state input was fed during calibration."""

    min: float = float("inf")
    max: float = float("-inf")
    abs_max: float = 0.0
    sum_abs: float = 0.0
    count: int = 0
    nonzero_feeds: int = 0
    feeds: int = 0

    def update(self, value: np.ndarray) -> None:
        self.min = min(self.min, float(value.min()))
        self.max = max(self.max, float(value.max()))
        self.abs_max = max(self.abs_max, float(np.abs(value).max()))
        self.sum_abs += float(np.abs(value).sum())
        self.count += value.size
        self.feeds += 1
        self.nonzero_feeds += int(np.any(value != 0))

    def to_dict(self) -> dict:
        return {"min": self.min, "max": self.max, "abs_max": self.abs_max,
                "mean_abs": self.sum_abs / max(self.count, 1), "feeds": self.feeds,
                "nonzero_feeds": self.nonzero_feeds}


@dataclass
class StateLoopReader:
    """An ONNX Runtime CalibrationDataReader (duck-typed ``get_next()``) that runs the state loop.

    Each feed: one chunk ``[1, frames_per_step, F]`` plus the state inputs the fp32 model returned
    for the previous chunk of the same stream (a fresh stream starts from the card's init values).
    ``extra_outputs``: intermediate tensor names of the fp32 graph whose min/max to record too
    (:attr:`tensor_ranges`), e.g. an LSTM's input X that ONNX Runtime's quantizer does not track.
    ``full_chunks_only``: drop each stream's shorter last chunk. ONNX Runtime's histogram
    calibrators (percentile, entropy) stack every feed's tensors into one array and fail on a
    ragged one; min/max does not care.
    """

    fp32_model: str | bytes
    card: ModelCard
    streams: list
    max_steps: int = 4000
    extra_outputs: tuple = ()
    full_chunks_only: bool = False
    state_ranges: dict = field(default_factory=dict)
    tensor_ranges: dict = field(default_factory=dict)

    def __post_init__(self):
        import onnx

        from ..runtime.session import make_ort_session

        proto = onnx.load_from_string(self.fp32_model) if isinstance(self.fp32_model, bytes) \
            else onnx.load(os.fspath(self.fp32_model))
        have = {o.name for o in proto.graph.output}
        for name in self.extra_outputs:
            if name not in have:
                proto.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
        self._session = make_ort_session(proto.SerializeToString(), optimization="disable")
        self._fetch = self.card.output_names + [n for n in self.extra_outputs if n not in self.card.output_names]
        self.rewind()

    def rewind(self) -> None:
        """Start over from the first stream (fresh state); ranges keep accumulating."""
        self._plan = self._chunks()
        self.steps = 0

    def _chunks(self):
        s = self.card.streaming
        n = max(s.frames_per_step, 1)
        for feats in self.streams:
            state = {st.name: np.full(st.concrete_shape(1), st.init, dtype=np.dtype(st.dtype)) for st in self.card.states}
            usable = len(feats) - (len(feats) % n if s.static or self.full_chunks_only else 0)
            for a in range(0, usable, n):
                chunk = feats[a:a + n]
                if s.check_chunk_frames(len(chunk)) is not None:
                    break
                feed = {self.card.inputs[0].name: np.ascontiguousarray(chunk[None], dtype=np.float32), **state}
                yield feed
                values = dict(zip(self._fetch, self._session.run(self._fetch, feed)))
                for name in self.extra_outputs:
                    v = values[name]
                    lo, hi = self.tensor_ranges.get(name, (float("inf"), float("-inf")))
                    self.tensor_ranges[name] = (min(lo, float(v.min())), max(hi, float(v.max())))
                state = {st.name: values[st.output] for st in self.card.states}

    def get_next(self) -> dict | None:
        if self.steps >= self.max_steps:
            return None
        feed = next(self._plan, None)
        if feed is None:
            return None
        for st in self.card.states:
            self.state_ranges.setdefault(st.name, StateRange()).update(feed[st.name])
        self.steps += 1
        return feed

    def __iter__(self):
        while (feed := self.get_next()) is not None:
            yield feed

    def drain(self) -> int:
        """Run every feed once (to fill :attr:`tensor_ranges` / :attr:`state_ranges`); returns the count."""
        count = 0
        while self.get_next() is not None:
            count += 1
        # The generator computes a step's outputs only when asked for the next feed.
        return count

    def summary(self) -> dict:
        return {"steps": self.steps, "state_ranges": {k: v.to_dict() for k, v in self.state_ranges.items()},
                "tensor_ranges": {k: list(v) for k, v in self.tensor_ranges.items()}}
