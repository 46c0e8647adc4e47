"""``stateport`` command line: thin verbs over the library functions, same argument names.

Every verb takes ``--json`` and then prints exactly one JSON document on stdout. User errors
print ``error[CODE]: message`` (or ``{"error": ...}`` with --json) and exit non-zero, with no
stack trace; parity failures exit 1 with the report. A bad command line is one of them
(``error[INVALID_ARGUMENT]``, exit 2). Progress of long work goes to stderr (``--quiet``: none).
A closed stdout (``stateport inspect FILE | head``) ends the command quietly with the status of
SIGPIPE, as other Unix tools do.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys

from .. import progress
from ..errors import InvalidInputError, StateportError
from ..extras import missing_dependency
from . import demo_cmd, export_cmd, inspect_cmd, list_cmd, stream_cmd, train_cmd, verify_cmd
from . import drift_cmd, quantize_cmd
from . import check_cmd, matrix_cmd

VERBS = [demo_cmd, export_cmd, inspect_cmd, verify_cmd, list_cmd, train_cmd, stream_cmd]
VERBS += [quantize_cmd, drift_cmd]
VERBS += [check_cmd, matrix_cmd]


SIGPIPE_EXIT_STATUS = 128 + 13  # what a shell reports for a process ended by SIGPIPE


class UsageError(InvalidInputError):
    """A command line argparse refuses (unknown option, missing argument, a number out of range)."""

    code = "INVALID_ARGUMENT"


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are stateport errors: one ``error[INVALID_ARGUMENT]`` line, exit 2."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = _Parser(prog="stateport", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"stateport {__version__}")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb in VERBS:
        p = verb.add_parser(sub)
        p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
        p.add_argument("--quiet", action="store_true", help="no progress messages on stderr")
        p.set_defaults(run=verb.run)
    return parser


def emit_json(doc: dict) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")


def _report(e: StateportError, as_json: bool) -> int:
    if as_json:
        emit_json({"error": e.to_dict()})
    else:
        report = getattr(e, "report", None)
        if report is not None:
            print(report.to_text())
        print(f"error[{e.code}]: {e.message}", file=sys.stderr)
    return e.exit_code


def main(argv: list | None = None) -> int:
    if argv is None and hasattr(signal, "SIGPIPE"):
        # Run as a program: a reader that closes the pipe early (``| head``) ends us the way it
        # ends cat or grep, silently, instead of a BrokenPipeError traceback at the next print.
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    tokens = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser().parse_args(tokens)
    except StateportError as e:
        return _report(e, "--json" in tokens)
    progress.enable(steps=not args.quiet)
    try:
        try:
            code, doc = args.run(args)
        except ModuleNotFoundError as e:  # an optional extra that is not installed: say which
            raise missing_dependency(e, f"stateport {args.verb}") from None
        if args.json:
            emit_json(doc)
        sys.stdout.flush()
    except StateportError as e:
        return _report(e, args.json)
    except BrokenPipeError:
        # In-process callers keep Python's SIGPIPE handling: same outcome, no traceback, and no
        # second error when the interpreter flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):  # stdout is not a real file (a test's capture)
            pass
        return SIGPIPE_EXIT_STATUS
    finally:
        progress.disable()
    return code


if __name__ == "__main__":
    sys.exit(main())
