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
from ..errors import InvalidInputError
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
    """Digit strings in espeak-ng test voices (held out of training and of checkpoint choice; needs espeak-ng)."""
    from .synth import espeak_voice_roles, synthesize_digits

    clips = synthesize_digits(espeak_voice_roles()["test"][:voices], renditions_per_digit=1, seed=1)
    rng = np.random.default_rng(seed)
    source = [ClipSource("espeak-heldout", clips)]
    items = []
    for _ in range(strings):
        wave, comp = make_utterance(rng, source, num_digits_range=(1, 8), augment=NO_AUGMENTATION)
        items.append((wave, comp.token_ids.tolist()))
    return EvalSet("held-out espeak-ng test voices, digit strings", items)


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


def padded_sets(speaker: str, *, strings: int = 100) -> list:
    """The original padded sets (singles and strings with pauses of ``speaker``, held-out espeak-ng
    strings) as :class:`stateport.train.real_speech.EvalSet` of the group "padded"."""
    from .real_speech import EvalSet as Set

    return [Set(s.name + " (padded)", s.items, group="padded")
            for s in speaker_sets(speaker, strings=strings) + [synthetic_set(strings=strings)]]


def _model_file(path: str, tmp: str) -> tuple[str, dict]:
    """An ONNX file for ``path``: itself, or a checkpoint exported with its parity proof into ``tmp``."""
    from pathlib import Path

    if not str(path).endswith(".pt"):
        return str(path), {}
    import torch

    from ..export import export_model

    data = torch.load(path, map_location="cpu", weights_only=True)
    out = str(Path(tmp) / (Path(path).stem + ".onnx"))
    report = export_model(out, arch=data["architecture"], checkpoint=path).report
    return out, {"parity_max_scaled_diff": report.max_scaled_diff}


def evaluate_real_speech(models: list, *, peer: bool = True, speaker: str = "george", suite: str = "all",
                         tail_padding_ms: float | None = None, strings: int = 100, spoken: int = 50,
                         sentences: int = 60, padded_strings: int = 100, names: list | None = None,
                         log=print) -> dict:
    """The evaluation that mirrors use (:mod:`stateport.train.real_speech`) for model files or
    checkpoints, and PocketSphinx on the same audio: ``{"results": {name: rows}, "tails": ..., ...}``.

    Each model is run as users run it, with the end-of-input flush of its card. A checkpoint is
    exported with its parity proof and its tail measured (:func:`~stateport.train.real_speech.measure_tail`:
    dev voices and the other FSDD speakers) and written into the card, as ``ship`` does; a model file whose card carries a measured tail is used as it is; one
    whose card has none gets its tail measured the same way (used here, the file left untouched).
    tail_padding_ms: a number overrides every model's tail (0: no flush, what a client without one does).
    names: how the table names each model (default: its path as given).
    """
    import tempfile

    from ..export.sources import sha256_file
    from ..verify.tail import write_tail_padding
    from . import real_speech as rs

    sets = []
    if suite in ("all", "real"):
        sets += rs.real_speech_sets(speaker, strings=strings, spoken=spoken, sentences=sentences)
    if suite in ("all", "padded"):
        sets += padded_sets(speaker, strings=padded_strings)
    if not sets:
        raise InvalidInputError(f"suite must be 'all', 'real' or 'padded', got {suite!r}")
    results, tails, files = {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for k, path in enumerate(models):
            onnx, info = _model_file(path, tmp)
            override, tail = tail_padding_ms, {}
            if override is None and not rs.card_tail_is_measured(onnx):
                m = rs.measure_tail(onnx, test_speaker=speaker)
                tail = m.to_dict() | {"delays_ms": None}
                if onnx != str(path):  # our own export of a checkpoint: the card gets it, as ship writes it
                    write_tail_padding(onnx, m)
                else:
                    override = m.tail_padding_ms
            rec = rs.RuntimeDigits(onnx, name=names[k] if names else str(path), tail_padding_ms=override)
            tails[rec.name] = tail | {"tail_padding_ms": rec.tail_padding_ms,
                                      "basis": rec.recognizer.tail_padding_basis}
            files[rec.name] = info | {"file_sha256": sha256_file(onnx)}  # the bytes measured, card included
            log(f"{rec.name}: end-of-input flush {rec.tail_padding_ms:g} ms ({rec.recognizer.tail_padding_basis})")
            results[rec.name] = rs.run_sets(rec, sets, log=log)
        if peer:
            p = rs.PeerDigits()
            results[p.name] = rs.run_sets(p, sets, log=log)
    return {"speaker": speaker, "results": results, "tails": tails, "exports": files,
            "table": rs.markdown_table(results)}


def main(argv=None) -> None:
    """``python -m stateport.train.evaluate MODEL [MODEL ...]``: held-out accuracy of checkpoints or model files."""
    import argparse
    import json

    ap = argparse.ArgumentParser(description="Measure digit models on speech they never heard, through the client "
                                             "runtime: trimmed recordings, connected digits, speech without digits "
                                             "(the real-speech suite), the padded sets, and PocketSphinx on the same "
                                             "audio. A checkpoint (.pt) is exported with its parity proof first.")
    ap.add_argument("models", nargs="+", help="checkpoints (.pt) or stateport model files (.onnx, e.g. an int8 one)")
    ap.add_argument("--suite", default="all", choices=["all", "real", "padded"],
                    help="real: the sets that mirror use; padded: the original padded sets; all: both")
    ap.add_argument("--no-peer", action="store_true", help="skip PocketSphinx")
    ap.add_argument("--tail-ms", type=float, default=None,
                    help="override every model's end-of-input flush in ms (default: the card's; a checkpoint's, "
                         "or a card without one, measured on the dev voices and the other FSDD speakers)")
    ap.add_argument("--speaker", default=None, help="held-out FSDD speaker (default george; --legacy: the recipe's)")
    ap.add_argument("--strings", type=int, default=100, help="connected strings per mode of the held-out speaker")
    ap.add_argument("--spoken", type=int, default=50, help="spoken strings per engine and rate")
    ap.add_argument("--sentences", type=int, default=60, help="sentences without digits")
    ap.add_argument("--padded-strings", type=int, default=100, help="strings per padded set")
    ap.add_argument("--json", default=None, metavar="OUT", help="also write every row as JSON")
    ap.add_argument("--legacy", action="store_true",
                    help="the original report of one checkpoint (export, proof, padded sets only)")
    args = ap.parse_args(argv)
    if args.legacy:
        return _legacy_main(args)
    result = evaluate_real_speech(args.models, peer=not args.no_peer, speaker=args.speaker or "george", suite=args.suite,
                                  tail_padding_ms=args.tail_ms, strings=args.strings, spoken=args.spoken, sentences=args.sentences,
                                  padded_strings=args.padded_strings)
    print()
    print(result["table"])
    if args.json:
        from ..atomic import atomic_write_text

        atomic_write_text(args.json, json.dumps(result, indent=2))


def _legacy_main(args) -> None:
    import json

    result = evaluate_checkpoint(args.models[0], speaker=args.speaker, strings=args.padded_strings)
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
