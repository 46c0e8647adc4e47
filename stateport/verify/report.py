"""The parity report: every comparison's figures, collected before anything raises."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

import numpy as np

from ..errors import ParityError


def scaled_diff(got: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """|got - ref| / max(1, |ref|): absolute below magnitude 1, relative above.

    Why: a trained LSTM's cell state grows to magnitudes of tens, where float32 rounding alone
    differs by more than 1e-4 absolute (measured: 1.3e-4 on c_out of the built-in model while
    its logits agreed to 4e-7). Values of magnitude <= 1 (most outputs) keep the absolute rule.
    """
    ref64 = ref.astype(np.float64)
    return np.abs(got.astype(np.float64) - ref64) / np.maximum(1.0, np.abs(ref64))


@dataclass
class OutputDiff:
    """How one output (or state) of the candidate differs from the reference.

    Pass rule: ``|diff| <= tolerance * max(1, |reference|)`` everywhere (see :func:`scaled_diff`);
    ``max_abs_diff`` is reported as measured.
    """

    port: str
    max_abs_diff: float | None = None
    first_divergent_step: int | None = None
    first_divergent_frame: int | None = None
    argmax_agreement: float | None = None
    problem: str | None = None  # e.g. a shape mismatch: nothing numeric to compare
    max_scaled_diff: float | None = None

    def passed(self, tolerance: float) -> bool:
        measured = self.max_scaled_diff if self.max_scaled_diff is not None else self.max_abs_diff
        return self.problem is None and measured is not None and measured <= tolerance


@dataclass
class CheckResult:
    """One comparison, e.g. ``onnx stream [ragged] vs torch offline``."""

    name: str
    detail: str
    tolerance: float
    diffs: list = field(default_factory=list)
    error: str | None = None  # the candidate failed to run at all
    compact: bool = False  # print one summary row when it passes (e.g. the signature check)

    @property
    def passed(self) -> bool:
        return self.error is None and bool(self.diffs) and all(d.passed(self.tolerance) for d in self.diffs)

    @property
    def max_abs_diff(self) -> float | None:
        vals = [d.max_abs_diff for d in self.diffs if d.max_abs_diff is not None]
        return max(vals) if vals else None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["passed"] = self.passed
        return d


@dataclass
class ParityReport:
    """All checks of one parity proof."""

    backend: str
    tolerance: float
    seconds: float
    frames: int
    checks: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    optimization: str | None = None
    reference: str = "torch"

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def failures(self) -> list:
        return [c for c in self.checks if not c.passed]

    @property
    def max_abs_diff(self) -> float | None:
        vals = [c.max_abs_diff for c in self.checks if c.max_abs_diff is not None]
        return max(vals) if vals else None

    def max_abs_diff_of(self, ports) -> float | None:
        """Max |diff| over the given ports only (e.g. the outputs, leaving out large cell states)."""
        vals = [d.max_abs_diff for c in self.checks for d in c.diffs
                if d.port in set(ports) and d.max_abs_diff is not None]
        return max(vals) if vals else None

    @property
    def max_scaled_diff(self) -> float | None:
        """Max of |diff| / max(1, |reference|): the figure the pass rule compares with the tolerance."""
        vals = [d.max_scaled_diff for c in self.checks for d in c.diffs if d.max_scaled_diff is not None]
        return max(vals) if vals else None

    def to_dict(self) -> dict:
        return {"backend": self.backend, "passed": self.passed, "tolerance": self.tolerance,
                "seconds": self.seconds, "frames": self.frames, "max_abs_diff": self.max_abs_diff,
                "optimization": self.optimization, "reference": self.reference, "notes": list(self.notes),
                "checks": [c.to_dict() for c in self.checks]}

    def certificate(self) -> dict:
        """The compact form written into the card."""
        return {"passed": self.passed, "backend": self.backend, "tolerance": self.tolerance,
                "seconds": self.seconds, "frames": self.frames, "max_abs_diff": self.max_abs_diff,
                "max_scaled_diff": self.max_scaled_diff, "ort_graph_optimization": self.optimization,
                "compared": [{"check": c.name, "detail": c.detail, "max_abs_diff": c.max_abs_diff,
                              "passed": c.passed} for c in self.checks],
                "notes": list(self.notes)}

    def to_text(self) -> str:
        """A readable table: one row per check and output."""
        lines = [f"parity: {self.backend} vs {self.reference} over {self.seconds:g} s ({self.frames} frames), "
                 f"tolerance {self.tolerance:g} -> {'PASS' if self.passed else 'FAIL'}"]
        head = f"  {'check':<48} {'port':<18} {'max|diff|':>10} {'1st bad step':>12} {'argmax agr':>10}  ok"
        lines.append(head)
        for c in self.checks:
            if c.error:
                lines.append(f"  {c.name:<48} {'-':<18} {'ERROR':>10} {'':>12} {'':>10}  no")
                lines.append(f"      {c.error}")
                continue
            if c.compact and c.passed:
                lines.append(f"  {c.name:<48} {f'all {len(c.diffs)} ports':<18} {'':>10} {'':>12} {'':>10}  yes")
                continue
            for d in c.diffs:
                mad = "-" if d.max_abs_diff is None else f"{d.max_abs_diff:.2e}"
                step = "" if d.first_divergent_step is None else f"{d.first_divergent_step} (f{d.first_divergent_frame})"
                agr = "" if d.argmax_agreement is None else f"{100 * d.argmax_agreement:.2f}%"
                ok = "yes" if d.passed(c.tolerance) else "no"
                lines.append(f"  {c.name:<48} {d.port:<18} {mad:>10} {step:>12} {agr:>10}  {ok}")
                if d.problem:
                    lines.append(f"      {d.problem}")
        for n in self.notes:
            lines.append(f"  note: {n}")
        return "\n".join(lines)


def merge_reports(reports: dict) -> ParityReport:
    """One report over several proofs (the graphs of a multi-graph model): ``{label: report}``;
    each check and note is prefixed with its label; seconds is the shortest proof, frames the sum."""
    import dataclasses

    first = next(iter(reports.values()))
    merged = ParityReport(backend=first.backend, tolerance=max(r.tolerance for r in reports.values()),
                          seconds=min(r.seconds for r in reports.values()),
                          frames=sum(r.frames for r in reports.values()), optimization=first.optimization,
                          reference=first.reference)
    for label, r in reports.items():
        merged.checks.extend(dataclasses.replace(c, name=f"{label}: {c.name}") for c in r.checks)
        merged.notes.extend(f"{label}: {n}" for n in r.notes)
    return merged


def unproven_certificate(reason: str) -> dict:
    """The certificate slot of a file whose proof did not run (``passed`` is None, never True)."""
    return {"passed": None, "skipped": True, "reason": reason}


def parity_error(path: str, reports, *, evidence: str | None = None) -> ParityError:
    """The one "parity failed for ..." error: which file, which proofs and checks failed, where the
    failed file was kept. ``reports``: one :class:`ParityReport`, or ``{label: report}`` (a graph
    per label, or a quantized artifact's several proofs); the error carries the first failed one."""
    if isinstance(reports, ParityReport):
        reports = {"": reports}
    failed = {label: r for label, r in reports.items() if not r.passed}
    parts = []
    for label, r in failed.items():
        names = ", ".join(c.name for c in r.failures) or "no checks ran"
        parts.append(f"{label + ': ' if label else ''}{len(r.failures)} of {len(r.checks)} checks ({names})")
    where = (f"; the file that failed is kept as {evidence}, nothing was written at {os.fspath(path)}"
             if evidence else "")
    first = next(iter(failed.values()), next(iter(reports.values()), None))
    return ParityError(f"parity failed for {os.path.basename(os.fspath(path).rstrip('/'))}: {'; '.join(parts)}"
                       f"{where}", first, evidence=evidence)


def diff_output(port: str, got: np.ndarray, ref: np.ndarray, *, tolerance: float, time_axis: int | None,
                step_bounds: list | None, argmax: bool) -> OutputDiff:
    """Compare one output; ``step_bounds`` are the (start, end) frame ranges each step produced."""
    if got.shape != ref.shape:
        return OutputDiff(port, problem=f"shape {tuple(got.shape)} differs from the reference {tuple(ref.shape)}")
    if not np.all(np.isfinite(got)):
        return OutputDiff(port, problem="the candidate produced NaN or Inf")
    diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
    scaled = scaled_diff(got, ref)
    result = OutputDiff(port, max_abs_diff=float(diff.max()) if diff.size else 0.0,
                        max_scaled_diff=float(scaled.max()) if scaled.size else 0.0)
    if time_axis is not None and diff.size:
        per_frame = scaled.max(axis=tuple(a for a in range(diff.ndim) if a != time_axis))
        bad = np.nonzero(per_frame > tolerance)[0]
        if bad.size:
            result.first_divergent_frame = int(bad[0])
            if step_bounds:
                result.first_divergent_step = next(i for i, (a, b) in enumerate(step_bounds) if a <= bad[0] < b)
    if argmax and got.ndim >= 2 and got.shape[-1] > 1:
        result.argmax_agreement = float(np.mean(got.argmax(-1) == ref.argmax(-1)))
    return result
