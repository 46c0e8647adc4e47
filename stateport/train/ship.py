"""Ship a trained checkpoint as the built-in model: ``python -m stateport.train.ship CHECKPOINT``.

Writes into ``stateport/assets/digits/``: ``checkpoint.pt`` (weights + recipe), ``model.onnx``
(exported with explicit state and a parity certificate), ``metrics.json`` (accuracy on the
held-out speaker and held-out synthetic voices, streamed through the client runtime) and
``clips/`` (demo digit strings composed from the held-out speaker's FSDD recordings, with
their transcripts and the dataset's attribution).
"""

from __future__ import annotations

import argparse
import json
import shutil

import numpy as np
import soundfile as sf
import torch

from ..assets import builtin_dir
from ..export import export_model
from .augment import NO_AUGMENTATION
from .data import ClipSource, ComposeConfig, make_utterance
from .evaluate import digits_text, evaluate, format_row, speaker_sets, synthetic_set
from .fsdd import FSDD_ATTRIBUTION, load_fsdd

DEMO_CLIPS = 6


def make_demo_clips(speaker: str, folder, *, seed: int = 7) -> list[dict]:
    """Digit strings of a held-out speaker's recordings (FSDD test indices 0-4), 16 kHz WAV."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    source = [ClipSource(speaker, load_fsdd(speakers=[speaker], indices=range(5)))]
    entries = []
    for i in range(DEMO_CLIPS):
        wave, comp = make_utterance(rng, source, num_digits_range=(3, 7), augment=NO_AUGMENTATION,
                                    compose=ComposeConfig(trailing_silence_ms_range=(600, 800)))
        name = f"digits_{i}.wav"
        sf.write(folder / name, wave, 16000, subtype="PCM_16")
        entries.append({"file": name, "text": digits_text(comp.token_ids), "speaker": speaker})
    (folder / "transcripts.json").write_text(json.dumps(entries, indent=2))
    (folder / "ATTRIBUTION.md").write_text(
        "These clips are composed from recordings of the Free Spoken Digit Dataset "
        f"(speaker {speaker!r}, indices 0-4).\n\n{FSDD_ATTRIBUTION}\n\nThey are distributed under the same "
        "license, Creative Commons Attribution-ShareAlike 4.0 International (CC BY-SA 4.0).\n")
    return entries


def ship(checkpoint: str, *, strings: int = 100, synthetic: bool = True) -> dict:
    dest = builtin_dir()
    dest.mkdir(parents=True, exist_ok=True)
    data = torch.load(checkpoint, map_location="cpu", weights_only=True)
    recipe = data.get("recipe", {})
    test_speaker = list(recipe["speakers"]["test"])[0]
    shutil.copyfile(checkpoint, dest / "checkpoint.pt")
    result = export_model(dest / "model.onnx", arch=data["architecture"], checkpoint=str(dest / "checkpoint.pt"))
    sets = speaker_sets(test_speaker, strings=strings)
    if synthetic:
        sets.append(synthetic_set(strings=strings))
    rows = evaluate(str(dest / "model.onnx"), sets)
    metrics = {"held_out_speaker": test_speaker, "dev_speakers": list(recipe["speakers"]["dev"]),
               "train_speakers": list(recipe["speakers"]["train"]), "evaluation": rows,
               "parity_max_abs_diff": result.report.max_abs_diff,
               "train_config": recipe.get("train_config"), "best_step": recipe.get("best_step"),
               "best_dev_wer": recipe.get("best_dev_wer"),
               "command": f"python -m stateport.train.ship {checkpoint}"}
    (dest / "metrics.json").write_text(json.dumps(metrics, indent=2))
    make_demo_clips(test_speaker, dest / "clips")
    return metrics


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--strings", type=int, default=100, help="composed digit strings per evaluation set")
    ap.add_argument("--no-synthetic", action="store_true")
    args = ap.parse_args(argv)
    metrics = ship(args.checkpoint, strings=args.strings, synthetic=not args.no_synthetic)
    for row in metrics["evaluation"]:
        print(format_row(row))


if __name__ == "__main__":
    main()
