"""Ship a trained checkpoint as the built-in model: ``python -m stateport.train.ship CHECKPOINT``.

Writes into ``stateport/assets/digits/``: ``checkpoint.pt`` (weights + recipe), ``model.onnx``
(exported with explicit state and a parity certificate), ``metrics.json`` (the evaluation that
mirrors use and the padded sets, on the held-out speaker and held-out voices, streamed through
the client runtime, PocketSphinx on the same audio, and the model's end-of-input tail) and
``clips/`` (demo recordings: digit strings composed from the held-out speaker's FSDD
recordings with pauses, and "four one one seven" said at a natural rate without pauses, once
by the held-out speaker's recordings butted together and once by a held-out synthetic voice;
with their transcripts and attribution). The model's end-of-input tail is measured on the dev
voices and written into its card. Every file goes through a temporary file and a rename.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from ..assets import builtin_dir
from ..atomic import atomic_copy, atomic_output, atomic_write_text
from ..export import export_model
from .augment import NO_AUGMENTATION
from .data import ClipSource, ComposeConfig, compose_utterance, make_utterance
from .evaluate import digits_text, evaluate_real_speech
from ..verify.tail import write_tail_padding
from .fsdd import FSDD_ATTRIBUTION, load_fsdd
from .real_speech import measure_tail

DEMO_CLIPS = 6
SHIPPED_NAME = "stateport/assets/digits/model.onnx"  # how metrics.json names the shipped model (not this machine's path)
CONNECTED_DEMO = (4, 1, 1, 7)  # "four one one seven", the example
CONNECTED_DEMO_VOICE = ("flite", "rms")  # a recorded-speaker voice no recipe here trains on


def _write_wav(path: Path, wave: np.ndarray) -> None:
    with atomic_output(path) as target:
        sf.write(target.tmp, wave, 16000, subtype="PCM_16", format="WAV")
        target.commit()


def connected_demo_waves(speaker: str) -> dict:
    """"four one one seven" at a natural rate without pauses, trimmed, nothing appended:
    ``{"speaker": wave, "voice": wave}`` (16 kHz float32): the held-out speaker's FSDD test
    recordings (indices 0-4) butted together, and the held-out synthetic voice."""
    from .strings import Voice, speak

    clips = load_fsdd(speakers=[speaker], indices=range(5))
    chosen = [next(c for c in clips if c.digit == d and c.name.endswith(f"_{k}.wav"))
              for d, k in zip(CONNECTED_DEMO, (0, 1, 2, 0))]  # two different recordings of "one"
    butted = compose_utterance(chosen, np.random.default_rng(0), connected=True, flush=True,
                               config=ComposeConfig(connected_gap_ms_range=(0.0, 0.0),
                                                    connected_leading_ms_range=(0.0, 0.0))).waveform
    voice, _ = speak(Voice(*CONNECTED_DEMO_VOICE), digits_text([d + 1 for d in CONNECTED_DEMO]))
    return {"speaker": butted, "voice": voice}


def make_demo_clips(speaker: str, folder: Path, *, seed: int = 7) -> list[dict]:
    """Digit strings of a held-out speaker's recordings (FSDD test indices 0-4) with pauses, and the
    two connected "four one one seven" recordings; 16 kHz WAV, transcripts.json, ATTRIBUTION.md."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    source = [ClipSource(speaker, load_fsdd(speakers=[speaker], indices=range(5)))]
    entries = []
    for i in range(DEMO_CLIPS):
        wave, comp = make_utterance(rng, source, num_digits_range=(3, 7), augment=NO_AUGMENTATION,
                                    compose=ComposeConfig(trailing_silence_ms_range=(600, 800)))
        name = f"digits_{i}.wav"
        _write_wav(folder / name, wave)
        entries.append({"file": name, "text": digits_text(comp.token_ids), "speaker": speaker,
                        "kind": "composed with pauses"})
    text = digits_text([d + 1 for d in CONNECTED_DEMO])
    connected = connected_demo_waves(speaker)
    voice_name = f"{CONNECTED_DEMO_VOICE[0]}-{CONNECTED_DEMO_VOICE[1]}"
    for key, name, who in (("speaker", f"connected_{speaker}.wav", speaker),
                           ("voice", f"connected_{voice_name}.wav", voice_name)):
        _write_wav(folder / name, connected[key])
        entries.append({"file": name, "text": text, "speaker": who,
                        "kind": "natural rate, no pauses, trimmed (needs the end-of-input flush)"})
    atomic_write_text(folder / "transcripts.json", json.dumps(entries, indent=2))
    attribution = (
        "The clips digits_*.wav and connected_{s}.wav are composed from recordings of the Free Spoken Digit "
        "Dataset (speaker {s!r}, indices 0-4; connected_{s}.wav butts four of them together without a pause)."
        "\n\n{a}\n\nThey are distributed under the same license, Creative Commons Attribution-ShareAlike 4.0 "
        "International (CC BY-SA 4.0).\n\nconnected_{v}.wav was synthesised with flite 2.2's {n} voice "
        "(Carnegie Mellon University; flite and its voices are free software under CMU's BSD-style licence).\n"
    ).format(s=speaker, a=FSDD_ATTRIBUTION, v=voice_name, n=CONNECTED_DEMO_VOICE[1])
    atomic_write_text(folder / "ATTRIBUTION.md", attribution)
    return entries


