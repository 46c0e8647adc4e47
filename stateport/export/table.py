"""The architecture table: export every registered architecture and measure what a device pays.

One row per architecture: state ports, state size per stream, parameters, algorithmic
latency, ONNX file size and the parity proof's max |diff| (streaming and ONNX Runtime vs the
torch offline forward). ``stateport list --table`` prints it.

Every architecture goes through :func:`stateport.export.export_model` (the table lives in the export
layer, above the zoo it measures); a multi-graph export
(a transducer's encoder / predictor / joiner, written as a directory) is summed over its
graphs. An architecture that needs another way of measuring registers it with
:func:`register_table_measure`; its row has the same keys.
"""

from __future__ import annotations

import glob
import os
import tempfile
from typing import Callable

from .. import progress
from ..errors import ModelFileError, ParityError, StateportError
from ..verify import check_proof_options
from ..verify.runners import one_torch_thread
from ..zoo.registry import architectures, get_architecture

COLUMNS = (  # key, markdown header
    ("name", "architecture"),
    ("size", "size"),
    ("graphs", "graphs"),
    ("state_ports", "state ports"),
    ("state_floats_per_stream", "state floats / stream"),
    ("parameters", "parameters"),
    ("algorithmic_latency_ms", "algorithmic latency (ms)"),
    ("onnx_bytes", "ONNX size"),
    ("streaming_vs_offline_max_abs_diff", "streaming vs offline max abs diff"),
)

# name -> fn(arch_name, size, seconds, out_dir) -> row dict with the keys of COLUMNS
_MEASURES: dict[str, Callable[[str, str, float, str], dict]] = {}


def register_table_measure(name: str, measure: Callable[[str, str, float, str], dict]) -> None:
    """Measure architecture ``name`` with ``measure(name, size, seconds, out_dir) -> row`` instead of
    :func:`measure_export`."""
    _MEASURES[name] = measure


def measure_export(name: str, size: str, seconds: float, out_dir: str) -> dict:
    """Export ``name`` at ``size`` with :func:`~stateport.export.export_model`, proving parity over ``seconds``.

    The figures come from the cards written into the files, certificate included, so a model
    that fails its proof still gets a row (``parity_passed`` false) from the failed file the
    export kept beside the path. A multi-graph export (a
    directory of graphs) is summed over its graphs: state, parameters, bytes; the worst
    parity figure and the longest latency.
    """
    from ..runtime.model_file import read_card
    from .pipeline import export_model

    target = os.path.join(out_dir, f"{name}-{size}.onnx")
    try:
        export_model(target, arch=name, size=size, seconds=seconds)
    except ParityError as e:
        target = e.evidence or target  # the failed file (or folder) with its failing certificate: the row shows it
    files = [target] if os.path.isfile(target) else sorted(glob.glob(os.path.join(target, "*.onnx")))
    if not files:
        raise ModelFileError(f"exporting {name} wrote no ONNX file")
    cards = [read_card(f) for f in files]
    certificates = [c.certificate or {} for c in cards]
    diffs = [c.get("max_abs_diff") for c in certificates]
    # The "... vs torch offline" checks: torch and the exported graph streamed in every
    # chunking (and the graph's offline call) against the torch full-utterance forward. The
    # whole proof's figure also covers the lock-step state outputs.
    offline_diffs = [k.get("max_abs_diff") for c in certificates for k in c.get("compared", [])
                     if k.get("check", "").endswith("vs torch offline")]
    return {
        "name": name, "size": size, "graphs": len(cards),
        "state_ports": sum(len(c.states) for c in cards),
        "state_floats_per_stream": sum(c.total_state_floats() for c in cards),
        "parameters": sum(c.provenance.parameters or 0 for c in cards),
        "algorithmic_latency_ms": max(c.streaming.algorithmic_latency_ms for c in cards),
        "onnx_bytes": sum(os.path.getsize(f) for f in files),
        "streaming_vs_offline_max_abs_diff": max(offline_diffs) if offline_diffs and None not in offline_diffs
        else None,
        "parity_max_abs_diff": None if None in diffs else max(diffs),
        "parity_passed": all(c.get("passed") is True for c in certificates),
        "parity_seconds": min(c.get("seconds", 0.0) for c in certificates),
    }


def architecture_table(size: str = "tiny", seconds: float = 10.0, archs: list | None = None) -> list[dict]:
    """One measured row per registered architecture (name order), each exported at ``size``.

    ``archs`` limits the table to those architectures (default: all registered). An
    architecture that has no such size, or whose export fails, gets a row with ``error`` (the
    message) instead of figures, so one failure does not hide the other rows.
    """
    check_proof_options(seconds, None)
    selected = architectures()
    if archs is not None:
        selected = [get_architecture(n) for n in archs]  # an unknown name raises InvalidInputError
    rows = []
    with tempfile.TemporaryDirectory(prefix="stateport-table-") as out_dir, one_torch_thread():
        for arch in selected:
            measure = _MEASURES.get(arch.name, measure_export)
            progress.step(f"{arch.name} ({size}): export, {seconds:g} s parity proof, latency")
            try:
                arch.config_for(size)
                rows.append(measure(arch.name, size, float(seconds), out_dir))
            except StateportError as e:
                rows.append({"name": arch.name, "size": size, "error": f"{e.code}: {e.message}"})
    return rows


def _format(key: str, value) -> str:
    if value is None:
        return "-"
    if key == "onnx_bytes":
        return f"{value / 1024:.1f} KiB" if value < 1024 * 1024 else f"{value / (1024 * 1024):.2f} MiB"
    if key.endswith("max_abs_diff"):
        return f"{value:.1e}"
    if key in ("state_floats_per_stream", "parameters"):
        return f"{value:,}"
    if key == "algorithmic_latency_ms":
        return f"{value:g}"
    return str(value)


def markdown_table(rows: list) -> str:
    """The rows as a GitHub markdown table (a row with ``error`` shows it in place of figures)."""
    lines = ["| " + " | ".join(h for _, h in COLUMNS) + " |",
             "|" + "|".join("---" if k in ("name", "size") else "---:" for k, _ in COLUMNS) + "|"]
    for r in rows:
        if "error" in r:
            cells = [r["name"], r.get("size", ""), f"error: {r['error']}"] + [""] * (len(COLUMNS) - 3)
        else:
            cells = [_format(k, r.get(k)) for k, _ in COLUMNS]
            if r.get("parity_passed") is False:
                cells[-1] += " (FAILED)"
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)
