"""``stateport demo``: the whole job on the built-in model, in well under a minute."""

from __future__ import annotations

import os

from .args import positive_float


def add_parser(sub):
    p = sub.add_parser("demo", help="export, verify, quantize and stream the built-in digit recogniser")
    p.add_argument("-o", "--out-dir", default="stateport-demo", help="where artifacts and report.json go")
    p.add_argument("--no-quantize", action="store_true", help="skip the int8 artifact")
    p.add_argument("--seconds", type=positive_float, default=60.0, help="input length of the parity proof")
    return p


def run(args):
    from .. import progress
    from ..demo import render_table, run_demo

    # The demo's narrative is its output (stdout); with --json it becomes progress on stderr.
    report = run_demo(args.out_dir, quantize=not args.no_quantize, seconds=args.seconds, live=not args.json,
                      log=progress.step if args.json else print)
    if not args.json:
        print("\n" + render_table(report["artifacts"]))
        print(f"\nreport: {os.path.join(report['out_dir'], 'report.json')}  ({report['elapsed_s']:.1f} s)")
    return 0, report
