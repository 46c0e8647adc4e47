"""Static calibration over the caller's audio (or features) with the real streaming state loop.

Why the state loop: a streaming graph is called with a chunk *and the state the previous chunk
left*. Calibrating with fresh (zero) state, or with whole utterances in one call, shows the
quantizer activations that never occur on a device 30 s into a stream. Here every calibration
feed is one step of a real stream: ``card.streaming.frames_per_step`` frames of runtime features
(:mod:`stateport.runtime.frontend`) plus the state inputs the fp32 model produced on the step
before, so every state input and every activation downstream of it sees realistic ranges.

The data is an input (``calib``), checked where it enters (:func:`calibration_streams`):

- a folder (or one file) of recordings in any format soundfile reads (``.wav``, ``.flac``,
  ``.ogg``, ...), at any sample rate (resampled to the model's), or of ``.npy`` features ``[T, F]``;
  other files there (a README, a licence) are skipped and listed;
- an iterable of items: a waveform (1-D float array at the model's sample rate), a
  ``(waveform, sample_rate_hz)`` pair, or features ``[T, F]``;
- a :class:`CalibrationSet`: such items plus what they are, for the card (a provider, e.g.
  ``stateport.train.quantize_data.fsdd_calibration`` for the digit recogniser, says so there).

An unreadable file and less than one second in all are typed errors; the card records what the
calibration really was (kind, source, items, seconds, rates), never more.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import CalibrationError, StateportError
from ..spec import ModelCard
from .recipes import CalibrationConfig

MIN_CALIBRATION_SECONDS = 1.0
FEATURE_SUFFIX = ".npy"


@dataclass
class CalibrationSet:
    """Calibration items (see the module docstring) and ``description``: what they are, for the card."""

    items: Iterable
    description: dict = field(default_factory=dict)


def audio_suffixes() -> set:
    """File suffixes soundfile (libsndfile) reads here, e.g. ``{".wav", ".flac", ".ogg", ...}``."""
    import soundfile as sf

    found = {f".{name.lower()}" for name in sf.available_formats()}
    return found | ({".aif"} if ".aiff" in found else set())


def _folder_items(source) -> tuple[list, dict]:
    """(label, path) items of a calibration folder or file, and what was found there."""
    path = Path(source)
    if not path.exists():
        raise CalibrationError(f"--calib {os.fspath(source)!r} does not exist: expected a folder of recordings "
                               "(.wav, .flac, ...) or of .npy features [T, F]")
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    known = audio_suffixes()
    audio = [p for p in files if p.suffix.lower() in known]
    feats = [p for p in files if p.suffix.lower() == FEATURE_SUFFIX]
    ignored = [p.name for p in files if p not in audio and p not in feats]
    if audio and feats:
        raise CalibrationError(f"--calib {os.fspath(source)!r} mixes recordings ({len(audio)}) and .npy features "
                               f"({len(feats)}): give one kind")
    if not audio and not feats:
        raise CalibrationError(f"--calib {os.fspath(source)!r}: no recordings ({', '.join(sorted(known)[:6])}, ...) "
                               "and no .npy features there")
    info = {"source": os.fspath(source), "files_found": len(audio or feats)}
    if ignored:
        info["ignored_files"] = ignored[:20] + ([f"... {len(ignored) - 20} more"] if len(ignored) > 20 else [])
    return [(p.name, p) for p in (audio or feats)], info


def _load_item(label: str, item, card: ModelCard, feature_dim):
    """One item as ``("audio", waveform at the model's rate, its original rate)`` or ``("features", [T, F], None)``."""
    from ..runtime.audio import prepare_samples, read_audio_file
    from ..runtime.resample import resample

    rate = card.streaming.sample_rate_hz
    try:
        if isinstance(item, (str, os.PathLike)):
            path = Path(item)
            if path.suffix.lower() == FEATURE_SUFFIX:
                try:
                    item = np.load(path, allow_pickle=False)
                except (OSError, ValueError, EOFError) as e:
                    raise CalibrationError(f"cannot read features: {type(e).__name__}: {e}") from None
            else:
                try:
                    samples, file_rate = read_audio_file(path)
                except OSError as e:  # e.g. permission denied: soundfile lets it through
                    raise CalibrationError(f"cannot read audio file: {e.strerror or e}") from None
                wave = prepare_samples(samples)
                return "audio", (resample(wave, file_rate, rate) if file_rate != rate else wave), file_rate
        if isinstance(item, tuple) and len(item) == 2:
            from ..runtime.audio import check_sample_rate

            wave, file_rate = prepare_samples(item[0]), check_sample_rate(item[1])
            return "audio", (resample(wave, file_rate, rate) if file_rate != rate else wave), file_rate
        if not isinstance(item, np.ndarray):
            raise CalibrationError(f"expected a waveform array, a (waveform, sample_rate_hz) pair, features [T, F] "
                                   f"or a file path; got {type(item).__name__}")
        if item.ndim == 2 and feature_dim is not None and item.shape[1] == feature_dim:
            feats = np.asarray(item, dtype=np.float32)
            if not np.all(np.isfinite(feats)):
                raise CalibrationError("features contain NaN or Inf")
            return "features", feats, None
        if item.ndim == 2:
            raise CalibrationError(f"features must be [T, {feature_dim}] for this model; got shape {item.shape} "
                                   "(a waveform is a 1-D array)")
        return "audio", prepare_samples(item), rate
    except CalibrationError as e:
        raise CalibrationError(f"calibration item {label}: {e.message}") from None
    except StateportError as e:
        raise CalibrationError(f"calibration item {label}: {e.message}") from None


def calibration_streams(card: ModelCard, calib, cfg: CalibrationConfig = CalibrationConfig()
                        ) -> tuple[list[np.ndarray], dict]:
    """Feature streams ``[T, F]`` of ``calib`` for the model of ``card``, and what they were (for the card).

    At most ``cfg.utterances`` items are used, ``cfg.utterances_per_stream`` of them per stream
    (recordings joined end to end, then featurised with the runtime frontend; features joined).
    An audio-in model (``card.audio_input``: the frontend is inside the graph) gets the joined
    recordings themselves, ``[N]`` float32 samples at its rate, and refuses features.
    """
    from ..runtime.frontend import FrontendConfig, compute_features

    if calib is None:
        raise CalibrationError("no calibration data: give a folder of recordings (or .npy features), or an "
                               "iterable of waveforms / (waveform, rate) pairs / features")
    info: dict = {}
    if isinstance(calib, (str, os.PathLike)):
        items, info = _folder_items(calib)
    elif isinstance(calib, CalibrationSet):
        items = [(f"#{i}", x) for i, x in enumerate(calib.items)]
        info = {"source": "caller's items", "provider": dict(calib.description)}
    elif isinstance(calib, (bytes, np.ndarray, dict)) or not isinstance(calib, Iterable):
        raise CalibrationError(f"calib: expected a folder, a CalibrationSet or an iterable of items; got "
                               f"{type(calib).__name__} (one waveform: pass [waveform])")
    else:
        items = [(f"#{i}", x) for i, x in enumerate(calib)]
        info = {"source": "caller's items"}
    feature_dim = card.inputs[0].shape[-1] if isinstance(card.inputs[0].shape[-1], int) else None
    loaded = [(label, *_load_item(label, x, card, feature_dim)) for label, x in items[: cfg.utterances]]
    if not loaded:
        raise CalibrationError("calibration data is empty")
    kinds = {kind for _, kind, _, _ in loaded}
    if len(kinds) > 1:
        raise CalibrationError("calibration items mix waveforms and features: give one kind")
    kind = kinds.pop()
    s = card.streaming
    per = cfg.utterances_per_stream
    if kind == "features" and card.audio_input:
        raise CalibrationError("this model computes its features inside the graph (an audio-in model): calibrate "
                               "it with recordings or waveforms, not features")
    if kind == "audio":
        if not card.frontend:
            raise CalibrationError("this model's card declares no frontend (it takes features): calibrate with "
                                   "features [T, F] (.npy files or arrays)")
        fe = FrontendConfig.from_dict(card.feature_frontend)
        waves = [w for _, _, w, _ in loaded]
        seconds = sum(len(w) for w in waves) / s.sample_rate_hz
        features = (lambda w: w.astype(np.float32)) if card.audio_input else (lambda w: compute_features(w, fe))
        streams = [features(np.concatenate(waves[i:i + per])) for i in range(0, len(waves), per)]
        info["sample_rates_hz"] = sorted({r for _, _, _, r in loaded})
        info["resampled_to_hz"] = s.sample_rate_hz
    else:
        feats = [f for _, _, f, _ in loaded]
        seconds = sum(len(f) for f in feats) * s.frame_hop_samples / s.sample_rate_hz
        streams = [np.concatenate(feats[i:i + per]) for i in range(0, len(feats), per)]
    if seconds < MIN_CALIBRATION_SECONDS:
        raise CalibrationError(f"calibration {kind} is {seconds:.2f} s long ({len(loaded)} item(s)); at least "
                               f"{MIN_CALIBRATION_SECONDS:g} s is needed to calibrate the state loop")
    info.update(kind=kind, items=len(loaded), items_available=len(items), seconds=round(seconds, 2),
                streams=len(streams))
    return streams, info


def shipped_speech() -> str | None:
    """The folder of real speech clips this package ships (FSDD, CC BY-SA 4.0; see its ATTRIBUTION.md), if present."""
    from ..assets import builtin_dir

    folder = builtin_dir() / "clips"
    return os.fspath(folder) if folder.is_dir() else None


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
