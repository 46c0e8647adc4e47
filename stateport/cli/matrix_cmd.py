"""``stateport matrix``: every architecture x backend, streaming vs offline max |diff|, pass/fail or why not."""

from __future__ import annotations

from .args import positive_float


def add_parser(sub):
    from ..export.backends import backend_names  # the registry: no torch import

    p = sub.add_parser("matrix", help="export every architecture with every backend and prove parity "
                                      "(a table of max |diff|, pass/fail, or the converter's error)")
    p.add_argument("--size", default="tiny", help="architecture size to export (default tiny)")
    p.add_argument("--seconds", type=positive_float, default=5.0,
                   help="input length of each parity proof (default 5 s)")
    p.add_argument("--arch", action="append", dest="archs", metavar="NAME", help="limit to this architecture "
                   "(repeatable)")
    p.add_argument("--backend", action="append", dest="backends", metavar="NAME",
                   choices=backend_names(),
                   help="limit to this backend (repeatable)")
    p.add_argument("--in-process", action="store_true",
                   help="run every cell in this process (faster start; a native crash in one converter then "
                        "ends the whole run instead of one cell)")
    p.add_argument("--markdown", action="store_true", help="print the matrix as a markdown table (the default "
                   "output; kept for scripts that ask for it explicitly)")
    return p


def run(args):
    from .. import progress
    from ..export.matrix import markdown_matrix, parity_matrix

    def cell_done(cell):
        # stderr (progress): stdout stays one document (the table, or the JSON with --json)
        progress.step(f"{cell.arch:<12} {cell.backend:<11} {cell.text()[:100]}  ({cell.seconds_taken:g} s)")

    with progress.task(f"export every architecture ({args.size}) with every backend, {args.seconds:g} s parity proofs"):
        cells = parity_matrix(size=args.size, seconds=args.seconds, archs=args.archs, backends=args.backends,
                              progress=cell_done, isolate=not args.in_process)
    if not args.json:
        print(markdown_matrix(cells))
    failed = any(c.status in ("fail", "error") for c in cells)
    return (1 if failed else 0), {"size": args.size, "seconds": args.seconds, "cells": [c.to_dict() for c in cells]}