def ship(checkpoint: str, *, strings: int = 100, spoken: int = 50, sentences: int = 60, peer: bool = True) -> dict:
    dest = builtin_dir()
    dest.mkdir(parents=True, exist_ok=True)
    data = torch.load(checkpoint, map_location="cpu", weights_only=True)
    recipe = data.get("recipe", {})
    test_speaker = list(recipe["speakers"]["test"])[0]
    if Path(checkpoint).resolve() != (dest / "checkpoint.pt").resolve():
        atomic_copy(checkpoint, dest / "checkpoint.pt")
    result = export_model(dest / "model.onnx", arch=data["architecture"], checkpoint=str(dest / "checkpoint.pt"))
    # The end-of-input tail, measured on recordings that end on their last word (dev voices and the
    # other FSDD speakers, never the test speaker) and written into the card: every client's input_finished() flushes it.
    tail = measure_tail(str(dest / "model.onnx"), test_speaker=test_speaker)
    write_tail_padding(dest / "model.onnx", tail)
    evaluation = evaluate_real_speech([str(dest / "model.onnx")], peer=peer, speaker=test_speaker, strings=strings,
                                      spoken=spoken, sentences=sentences, names=[SHIPPED_NAME])
    ours, *others = evaluation["results"]
    metrics = {"held_out_speaker": test_speaker, "dev_speakers": list(recipe["speakers"]["dev"]),
               "train_speakers": list(recipe["speakers"]["train"]),
               "evaluation": evaluation["results"][ours],
               "end_of_input_tail": tail.to_dict(),
               "peers": {name: evaluation["results"][name] for name in others},
               "table": evaluation["table"],
               "parity_max_abs_diff": result.report.max_abs_diff,
               "train_config": recipe.get("train_config"), "arch_config": data.get("config"),
               "best_step": recipe.get("best_step"), "best_dev_wer": recipe.get("best_dev_wer"),
               "command": f"python -m stateport.train.ship {checkpoint}",
               "evaluate_command": f"python -m stateport.train.evaluate {SHIPPED_NAME}"}
    atomic_write_text(dest / "metrics.json", json.dumps(metrics, indent=2))
    make_demo_clips(test_speaker, dest / "clips")
    return metrics


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--strings", type=int, default=100, help="connected strings per mode of the held-out speaker")
    ap.add_argument("--spoken", type=int, default=50, help="spoken strings per held-out engine and rate")
    ap.add_argument("--sentences", type=int, default=60, help="sentences without digits")
    ap.add_argument("--no-peer", action="store_true", help="skip PocketSphinx")
    args = ap.parse_args(argv)
    metrics = ship(args.checkpoint, strings=args.strings, spoken=args.spoken, sentences=args.sentences,
                   peer=not args.no_peer)
    print(metrics["table"])


if __name__ == "__main__":
    main()
