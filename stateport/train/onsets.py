"""Does the trimming of a speaker's recordings cost accuracy? ``python -m stateport.train.onsets CKPT``.

FSDD's recordings were cut out of longer takes by an energy detector, and many start at
their first sample: the word's first tens of ms (a /w/, an /n/, a /θ/) may be gone. This
measures, for one checkpoint and one speaker, decoded offline like
:mod:`stateport.train.sweep`:

1. how much lead each recording has before its speech onset
   (:func:`~stateport.train.augment.speech_onset_sample`), and the single-digit WER of the
   recordings with none against the rest; of those without, it counts and scores the ones
   whose first 10 ms is within 2 dB of their loudest 10 ms: they start mid-word;
2. the WER of the recordings that do have a lead after cutting them at their onset plus
   0, 10, 20 and 40 ms, and where they first reach -10 dB and 0 dB of their loudest 10 ms —
   what losing the start of a word does to this model.

If (2) climbs steeply, the model needs onsets, and the recordings without a lead are likely
cut; ``stateport train --onset-cut P [--onset-cut-level-db LOW HIGH]`` trains on such cuts.
"""

from __future__ import annotations

import numpy as np

from .augment import ONSET_LEVEL_DB, cut_onset, speech_onset_sample, window_energy
from .clips import TRAIN_SAMPLE_RATE_HZ
from .evaluate import EvalSet, _pad
from .fsdd import load_fsdd
from .sweep import offline_rows

NO_LEAD_MS = 1.0  # a recording whose onset lies within its first 1 ms has no lead
CUT_PAST_ONSET_MS = (0.0, 10.0, 20.0, 40.0)
CUT_AT_LEVEL_DB = (-10.0, 0.0)  # cuts where the word reaches this level (0: at its loudest 10 ms)
AT_PEAK_DB = -2.0  # a recording whose first 10 ms is within 2 dB of its loudest starts mid-word


def lead_ms(waveform: np.ndarray) -> float:
    """Milliseconds before a clip's speech onset."""
    return 1000.0 * speech_onset_sample(waveform, TRAIN_SAMPLE_RATE_HZ) / TRAIN_SAMPLE_RATE_HZ


def _single_digits(name: str, clips, cut: tuple[float, float] | None = None) -> EvalSet:
    """Padded single digits; with ``cut`` = (ms, level dB), cut that far past where they reach that level."""
    return EvalSet(name, [(_pad(c.waveform if cut is None else cut_onset(c.waveform, cut[0], TRAIN_SAMPLE_RATE_HZ, cut[1])),
                           [c.digit + 1]) for c in clips])


def start_level_db(waveform: np.ndarray) -> float:
    """Energy of a clip's first 10 ms relative to its loudest 10 ms, in dB (0: it starts at its peak)."""
    energy = window_energy(waveform, TRAIN_SAMPLE_RATE_HZ)
    if energy.size == 0:  # shorter than 10 ms: no window to compare
        return 0.0
    return float(10.0 * np.log10(max(energy[0], 1e-20) / max(energy.max(), 1e-20)))


def onset_report(checkpoint: str, speaker: str, *, indices=None) -> dict:
    """Lead statistics and WERs (see the module doc); ``indices``: recordings to use (default all 50)."""
    clips = load_fsdd(speakers=[speaker], indices=indices)
    leads = np.array([lead_ms(c.waveform) for c in clips])
    without = [c for c, ms in zip(clips, leads) if ms < NO_LEAD_MS]
    with_lead = [c for c, ms in zip(clips, leads) if ms >= NO_LEAD_MS]
    at_peak = [c for c in without if start_level_db(c.waveform) >= AT_PEAK_DB]
    report = {"speaker": speaker, "recordings": len(clips), "lead_ms_median": float(np.median(leads)),
              "without_lead": len(without), "with_lead": len(with_lead), "starting_at_peak": len(at_peak)}
    sets = {}  # report key -> single-digit set; decoded with one model load
    if without:
        sets["wer_without_lead"] = _single_digits("no lead", without)
    if at_peak:
        sets["wer_starting_at_peak"] = _single_digits("at peak", at_peak)
    if with_lead:
        sets["wer_with_lead"] = _single_digits("lead", with_lead)
        for ms in CUT_PAST_ONSET_MS:
            sets[("wer_with_lead_cut_past_onset", f"{ms:g}")] = _single_digits(f"{ms:g} ms", with_lead, (ms, ONSET_LEVEL_DB))
        for db in CUT_AT_LEVEL_DB:
            sets[("wer_with_lead_cut_at_level_db", f"{db:g}")] = _single_digits(f"{db:g} dB", with_lead, (0.0, db))
    for key, row in zip(sets, offline_rows(checkpoint, list(sets.values()))):
        if isinstance(key, tuple):
            report.setdefault(key[0], {})[key[1]] = row["wer"]
        else:
            report[key] = row["wer"]
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
    if "wer_starting_at_peak" in r:
        print(f"    of which {r['starting_at_peak']} start within 2 dB of their loudest 10 ms: "
              f"{100 * r['wer_starting_at_peak']:.1f} %")
    if "wer_with_lead" in r:
        print(f"  single-digit WER with a lead:    {100 * r['wer_with_lead']:.1f} %")
        for ms, wer in r["wer_with_lead_cut_past_onset"].items():
            print(f"    the same, cut {ms} ms past the onset: {100 * wer:.1f} %")
        for db, wer in r["wer_with_lead_cut_at_level_db"].items():
            print(f"    the same, cut where they reach {db} dB of their loudest 10 ms: {100 * wer:.1f} %")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f, indent=2)


if __name__ == "__main__":
    main()
