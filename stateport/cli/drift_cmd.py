"""``stateport drift``: a long-session soak of fp32 vs reduced-precision models, with and without reset."""

from __future__ import annotations

from .args import positive_float

def add_parser(sub):
    p = sub.add_parser("drift", help="stream >= 30 min of speech and silence through fp32 and quantized models "
                                     "side by side: state divergence and WER over time, with/without reset")
    p.add_argument("fp32", help="the fp32 stateport .onnx (the reference)")
    p.add_argument("models", nargs="+", help="reduced-precision models: PATH or NAME=PATH")
    p.add_argument("-o", "--out", required=True, help="output folder (drift.json, drift.png; created if missing)")
    p.add_argument("--minutes", type=positive_float, default=30.0, help="length of the soak")
    p.add_argument("--divergence-window-s", type=positive_float, default=10.0)
    p.add_argument("--wer-window-s", type=positive_float, default=300.0)
    p.add_argument("--vad", default="energy", choices=["energy", "silero"], help="end-of-speech detector for reset")
    p.add_argument("--checkpoint", help="float checkpoint (its recipe names the held-out speaker)")
    p.add_argument("--speaker", action="append", help="FSDD speaker(s) to use (default: the held-out one)")
    return p


def _name_of(path: str) -> str:
    from ..runtime.model_file import read_card

    q = read_card(path).provenance.quantization or {}
    return q.get("recipe") or read_card(path).provenance.precision


def run(args):
    from .. import progress
    from ..atomic import check_output_path
    from ..quantize.drift import DriftConfig, drift_soak
    from ..train.quantize_data import fsdd_soak_audio, held_out_speaker

    check_output_path(args.out, directory=True, replaceable=lambda _: True)  # before the soak audio is composed
    models = {"fp32": args.fp32}
    for spec in args.models:
        name, _, path = spec.rpartition("=")
        models[name or _name_of(path)] = path
    cfg = DriftConfig(minutes=args.minutes, divergence_window_s=args.divergence_window_s,
                      wer_window_s=args.wer_window_s, vad=args.vad)
    audio = fsdd_soak_audio(cfg, tuple(args.speaker or ()) or (held_out_speaker(args.checkpoint),))
    minutes = len(audio.waveform) / audio.sample_rate_hz / 60
    with progress.task(f"drift soak: {minutes:.1f} min of speech through {len(models)} models, "
                       "without and with reset"):
        doc = drift_soak(models, args.out, audio=audio, cfg=cfg, log=progress.step)
    if not args.json:
        print(f"{doc['audio_seconds'] / 60:.1f} min, {doc['resets']} resets (longest interval "
              f"{doc['max_reset_interval_s']} s); peak state divergence from fp32:")
        for name, ports in doc["reset_bounds_divergence"].items():
            for port, v in ports.items():
                print(f"  {name:<16} {port:<18} no reset {v['peak_no_reset']:.3e}   reset {v['peak_reset']:.3e}")
        print(f"wrote {doc['plot'] or 'drift.json (no matplotlib: no plot)'}")
    return 0, doc
