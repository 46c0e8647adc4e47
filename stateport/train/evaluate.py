"""Accuracy on speech the model never heard, measured the way a client runs it.

Every utterance is streamed through the exported ONNX file by the client runtime
(:class:`stateport.runtime.recognizer.Recognizer`, 20 ms reads, state carried, greedy CTC) — not
through torch — so a broken frontend, state loop or export shows up as errors here.

Sets for a held-out FSDD speaker: every isolated digit of that speaker (padded with silence:
a streaming model emits a digit only after hearing a little silence after it), and digit
strings composed from that speaker's clips. Held-out espeak-ng voices give a synthetic set.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..runtime.recognizer import Recognizer
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


def transcribe(streamer: Recognizer, waveform: np.ndarray, *, read_samples: int = READ_SAMPLES) -> list[int]:
    """Stream one utterance in ``read_samples`` reads from a fresh stream; the token ids."""
    return list(streamer.transcribe(waveform, TRAIN_SAMPLE_RATE_HZ, read_samples=read_samples).tokens)


def evaluate(model_path: str, sets: list, *, threads: int = 1, allow_uncertified: bool = False) -> list[dict]:
    """Per set: digit WER, string accuracy, utterance/digit counts and the streaming RTF."""
    streamer = Recognizer.from_file(model_path, threads=threads, allow_uncertified=allow_uncertified)
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
        rows.append(accuracy_row(s.name, refs, hyps) | {"audio_s": round(audio_s, 1),
                                                        "rtf": elapsed / max(audio_s, 1e-9)})
    return rows


def accuracy_row(name: str, refs: list, hyps: list) -> dict:
    """A set's digit WER, string accuracy and counts (token id lists in, one per utterance)."""
    return {"set": name, "utterances": len(refs), "digits": sum(len(r) for r in refs),
            "wer": word_error_rate(refs, hyps), "string_accuracy": string_accuracy(refs, hyps)}


def format_row(row: dict) -> str:
    """One evaluation row as the line ``ship`` and ``evaluate`` print."""
    return (f"{row['set']:<42} WER {100 * row['wer']:6.2f} %  string acc {100 * row['string_accuracy']:6.2f} %  "
            f"({row['utterances']} utts, {row['digits']} digits, RTF {row['rtf']:.4f})")


def held_out_speaker(recipe: dict) -> str:
    """The FSDD speaker a checkpoint's recipe held out of training (george for a recipe without one)."""
    return list(recipe.get("speakers", {}).get("test", []) or ["george"])[0]


def evaluate_checkpoint(checkpoint: str, *, speaker: str | None = None, strings: int = 100,
                        synthetic: bool = True, indices=None) -> dict:
    """Export ``checkpoint`` with its parity proof and evaluate it through the client runtime.

    speaker: the FSDD speaker to test on (default: the recipe's held-out speaker); indices:
    that speaker's recordings to use (default all 50 per digit). A model
    whose proof fails is still evaluated — its accuracy is a fact about the weights — but
    the result says ``"parity_passed": False`` and which checks failed, so a leave-one-out
    study sees it; ``stateport export`` and ``ship`` refuse such a model.
    """
    import tempfile
    from pathlib import Path

    import torch

    from ..errors import ParityError
    from ..export import export_model

    data = torch.load(checkpoint, map_location="cpu", weights_only=True)
    recipe = data.get("recipe", {})
    if speaker is None:
        speaker = held_out_speaker(recipe)
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "model.onnx")
        try:
            report = export_model(path, arch=data["architecture"], checkpoint=checkpoint).report
            failures = []
        except ParityError as e:  # measured anyway, on the failed file the export kept beside the path
            report, failures, path = e.report, [c.name for c in e.report.failures], e.evidence or path
        sets = speaker_sets(speaker, strings=strings, indices=indices) + ([synthetic_set(strings=strings)] if synthetic else [])
        rows = evaluate(path, sets, allow_uncertified=bool(failures))  # a failed proof is measured, deliberately
    trained_on = recipe.get("speakers", {}).get("train", [])
    return {"checkpoint": checkpoint, "speaker": speaker, "speaker_heard_in_training": speaker in trained_on,
            "parity_passed": not failures, "parity_failures": failures,
            "parity_max_scaled_diff": report.max_scaled_diff, "evaluation": rows}


def main(argv=None) -> None:
    """``python -m stateport.train.evaluate CHECKPOINT``: held-out accuracy of any trained checkpoint."""
    import argparse
    import json

    ap = argparse.ArgumentParser(description="Export a checkpoint (with its parity proof) and measure its digit "
                                             "WER through the client runtime on a held-out FSDD speaker.")
    ap.add_argument("checkpoint")
    ap.add_argument("--speaker", default=None, help="FSDD speaker (default: the recipe's held-out speaker)")
    ap.add_argument("--strings", type=int, default=100, help="composed digit strings per set")
    ap.add_argument("--no-synthetic", action="store_true", help="skip the held-out espeak-ng voices")
    ap.add_argument("--json", default=None, metavar="OUT", help="also write the result as JSON")
    args = ap.parse_args(argv)
    result = evaluate_checkpoint(args.checkpoint, speaker=args.speaker, strings=args.strings,
                                 synthetic=not args.no_synthetic)
    if result["speaker_heard_in_training"]:
        print(f"WARNING: {result['speaker']} was a training speaker of this checkpoint: not a held-out figure")
    verdict = "passed" if result["parity_passed"] else "FAILED (" + ", ".join(result["parity_failures"]) + ")"
    print(f"parity proof {verdict}; max scaled diff {result['parity_max_scaled_diff']:.2e}")
    for row in result["evaluation"]:
        print(format_row(row))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


def digits_text(token_ids) -> str:
    from ..vocabulary import DIGIT_VOCABULARY

    return " ".join(DIGIT_VOCABULARY[t] for t in token_ids)


__all__ = ["EvalSet", "accuracy_row", "digits_text", "digits_to_token_ids", "evaluate", "evaluate_checkpoint", "format_row",
           "held_out_speaker",
           "speaker_sets", "synthetic_set", "transcribe"]


if __name__ == "__main__":
    main()
