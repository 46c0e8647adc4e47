"""The parity matrix: every registered architecture x every backend -> streaming vs offline max |diff|.

Each cell exports one architecture with one backend into a temporary directory and runs the
parity proof (backend streaming and offline vs the torch offline forward). A cell is one of:

- ``pass`` / ``fail`` with the max |diff| of the backend's streaming runs vs torch offline;
- ``spec-only``: converted and checked without running (Core ML on Linux);
- ``error`` with the converter's first error line (e.g. an op it does not support);
- ``skipped``: the backend's extra is not installed (the cell names the pip command);
- ``n/a`` with the reason (a transducer's predictor and joiner: the matrix covers its encoder graph,
  the graph that streams over audio; the other two step over tokens and frames).

One cell's failure never stops the others: every exception is caught and becomes that cell, and
by default (``isolate=True``) each cell runs in its own Python process, so a converter or runtime
that crashes natively (measured once here: a segfault inside the ExecuTorch runtime) or hangs
becomes an ``error`` cell too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field

from ..errors import InvalidInputError, ParityError, StateportError
from ..verify import check_proof_options
from ..verify.runners import one_torch_thread
from .backends.common import first_line
from .backends.registry import BACKENDS, get_backend

STATUSES = ("pass", "fail", "spec-only", "error", "skipped", "n/a")


@dataclass
class Cell:
    """One architecture x backend result."""

    arch: str
    backend: str
    status: str
    stream_vs_offline_max_abs_diff: float | None = None
    max_abs_diff: float | None = None
    tolerance: float | None = None
    reason: str = ""
    notes: list = field(default_factory=list)
    seconds_taken: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    def text(self) -> str:
        """The cell as a short string (markdown or terminal)."""
        mad = "-" if self.stream_vs_offline_max_abs_diff is None else f"{self.stream_vs_offline_max_abs_diff:.1e}"
        if self.status == "pass":
            return f"pass {mad}"
        if self.status == "fail":
            return f"FAIL {mad} (tol {self.tolerance:g}): {self.reason}"
        if self.status == "spec-only":
            return f"spec-only: {self.reason}"
        return f"{self.status}: {self.reason}"


def _stream_max(report) -> float | None:
    """Max |diff| over the backend's own streaming/offline checks vs the torch offline reference."""
    vals = [c.max_abs_diff for c in report.checks
            if not c.name.startswith("torch ") and "vs torch offline" in c.name and c.max_abs_diff is not None]
    return max(vals) if vals else None


def _graph_for_matrix(model, arch: str):
    """The one graph the matrix proves: the model itself, or a multi-graph model's encoder."""
    from ..nn.protocol import MultiGraphModule

    if not isinstance(model, MultiGraphModule):
        return model, []
    graphs = model.graphs()
    if "encoder" not in graphs:
        raise InvalidInputError(f"{arch}: a multi-graph model without an 'encoder' graph has no matrix row")
    others = [g for g in graphs if g != "encoder"]
    return graphs["encoder"], [f"encoder graph only: {', '.join(others)} step over tokens/frames, not audio chunks"]


def run_cell(arch: str, backend: str, *, size: str, seconds: float, out_dir: str, seed: int = 0) -> Cell:
    """Export ``arch`` at ``size`` with ``backend``, prove parity over ``seconds``; never raises."""
    from .pipeline import export_torch_model
    from .sources import build_model

    spec = get_backend(backend)
    start = time.monotonic()
    cell = Cell(arch, backend, "error")
    try:
        if not spec.available("export") or (spec.runs_here and not spec.available("run")):
            cell.status = "skipped"
            cell.reason = f"not installed ({spec.install_hint})"
            return cell
        model, provenance = build_model(arch=arch, size=size, seed=seed)
        if spec.layout_of is None:
            model, notes = _graph_for_matrix(model, arch)
            if notes:
                provenance = {**provenance, "graph": "encoder"}
            cell.notes.extend(notes)
        # A runtime's folder layout (sherpa-onnx) takes the whole model and writes a folder: its cell is
        # that runtime's model, every graph of it (measured before: every sherpa-onnx cell was an error,
        # the matrix having named a .onnx file).
        path = os.path.join(out_dir, f"{arch}-{backend}" + ("" if spec.layout_of else spec.suffix))
        try:
            result = export_torch_model(model, path, backend=backend, provenance=provenance, seconds=seconds)
            report = result.report
            cell.notes.extend(result.notes)
        except ParityError as e:
            report = e.report
        cell.tolerance = report.tolerance
        cell.max_abs_diff = report.max_abs_diff
        cell.stream_vs_offline_max_abs_diff = _stream_max(report)
        if not spec.runs_here:
            cell.status = "spec-only" if report.passed else "fail"
            cell.reason = ("converted; spec and card checked, not run (no Core ML runtime on Linux)"
                           if report.passed else "; ".join(c.name for c in report.failures))
        elif report.passed:
            cell.status = "pass"
        else:
            cell.status = "fail"
            errors = [c.error for c in report.failures if c.error]
            cell.reason = errors[0] if errors else ", ".join(c.name for c in report.failures)
    except StateportError as e:
        cell.status, cell.reason = "error", e.message
    except Exception as e:  # a converter's internal error is a finding of this cell, not a crash of the matrix
        cell.status, cell.reason = "error", f"internal: {first_line(e)}"
    finally:
        cell.seconds_taken = round(time.monotonic() - start, 1)
    return cell


