"""argparse types for numeric options: a bad number is refused while the command line is parsed.

Each is a function ``str -> value`` that raises ``argparse.ArgumentTypeError`` with what was
expected; the CLI's parser turns that into ``error[INVALID_ARGUMENT]: ...`` and exit 2 before any
work starts (a ``--seconds 0`` proof over one frame, or a 20 s export ending in a refusal, never runs).
NaN and infinities are refused everywhere: no option of stateport means anything with them.
"""

from __future__ import annotations

import argparse
import math


def _number(text: str, kind: type) -> float | int:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") \
            from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _checked(name: str, kind: type, ok, expected: str):
    def parse(text: str):
        value = _number(text, kind)
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    parse.__name__ = parse.__qualname__ = name
    return parse


positive_float = _checked("positive_float", float, lambda v: v > 0, "a number > 0")
"""A finite number > 0 (seconds, minutes, milliseconds, rates)."""
nonneg_float = _checked("nonneg_float", float, lambda v: v >= 0, "a number >= 0")
"""A finite number >= 0 (tolerances, weights; 0 = off)."""
probability = _checked("probability", float, lambda v: 0 <= v <= 1, "a probability in [0, 1]")
"""A number in [0, 1] (dropout, the chance of an augmentation)."""
positive_int = _checked("positive_int", int, lambda v: v >= 1, "an integer >= 1")
"""An integer >= 1 (counts, frames, threads, steps)."""
nonneg_int = _checked("nonneg_int", int, lambda v: v >= 0, "an integer >= 0")
"""An integer >= 0 (seeds, worker processes; 0 = off)."""
