"""``stateport demo``: the whole job on the built-in model, in well under a minute."""

from __future__ import annotations

from .args import positive_float

def add_parser(sub):
    p = sub.add_parser("demo", help="export, verify, quantize and stream the built-in digit recogniser")
    p.add_argument("-o", "--out-dir", default="stateport-demo", help="where artifacts and report.json go")
    p.add_argument("--no-quantize", action="store_true", help="skip the int8 artifact")
    p.add_argument("--seconds", type=positive_float, default=60.0, help="input length of the parity proof")
    return p


def run(args):
    from ..demo import run_demo

    quiet = args.json
    report = run_demo(args.out_dir, quantize=not args.no_quantize, seconds=args.seconds, live=not quiet,
                      log=(lambda *a, **k: None) if quiet else print)
    return 0, report
