"""The end-of-input flush of the built-in model: measure its tail padding, and what it does to trimmed recordings.

    python benchmarks/end_of_input.py [--model FILE] [--speaker george] [--write] [--json]

FSDD recordings are trimmed: each ends at the last sample of its word, as a file a user cuts
or a push-to-talk clip does. On every recording of ``--speaker`` (500 for george, the built-in
model's held-out speaker), nothing appended, through the runtime (``Recognizer.transcribe``):

1. the tail padding is measured (:func:`stateport.verify.tail.measure_tail_padding`) on indices
   25-49 of each digit (the shipped demo clips are built from indices 0-4, so the tail is
   never fitted to the clips its test uses);
2. digit WER with no flush (``tail_padding_ms=0``, what the runtime did before), with the
   receptive field only (a card without the field), with the measured flush, and with one
   second of silence appended instead (the padded reference), over all recordings and over
   indices 0-24 (not used by the measurement).

``--write`` stores the measured value in the model's card (graph untouched; the certificate
stays valid) — how ``stateport/assets/digits/model.onnx`` got its ``tail_padding_ms``.
Needs the FSDD recordings (../shared/data/fsdd or STATEPORT_FSDD_DIR). Accuracy, not speed:
the numbers do not depend on the machine.
"""

from __future__ import annotations

import argparse
import glob
import json
import os

import numpy as np

FSDD = os.environ.get("STATEPORT_FSDD_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data",
                                                          "fsdd", "recordings"))


def recordings(speaker: str) -> list:
    """(digit, index, samples, rate) of every FSDD recording of ``speaker``, as recorded (trimmed)."""
    import soundfile as sf

    out = []
    for path in sorted(glob.glob(os.path.join(FSDD, f"?_{speaker}_*.wav"))):
        digit, _, index = os.path.basename(path)[:-4].split("_")
        samples, rate = sf.read(path, dtype="float32")
        out.append((int(digit), int(index), samples, rate))
    if not out:
        raise SystemExit(f"no FSDD recordings of {speaker!r} under {FSDD} (set STATEPORT_FSDD_DIR)")
    return out


def wer(rec, items, append_s: float = 0.0) -> dict:
    from stateport.train.metrics import edit_distance

    errors = words = empty = 0
    for digit, _, samples, rate in items:
        if append_s:
            samples = np.concatenate([samples, np.zeros(int(append_s * rate), np.float32)])
        hyp = rec.transcribe(samples, rate).tokens
        errors += edit_distance([digit + 1], list(hyp))
        words += 1
        empty += not hyp
    return {"wer": errors / words, "errors": errors, "recordings": words, "empty": empty}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="a stateport .onnx file (default: the built-in model)")
    ap.add_argument("--speaker", default="george")
    ap.add_argument("--write", action="store_true", help="store the measured tail padding in the model's card")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from stateport.assets import default_model_path
    from stateport.runtime.recognizer import Recognizer
    from stateport.verify.tail import measure_tail_padding, write_tail_padding

    path = args.model or str(default_model_path())
    items = recordings(args.speaker)
    fit = [(s, r) for d, i, s, r in items if i >= 25]
    base = Recognizer.from_file(path)
    m = measure_tail_padding(base, fit, source=f"FSDD {args.speaker} 25-49")
    held = [it for it in items if it[1] < 25]
    measured = Recognizer(base.session, tail_padding_ms=m.tail_padding_ms)
    variants = {
        "no flush (tail 0 ms)": (Recognizer(base.session, tail_padding_ms=0), 0.0),
        f"receptive field only ({m.receptive_field_ms:g} ms)": (Recognizer(base.session,
                                                                           tail_padding_ms=m.receptive_field_ms), 0.0),
        f"measured flush ({m.tail_padding_ms:g} ms)": (measured, 0.0),
        "1 s of silence appended, measured flush": (measured, 1.0),
    }
    rows = {name: {"all": wer(rec, items, extra), "indices 0-24": wer(rec, held, extra)}
            for name, (rec, extra) in variants.items()}
    doc = {"model": path, "speaker": args.speaker, "measurement": m.to_dict() | {"delays_ms": None},
           "wer": rows, "written": False}
    if args.write:
        write_tail_padding(path, m)
        doc["written"] = True
    if args.json:
        print(json.dumps(doc, indent=2))
        return
    print(f"{path}: tail padding {m.tail_padding_ms:g} ms — {m.basis}")
    print(f"{'trimmed FSDD ' + args.speaker + ', nothing appended':<46} {'WER all':>9} {'empty':>6} "
          f"{'WER 0-24':>9} {'empty':>6}")
    for name, r in rows.items():
        a, h = r["all"], r["indices 0-24"]
        print(f"{name:<46} {100 * a['wer']:8.2f}% {a['empty']:>6} {100 * h['wer']:8.2f}% {h['empty']:>6}"
              f"   ({a['recordings']} / {h['recordings']} recordings)")
    if args.write:
        print(f"written into the card of {path} (graph untouched)")


if __name__ == "__main__":
    main()
