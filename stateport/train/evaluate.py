"""Accuracy on speech the model never heard, measured the way a client runs it.

Every utterance is streamed through the exported ONNX file by the client runtime
(:class:`stateport.runtime.streamer.Streamer`, 20 ms reads, state carried, greedy CTC) — not
through torch — so a broken frontend, state loop or export shows up as errors here.

Sets for a held-out FSDD speaker: every isolated digit of that speaker (padded with silence:
a streaming model emits a digit only after hearing a little silence after it), and digit
strings composed from that speaker's clips. Held-out espeak-ng voices give a synthetic set.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..runtime.session import OnnxStepSession
from ..runtime.streamer import Streamer
from .augment import NO_AUGMENTATION
from .clips import TRAIN_SAMPLE_RATE_HZ
from .data import ClipSource, digits_to_token_ids, make_utterance
from .fsdd import load_fsdd
from .metrics import string_accuracy, word_error_rate

LEAD_SILENCE_MS = 300
TRAIL_SILENCE_MS = 600
READ_SAMPLES = 320  # 20 ms at 16 kHz, the microphone read size of the seed's client loop


@dataclass
class EvalSet:
    """Utterances with reference token ids: ``items`` is a list of (waveform f32 [N] at 16 kHz, ref ids)."""

    name: str
    items: list


def _pad(wave: np.ndarray) -> np.ndarray:
    lead = np.zeros(LEAD_SILENCE_MS * TRAIN_SAMPLE_RATE_HZ // 1000, np.float32)
    trail = np.zeros(TRAIL_SILENCE_MS * TRAIN_SAMPLE_RATE_HZ // 1000, np.float32)
    return np.concatenate([lead, wave.astype(np.float32), trail])


def speaker_sets(speaker: str, *, strings: int = 100, indices=None, seed: int = 0) -> list[EvalSet]:
    """Isolated digits and composed digit strings of one FSDD speaker (clean, no augmentation)."""
    clips = load_fsdd(speakers=[speaker], indices=indices)
    singles = EvalSet(f"{speaker} single digits", [(_pad(c.waveform), [c.digit + 1]) for c in clips])
    rng = np.random.default_rng(seed)
    source = [ClipSource(speaker, clips)]
    composed = []
    for _ in range(strings):
        wave, comp = make_utterance(rng, source, num_digits_range=(2, 8), augment=NO_AUGMENTATION)
        composed.append((wave, comp.token_ids.tolist()))
    return [singles, EvalSet(f"{speaker} digit strings", composed)]


def synthetic_set(*, voices: int = 40, strings: int = 100, seed: int = 0) -> EvalSet:
    """Digit strings in espeak-ng voices held out of training (needs espeak-ng)."""
    from .synth import list_espeak_voices, split_espeak_voices, synthesize_digits

    _, held_out = split_espeak_voices(list_espeak_voices(), seed=0)
    clips = synthesize_digits(held_out[:voices], renditions_per_digit=1, seed=1)
    rng = np.random.default_rng(seed)
    source = [ClipSource("espeak-heldout", clips)]
    items = []
    for _ in range(strings):
        wave, comp = make_utterance(rng, source, num_digits_range=(1, 8), augment=NO_AUGMENTATION)
        items.append((wave, comp.token_ids.tolist()))
    return EvalSet("held-out espeak voices, digit strings", items)


def transcribe(streamer: Streamer, waveform: np.ndarray, *, read_samples: int = READ_SAMPLES) -> list[int]:
    """Stream one utterance in ``read_samples`` reads from a fresh state; the token ids."""
    streamer.reset()
    for a in range(0, len(waveform), read_samples):
        streamer.accept_waveform(waveform[a:a + read_samples], TRAIN_SAMPLE_RATE_HZ)
    streamer.input_finished()
    return list(streamer.result().tokens)


def evaluate(model_path: str, sets: list, *, threads: int = 1) -> list[dict]:
    """Per set: digit WER, string accuracy, utterance/digit counts and the streaming RTF."""
    streamer = Streamer(OnnxStepSession(model_path, threads=threads))
    rows = []
    for s in sets:
        refs, hyps = [], []
        audio_s = 0.0
        t0 = time.perf_counter()
        for wave, ref in s.items:
            hyps.append(transcribe(streamer, wave))
            refs.append(list(ref))
            audio_s += len(wave) / TRAIN_SAMPLE_RATE_HZ
        elapsed = time.perf_counter() - t0
        rows.append({"set": s.name, "utterances": len(refs), "digits": sum(len(r) for r in refs),
                     "wer": word_error_rate(refs, hyps), "string_accuracy": string_accuracy(refs, hyps),
                     "audio_s": round(audio_s, 1), "rtf": elapsed / max(audio_s, 1e-9)})
    return rows


def digits_text(token_ids) -> str:
    from ..vocabulary import DIGIT_VOCABULARY

    return " ".join(DIGIT_VOCABULARY[t] for t in token_ids)


__all__ = ["EvalSet", "digits_text", "digits_to_token_ids", "evaluate", "speaker_sets", "synthetic_set",
           "transcribe"]
