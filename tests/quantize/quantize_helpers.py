"""Helpers of the quantize tests: the speech the package ships, and the FSDD skip."""

import json

import numpy as np
import pytest


def shipped_clips() -> str:
    from stateport.quantize.calibration import shipped_speech

    return shipped_speech()


def require_fsdd():
    from stateport.errors import InvalidInputError
    from stateport.train.fsdd import fsdd_dir

    try:
        fsdd_dir()
    except InvalidInputError as e:
        pytest.skip(f"needs the FSDD corpus: {e.message}")


def shipped_soak_audio(minutes: float, *, seed: int = 7):
    """The shipped clips (with their transcripts) one after another with 0.5-2 s gaps and a -65 dBFS floor."""
    import os

    from stateport.quantize.drift import SoakAudio
    from stateport.runtime.audio import prepare_samples, read_audio_file
    from stateport.runtime.resample import resample
    from stateport.vocabulary import DIGIT_VOCABULARY

    folder = shipped_clips()
    with open(os.path.join(folder, "transcripts.json")) as f:
        entries = json.load(f)
    clips = []
    for e in entries:
        samples, rate = read_audio_file(os.path.join(folder, e["file"]))
        clips.append((resample(prepare_samples(samples), rate, 16000),
                      tuple(DIGIT_VOCABULARY.index(w) for w in e["text"].split())))
    rng = np.random.default_rng(seed)
    pieces, utts, pos, total = [], [], 0, int(minutes * 60 * 16000)
    while pos < total:
        gap = np.zeros(int(rng.uniform(0.5, 2.0) * 16000), np.float32)
        wave, ref = clips[int(rng.integers(len(clips)))]
        pieces += [gap, wave]
        utts.append((pos + len(gap), pos + len(gap) + len(wave), ref))
        pos += len(gap) + len(wave)
    audio = np.concatenate(pieces)
    audio += (10 ** (-65 / 20) * rng.standard_normal(len(audio))).astype(np.float32)
    return SoakAudio(audio, utts, 16000, {"source": "shipped clips"})
