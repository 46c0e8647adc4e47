"""Error counts over token sequences (torch-free): edit distance, WER and string accuracy.

jiwer computes WER over text; here we need it over token-id sequences inside training loops
as well, so the small Levenshtein below is used for both and cross-checked against jiwer in
the tests.
"""

from __future__ import annotations

from typing import Sequence


def edit_distance(ref: Sequence, hyp: Sequence) -> int:
    """Levenshtein distance (substitutions + deletions + insertions) between two sequences."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def token_error_counts(ref: Sequence, hyp: Sequence) -> tuple[int, int]:
    """(errors, reference length) for one utterance."""
    return edit_distance(ref, hyp), len(ref)


def word_error_rate(refs: Sequence[Sequence], hyps: Sequence[Sequence]) -> float:
    errors = sum(edit_distance(r, h) for r, h in zip(refs, hyps))
    return errors / max(sum(len(r) for r in refs), 1)


def string_accuracy(refs: Sequence[Sequence], hyps: Sequence[Sequence]) -> float:
    """Fraction of utterances recognised exactly."""
    return sum(list(r) == list(h) for r, h in zip(refs, hyps)) / max(len(refs), 1)