_CELL_MARK = "STATEPORT_MATRIX_CELL "
CELL_TIMEOUT_S = 900


def _cell_command(arch: str, backend: str, size: str, seconds: float) -> list:
    """The child process that computes one cell (``python -m stateport.export.matrix ...``)."""
    return [sys.executable, "-m", __name__, arch, backend, "--size", size, "--seconds", repr(float(seconds))]


def run_cell_isolated(arch: str, backend: str, *, size: str, seconds: float,
                      timeout_s: float = CELL_TIMEOUT_S) -> Cell:
    """:func:`run_cell` in a child process; a crash, a hang or garbled output becomes an ``error`` cell."""
    start = time.monotonic()
    cell = Cell(arch, backend, "error")
    try:
        proc = subprocess.run(_cell_command(arch, backend, size, seconds), capture_output=True, text=True,
                              timeout=timeout_s)
    except subprocess.TimeoutExpired:
        cell.reason = f"timed out after {timeout_s:g} s"
        cell.seconds_taken = round(time.monotonic() - start, 1)
        return cell
    line = next((ln for ln in reversed(proc.stdout.splitlines()) if ln.startswith(_CELL_MARK)), None)
    if line is not None:
        return Cell(**json.loads(line[len(_CELL_MARK):]))
    if proc.returncode < 0:
        try:
            name = signal.Signals(-proc.returncode).name
        except ValueError:
            name = f"signal {-proc.returncode}"
        cell.reason = f"crashed ({name}) inside the {backend} converter or runtime"
    else:
        tail = [ln for ln in proc.stderr.splitlines() if ln.strip()][-1:] or ["no output"]
        cell.reason = f"the cell process exited with {proc.returncode}: {tail[0][:200]}"
    cell.seconds_taken = round(time.monotonic() - start, 1)
    return cell


def parity_matrix(*, size: str = "tiny", seconds: float = 5.0, archs: list | None = None,
                  backends: list | None = None, progress=None, isolate: bool = True) -> list:
    """Every architecture (registry order) x backend as :class:`Cell` objects.

    ``isolate``: one child process per cell (a native crash stays in its cell; costs the imports
    each time). ``progress(cell)`` is called after each cell (the CLI prints a line per cell).
    """
    from ..zoo import architectures, get_architecture

    check_proof_options(seconds, None)
    names = list(archs) if archs else [a.name for a in architectures()]
    for n in names:
        get_architecture(n)  # unknown names fail before any work
    backend_list = list(backends) if backends else list(BACKENDS)
    for b in backend_list:
        get_backend(b)
    cells = []
    with tempfile.TemporaryDirectory(prefix="stateport-matrix-") as out_dir, one_torch_thread():
        for arch in names:
            try:
                get_architecture(arch).config_for(size)
            except StateportError as e:
                cells.extend(Cell(arch, b, "n/a", reason=e.message) for b in backend_list)
                continue
            for b in backend_list:
                if isolate:
                    cell = run_cell_isolated(arch, b, size=size, seconds=float(seconds))
                else:
                    cell = run_cell(arch, b, size=size, seconds=float(seconds), out_dir=out_dir)
                cells.append(cell)
                if progress is not None:
                    progress(cell)
    return cells


def markdown_matrix(cells: list) -> str:
    """Architectures as rows, backends as columns; each cell as :meth:`Cell.text`; notes below."""
    archs = list(dict.fromkeys(c.arch for c in cells))
    backends = list(dict.fromkeys(c.backend for c in cells))
    by_key = {(c.arch, c.backend): c for c in cells}
    lines = ["| architecture | " + " | ".join(backends) + " |", "|---|" + "---|" * len(backends)]
    for a in archs:
        row = [by_key[(a, b)].text() if (a, b) in by_key else "" for b in backends]
        lines.append(f"| {a} | " + " | ".join(x.replace("|", "\\|").replace("\n", " ") for x in row) + " |")
    notes = []
    for c in cells:
        for n in c.notes:
            notes.append(f"- {c.arch} / {c.backend}: {n}")
    if notes:
        lines += ["", "Notes:", *dict.fromkeys(notes)]
    lines += ["", "Cells: max |diff| of the backend's streaming (and offline) runs vs the torch offline forward; "
              "pass/FAIL at the cell's tolerance."]
    return "\n".join(lines)


def _main(argv: list | None = None) -> int:
    """Child-process entry of :func:`run_cell_isolated`: one cell, printed as one marked JSON line."""
    import argparse

    parser = argparse.ArgumentParser(description="compute one parity-matrix cell")
    parser.add_argument("arch")
    parser.add_argument("backend")
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="stateport-cell-") as out_dir, one_torch_thread():
        cell = run_cell(args.arch, args.backend, size=args.size, seconds=args.seconds, out_dir=out_dir)
    sys.stdout.write("\n" + _CELL_MARK + json.dumps(cell.to_dict()) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_main())
