"""Shared pieces of the client-runtime tests: random-weight models exported once, real speech from FSDD
(the few recordings in tests/data/fsdd)."""

from __future__ import annotations

import atexit
import functools
import glob
import os
import shutil
import tempfile

import numpy as np
import pytest

# The built-in model's state input ports, in the card's order: the speech embedding's contexts (the last
# input frames of each conv that reaches back in time) and whether they are the stream's yet, then the LSTM's.
EMBEDDING_CTC_STATES = [*(f"windows_conv{i}_in" for i in range(0, 19, 2)), "windows_last_in", "windows_started_in",
                        "encoder_h_in", "encoder_c_in"]

# The recordings these tests name ship with the repository (tests/data/fsdd, with its attribution),
# so they run on a clone with nothing beside it; they never read ../shared.
FSDD_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "fsdd")

needs_fsdd = pytest.mark.skipif(not glob.glob(os.path.join(FSDD_DIR, "*.wav")),
                                reason="tests/data/fsdd (shipped with the repository) is missing")

_TMP = tempfile.mkdtemp(prefix="stateport-stream-tests-")
atexit.register(shutil.rmtree, _TMP, ignore_errors=True)


@functools.lru_cache(maxsize=None)
def tiny_ctc_model(chunk_frames: int | None = None, static: bool = False) -> str:
    """``lstm-ctc`` tiny with random weights (seed 0), exported once per process without the parity proof."""
    from stateport.export import export_model

    name = f"lstm_ctc_tiny_c{chunk_frames or 'default'}{'_static' if static else ''}.onnx"
    path = os.path.join(_TMP, name)
    export_model(path, arch="lstm-ctc", size="tiny", chunk_frames=chunk_frames, static=static, verify=False)
    return path


SPEECH_LEVEL = 0.01  # -40 dBFS: the shipped clips' trailing room noise stays below it (measured peak 0.0099)


def trimmed_clips():
    """(samples cut at their last sample above -40 dBFS, rate, reference) of every shipped demo clip:
    recordings that end on their last word, as a trimmed file or a push-to-talk clip does."""
    import soundfile as sf

    from stateport.demo import demo_clips

    out = []
    for path, reference in demo_clips():
        x, rate = sf.read(path, dtype="float32")
        last = int(np.flatnonzero(np.abs(x) > SPEECH_LEVEL)[-1]) + 1
        out.append((x[:last], rate, reference))
    return out


class AlwaysSpeech:
    """A VAD that hears speech in every 32 ms window (to exercise the endpointer's forced cuts)."""

    window_samples, sample_rate_hz = 512, 16000

    def probability(self, window):
        return 1.0

    def reset(self):
        pass


def tail_samples(model_path: str) -> int:
    """Samples of silence the runtime feeds at the end of input for this model (its tail padding)."""
    from stateport.runtime.recognizer import Recognizer

    rec = Recognizer.from_file(model_path, allow_uncertified=True)
    return int(round(rec.tail_padding_ms * rec.sample_rate_hz / 1000))


def with_tail(model_path: str, audio: np.ndarray) -> np.ndarray:
    """``audio`` followed by the runtime's end-of-input flush: what the model hears of a stream."""
    return np.concatenate([audio, np.zeros(tail_samples(model_path), np.float32)])


def fsdd_clip(name: str, rate_hz: int = 16000) -> np.ndarray:
    """One FSDD recording (8 kHz mono) as float32, resampled to ``rate_hz``."""
    import soundfile as sf

    from stateport.runtime.resample import resample

    samples, sr = sf.read(os.path.join(FSDD_DIR, name), dtype="float32")
    return resample(samples, sr, rate_hz) if sr != rate_hz else samples


def digits_stream(names, *, silence_s: float = 1.0, rate_hz: int = 16000) -> np.ndarray:
    """FSDD clips concatenated with ``silence_s`` of digital silence before, between and after."""
    gap = np.zeros(int(silence_s * rate_hz), np.float32)
    parts = [gap]
    for name in names:
        parts += [fsdd_clip(name, rate_hz), gap]
    return np.concatenate(parts)


def reads(samples: np.ndarray, size: int):
    """``samples`` in consecutive reads of ``size`` (the last one shorter)."""
    return [samples[a:a + size] for a in range(0, samples.shape[0], size)]


def shipped_speech(seconds: float, rate_hz: int = 16000) -> np.ndarray:
    """Real speech that every install has: the package's digit clips (FSDD, speaker george, CC BY-SA
    4.0; see stateport/assets/digits/clips/ATTRIBUTION.md), end to end and repeated, each pass at
    another level (-6 dB, 0 dB, +4 dB, ...), cut to ``seconds``."""
    import soundfile as sf

    from stateport.assets import builtin_dir

    clips = [sf.read(p, dtype="float32")[0] for p in sorted((builtin_dir() / "clips").glob("*.wav"))]
    want, parts, total, k = int(seconds * rate_hz), [], 0, 0
    while total < want:
        gain = 10 ** ((-6.0 + 5.0 * (k % 3)) / 20)
        for clip in (clips if k % 2 == 0 else clips[::-1]):
            parts.append(clip * gain)
            total += clip.shape[0]
        k += 1
    return np.concatenate(parts)[:want].astype(np.float32)
