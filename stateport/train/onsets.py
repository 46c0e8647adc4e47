"""Does the trimming of a speaker's recordings cost accuracy? ``python -m stateport.train.onsets CKPT``.

FSDD's recordings were cut out of longer takes by an energy detector, and many start at
their first sample: the word's first tens of ms (a /w/, an /n/, a /θ/) may be gone. This
measures, for one checkpoint and one speaker, decoded offline like
:mod:`stateport.train.sweep`:

1. how much lead each recording has before its speech onset
   (:func:`~stateport.train.augment.speech_onset_sample`), and the single-digit WER of the
   recordings with none against the rest;
2. the WER of the recordings that do have a lead after cutting them at their onset plus
   0, 10, 20 and 40 ms — what losing the start of a word does to this model.

If (2) climbs steeply, the model needs onsets, and the recordings without a lead are likely
cut; ``stateport train --onset-cut P`` trains on such cuts.
"""

from __future__ import annotations

import numpy as np

from .augment import cut_onset, speech_onset_sample
from .clips import TRAIN_SAMPLE_RATE_HZ
from .evaluate import EvalSet, _pad
from .fsdd import load_fsdd
from .sweep import offline_rows

NO_LEAD_MS = 1.0  # a recording whose onset lies within its first 1 ms has no lead
CUT_PAST_ONSET_MS = (0.0, 10.0, 20.0, 40.0)


def lead_ms(waveform: np.ndarray) -> float:
    """Milliseconds before a clip's speech onset."""
    return 1000.0 * speech_onset_sample(waveform, TRAIN_SAMPLE_RATE_HZ) / TRAIN_SAMPLE_RATE_HZ


def _single_digits(name: str, clips, cut_ms: float | None = None) -> EvalSet:
    return EvalSet(name, [(_pad(c.waveform if cut_ms is None else cut_onset(c.waveform, cut_ms, TRAIN_SAMPLE_RATE_HZ)),
                           [c.digit + 1]) for c in clips])


def onset_report(checkpoint: str, speaker: str, *, indices=None) -> dict:
    """Lead statistics and WERs (see the module doc); ``indices``: recordings to use (default all 50)."""
    clips = load_fsdd(speakers=[speaker], indices=indices)
    leads = np.array([lead_ms(c.waveform) for c in clips])
    without = [c for c, ms in zip(clips, leads) if ms < NO_LEAD_MS]
    with_lead = [c for c, ms in zip(clips, leads) if ms >= NO_LEAD_MS]
    report = {"speaker": speaker, "recordings": len(clips), "lead_ms_median": float(np.median(leads)),
              "without_lead": len(without), "with_lead": len(with_lead)}
    sets = ([_single_digits("no lead", without)] if without else []) + (
        [_single_digits("lead", with_lead)] + [_single_digits(f"{ms:g}", with_lead, ms) for ms in CUT_PAST_ONSET_MS]
        if with_lead else [])
    wers = iter(row["wer"] for row in offline_rows(checkpoint, sets))  # one model load for every set
    if without:
        report["wer_without_lead"] = next(wers)
    if with_lead:
        report["wer_with_lead"] = next(wers)
        report["wer_with_lead_cut_past_onset"] = {f"{ms:g}": next(wers) for ms in CUT_PAST_ONSET_MS}
    return report


def main(argv=None) -> None:
    import argparse
    import json

    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--speaker", default="george", help="FSDD speaker")
    ap.add_argument("--json", default=None, metavar="OUT")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    r = onset_report(args.checkpoint, args.speaker)
    print(f"{r['speaker']}: {r['recordings']} recordings, median lead before the speech onset "
          f"{r['lead_ms_median']:.1f} ms; {r['without_lead']} without any lead")
    if "wer_without_lead" in r:
        print(f"  single-digit WER without a lead: {100 * r['wer_without_lead']:.1f} %")
    if "wer_with_lead" in r:
        print(f"  single-digit WER with a lead:    {100 * r['wer_with_lead']:.1f} %")
        for ms, wer in r["wer_with_lead_cut_past_onset"].items():
            print(f"    the same, cut {ms} ms past the onset: {100 * wer:.1f} %")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f, indent=2)


if __name__ == "__main__":
    main()
