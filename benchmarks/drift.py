"""Long-session drift soak: fp32 vs reduced-precision models over >= 30 minutes, with and without reset.

    python benchmarks/drift.py --table-dir runs/quant_table --checkpoint ckpt.pt -o runs/drift [--minutes 30]

Takes the models ``benchmarks/accuracy_table.py`` wrote (fp32.onnx and every recipe's .onnx in
--table-dir), or explicit ``--model NAME=PATH``. Same as ``stateport drift FP32 NAME=PATH ... -o OUT``.
Writes drift.json and drift.png. A benchmark: it asserts nothing.
"""

from __future__ import annotations

import argparse
import os


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--table-dir", help="folder holding fp32.onnx and the recipes' .onnx files")
    p.add_argument("--model", action="append", default=[], help="NAME=PATH (one NAME must be fp32)")
    p.add_argument("--checkpoint", help="float checkpoint (its recipe names the held-out speaker)")
    p.add_argument("-o", "--out", required=True)
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--vad", default="energy", choices=["energy", "silero"])
    args = p.parse_args()

    from stateport.quantize.drift import DriftConfig, drift_soak
    from stateport.train.quantize_data import fsdd_soak_audio, held_out_speaker

    models = dict(m.split("=", 1) for m in args.model)
    if args.table_dir:
        for f in sorted(os.listdir(args.table_dir)):
            if f.endswith(".onnx") and not f.endswith(".failed.onnx"):  # a failed proof's evidence is no model
                models.setdefault(f[:-5], os.path.join(args.table_dir, f))
    cfg = DriftConfig(minutes=args.minutes, vad=args.vad)
    doc = drift_soak(models, args.out, audio=fsdd_soak_audio(cfg, (held_out_speaker(args.checkpoint),)), cfg=cfg)
    for name, ports in doc["reset_bounds_divergence"].items():
        for port, v in ports.items():
            print(f"{name:<16} {port:<18} peak |diff| no reset {v['peak_no_reset']:.3e}  reset {v['peak_reset']:.3e}")
    print("max |state - fp32| by how long the state has run (no reset):")
    for name, v in doc["modes"]["no-reset"].items():
        for port, stats in v.get("divergence", {}).items():
            cells = "  ".join(f"<={row['age_s'][1]:g}s {row['max']:.2e}" for row in stats["by_state_age_s"])
            print(f"  {name:<16} {port:<18} {cells}")
    print(f"longest reset interval {doc['max_reset_interval_s']} s; wrote {doc['plot']}")


if __name__ == "__main__":
    main()
