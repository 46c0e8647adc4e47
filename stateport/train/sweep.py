"""How a held-out figure varies along a training run: every kept checkpoint, one table.

``stateport train --keep-eval-checkpoints`` keeps each evaluated checkpoint in
``OUT.evals/step<N>.pt``. A held-out speaker's WER swings by several points between
neighbouring checkpoints (README, "How much of a figure is the checkpoint"), so a recipe is
judged by the spread over its late checkpoints, not by the one its dev set chose:

    python -m stateport.train.sweep digits.evals --from-step 4500

Why torch offline rather than the runtime: :mod:`stateport.train.evaluate` exports each
checkpoint, runs its parity proof and streams every utterance in 20 ms reads — right for the
figure a model ships with, but minutes per checkpoint on two cores. Here the offline forward
decodes a whole batch at once, a few seconds per checkpoint. The two read the same
utterances (:func:`speaker_sets`) and agree because the export is proven equal to the
offline forward; a test compares them on the shipped model.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidInputError
from .evaluate import accuracy_row, held_out_speaker, speaker_sets

_STEP_FILE = re.compile(r"^step(\d+)(\.raw)?\.pt$")


@dataclass(frozen=True)
class KeptCheckpoint:
    step: int
    path: str
    raw: bool  # the raw weights under a weight average (``step<N>.raw.pt``)


def kept_checkpoints(folder: str, *, from_step: int = 0, raw: bool = False) -> list[KeptCheckpoint]:
    """The ``step<N>.pt`` files in ``folder`` (``step<N>.raw.pt`` instead with ``raw``), by step."""
    if not os.path.isdir(folder):
        raise InvalidInputError(f"{folder!r} is not a folder; expected the OUT.evals/ folder that "
                                "'stateport train --keep-eval-checkpoints' writes")
    found = []
    for name in os.listdir(folder):
        m = _STEP_FILE.match(name)
        if m and bool(m.group(2)) == raw and int(m.group(1)) >= from_step:
            found.append(KeptCheckpoint(int(m.group(1)), os.path.join(folder, name), raw))
    if not found:
        kind = "step<N>.raw.pt" if raw else "step<N>.pt"
        raise InvalidInputError(f"no {kind} checkpoint from step {from_step} on in {folder!r}")
    return sorted(found, key=lambda c: c.step)


def offline_rows(checkpoint: str, sets: list, *, batch_size: int = 50) -> list[dict]:
    """Digit WER and string accuracy of greedy CTC on the offline forward, per set."""
    import torch

    from ..zoo import get_architecture
    from .trainer import _Featurizer, decode_offline

    data = torch.load(checkpoint, map_location="cpu", weights_only=True)
    model = get_architecture(data["architecture"]).build(config=data["config"])
    model.load_state_dict(data["state_dict"])
    model.eval()
    featurize = _Featurizer.of(model)
    rows = []
    for s in sets:
        refs, hyps = [], []
        for a in range(0, len(s.items), batch_size):
            batch = s.items[a:a + batch_size]
            lengths = np.array([len(w) for w, _ in batch])
            waves = np.zeros((len(batch), lengths.max()), np.float32)
            for i, (w, _) in enumerate(batch):
                waves[i, :len(w)] = w
            hyps += decode_offline(model, featurize, waves, lengths)
            refs += [list(ref) for _, ref in batch]
        rows.append(accuracy_row(s.name, refs, hyps))
    return rows


def sweep(checkpoints: list[KeptCheckpoint], speaker: str, *, strings: int = 100, indices=None) -> dict:
    """Every checkpoint's rows on one FSDD speaker, and per set the min, max and mean WER."""
    sets = speaker_sets(speaker, strings=strings, indices=indices)
    per_checkpoint = [{"step": c.step, "path": c.path, "rows": offline_rows(c.path, sets)} for c in checkpoints]
    summary = []
    for k, s in enumerate(sets):
        wers = np.array([pc["rows"][k]["wer"] for pc in per_checkpoint])
        summary.append({"set": s.name, "checkpoints": len(wers), "wer_min": float(wers.min()),
                        "wer_max": float(wers.max()), "wer_mean": float(wers.mean())})
    return {"speaker": speaker, "checkpoints": per_checkpoint, "summary": summary}


def main(argv=None) -> None:
    import argparse
    import json

    import torch

    ap = argparse.ArgumentParser(description="Held-out WER of every checkpoint a training run kept "
                                             "(--keep-eval-checkpoints), decoded offline with torch.")
    ap.add_argument("folder", help="the OUT.evals/ folder of a training run")
    ap.add_argument("--from-step", type=int, default=0, help="only checkpoints from this step on")
    ap.add_argument("--raw", action="store_true", help="the raw weights under a weight average (step<N>.raw.pt)")
    ap.add_argument("--speaker", default=None, help="FSDD speaker (default: the run's held-out speaker)")
    ap.add_argument("--strings", type=int, default=100, help="composed digit strings")
    ap.add_argument("--json", default=None, metavar="OUT", help="also write the result as JSON")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    checkpoints = kept_checkpoints(args.folder, from_step=args.from_step, raw=args.raw)
    speaker = args.speaker
    if speaker is None:
        speaker = held_out_speaker(torch.load(checkpoints[0].path, map_location="cpu", weights_only=True)
                                   .get("recipe", {}))
    result = sweep(checkpoints, speaker, strings=args.strings)
    names = [r["set"] for r in result["summary"]]
    print(f"{'step':>6}  " + "  ".join(f"{n:>24}" for n in names) + "   (digit WER %, torch offline)")
    for pc in result["checkpoints"]:
        print(f"{pc['step']:>6}  " + "  ".join(f"{100 * r['wer']:>24.1f}" for r in pc["rows"]))
    for s in result["summary"]:
        print(f"{s['set']}: {100 * s['wer_min']:.1f}-{100 * s['wer_max']:.1f} % "
              f"(mean {100 * s['wer_mean']:.1f} % over {s['checkpoints']} checkpoints)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


__all__ = ["KeptCheckpoint", "kept_checkpoints", "offline_rows", "sweep"]


if __name__ == "__main__":
    main()
