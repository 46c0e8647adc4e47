"""``stateport`` command line: thin verbs over the library functions, same argument names.

Every verb takes ``--json`` and then prints exactly one JSON document on stdout. User errors
print ``error[CODE]: message`` (or ``{"error": ...}`` with --json) and exit non-zero, with no
stack trace; parity failures exit 1 with the report.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import StateportError
from ..extras import missing_dependency
from . import demo_cmd, export_cmd, inspect_cmd, list_cmd, stream_cmd, train_cmd, verify_cmd
from . import drift_cmd, quantize_cmd
from . import check_cmd, matrix_cmd

VERBS = [demo_cmd, export_cmd, inspect_cmd, verify_cmd, list_cmd, train_cmd, stream_cmd]
VERBS += [quantize_cmd, drift_cmd]
VERBS += [check_cmd, matrix_cmd]


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(prog="stateport", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"stateport {__version__}")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb in VERBS:
        p = verb.add_parser(sub)
        p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
        p.set_defaults(run=verb.run)
    return parser


def emit_json(doc: dict) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")


def main(argv: list | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        try:
            code, doc = args.run(args)
        except ModuleNotFoundError as e:  # an optional extra that is not installed: say which
            raise missing_dependency(e, f"stateport {args.verb}") from None
    except StateportError as e:
        if args.json:
            emit_json({"error": e.to_dict()})
        else:
            report = getattr(e, "report", None)
            if report is not None:
                print(report.to_text())
            print(f"error[{e.code}]: {e.message}", file=sys.stderr)
        return e.exit_code
    if args.json:
        emit_json(doc)
    return code


if __name__ == "__main__":
    sys.exit(main())
