"""The accuracy table: FP32, FP16, dynamic int8, static int8 and QAT int8 on the caller's evaluation sets, in one run.

Every row is built from the same fp32 export, proved like any artifact (``quantize_model``), then
streamed through the client runtime over the caller's sets (:mod:`.evaluate`: for the digit
recogniser ``stateport.train.quantize_data.table_sets``, the held-out speaker's trimmed single
digits and composed strings; any set of recordings goes in the same way): WER per set (false
tokens per minute for a set without tokens), file size, 1-thread real-time factor (whole client
loop, and the model alone), per-step latency, with the fp32 baseline measured in the same run on
the same machine, and each row's gap to fp32 against the goal (:data:`GOAL`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from ..errors import ParityError

TABLE_RECIPES = ("fp16", "dynamic-int8", "static-int8")
# The goal for an int8 row (issue 24): on every set within this many WER points (false tokens per minute)
# of fp32, at most this share of its size.
GOAL = {"max_wer_points_over_fp32": 0.5, "max_false_per_minute_over_fp32": 0.5, "max_size_ratio": 0.35}


def _cell(row: dict) -> str:
    """One set's figure: WER %, or false tokens per minute for a set without tokens."""
    if "wer" in row:
        return f"{100 * row['wer']:.2f}"
    return f"{row['false_per_minute']:.2f}/min"


@dataclass
class AccuracyTable:
    """``sets``: what each evaluation set is; ``rows``: one per model (fp32 first)."""

    sets: list
    rows: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"sets": self.sets, "goal": GOAL, "rows": self.rows, "notes": self.notes}

    def to_text(self) -> str:
        lines = [f"set {i + 1}: {s['name']} ({s['utterances']} recordings, {s['audio_seconds']:.0f} s; "
                 f"{'false tokens per minute' if s['kind'] == 'negative' else 'WER %'})"
                 for i, s in enumerate(self.sets)]
        head = f"{'model':<16}" + "".join(f"{f'set {i + 1}':>11}" for i in range(len(self.sets))) + \
            f"{'size KB':>9}{'size %':>8}{'RTF':>8}{'model RTF':>10}{'speed-up':>9}{'step p50':>9}{'proof':>7}" \
            f"{'goal':>6}"
        lines.append(head)
        for r in self.rows:
            cells = "".join(f"{_cell(x):>11}" for x in r["sets"])
            goal = "" if r.get("meets_goal") is None else ("yes" if r["meets_goal"] else "no")
            lines.append(f"{r['model']:<16}{cells}{r['bytes'] / 1024:>9.1f}{100 * r['size_ratio']:>8.1f}"
                         f"{r['rtf']:>8.4f}{r['model_rtf']:>10.4f}{r['speedup_vs_fp32']:>8.2f}x"
                         f"{r['step_ms']['p50']:>7.2f}ms{'pass' if r['proof_passed'] else 'FAIL':>7}{goal:>6}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def to_markdown(self) -> str:
        """The table as docs/quantization.md shows it."""
        names = [s["name"] for s in self.sets]
        lines = ["| model | " + " | ".join(names) + " | size KB | size % | RTF | model RTF | speed-up (model) | "
                 "step p50 ms | proof | goal |",
                 "|---|" + "---:|" * len(names) + "---:|---:|---:|---:|---:|---:|---|---|"]
        for r in self.rows:
            goal = "" if r.get("meets_goal") is None else ("yes" if r["meets_goal"] else "no")
            lines.append(f"| {r['model']} | " + " | ".join(_cell(x) for x in r["sets"]) +
                         f" | {r['bytes'] / 1024:.1f} | {100 * r['size_ratio']:.1f} | {r['rtf']:.4f} | "
                         f"{r['model_rtf']:.4f} | {r['speedup_vs_fp32']:.2f}x | {r['step_ms']['p50']:.2f} | "
                         f"{'pass' if r['proof_passed'] else 'FAIL'} | {goal} |")
        return "\n".join(lines)


def meets_goal(row: dict, fp32: dict) -> bool | None:
    """Whether an int8 row is within :data:`GOAL` of the fp32 row on every set (None for a non-int8 row)."""
    if row.get("precision") != "int8":
        return None
    for mine, base in zip(row["sets"], fp32["sets"]):
        if "wer" in mine and 100 * (mine["wer"] - base["wer"]) > GOAL["max_wer_points_over_fp32"]:
            return False
        if "false_per_minute" in mine and \
                mine["false_per_minute"] - base["false_per_minute"] > GOAL["max_false_per_minute_over_fp32"]:
            return False
    return row["size_ratio"] <= GOAL["max_size_ratio"]


def _reusable(path: str, fp32: str, cfg):
    """The card of ``path`` when it is ``cfg``'s proved artifact of ``fp32``, else None."""
    from ..export.sources import sha256_file
    from ..runtime.model_file import read_card
    from ..runtime.trust import certificate_status
    from .recipes import recipe_dict

    if not os.path.isfile(path):
        return None
    card = read_card(path)
    q = card.provenance.quantization or {}
    same = q.get("source_sha256") == sha256_file(fp32) and q.get("config") == json.loads(json.dumps(recipe_dict(cfg)))
    return card if same and certificate_status(card) == "passed" else None


def export_fp32(checkpoint: str, out_path: str) -> tuple[str, str | None]:
    """Export the checkpoint's architecture with its weights (parity-proved) to ``out_path``.

    Returns the path and, when the export's own parity proof failed, why (the table goes on with the
    failed file the export kept beside ``out_path``, and says so).
    """
    import torch

    from ..export import export_model

    data = torch.load(checkpoint, map_location="cpu", weights_only=True)
    arch = data.get("architecture") or (data.get("recipe") or {}).get("train_config", {}).get("arch")
    if not arch:
        from ..errors import InvalidInputError

        raise InvalidInputError(f"checkpoint {checkpoint!r} does not name its architecture")
    try:
        export_model(out_path, arch=arch, checkpoint=checkpoint)
    except ParityError as e:
        return e.evidence, f"fp32 export parity failed ({e.message}); max |diff| {e.report.max_abs_diff:.3g}"
    return out_path, None


def accuracy_table(model: str | None, out_dir: str, *, sets, checkpoint: str | None = None, calib=None, qat=None,
                   qat_recipe: str = "qat-int8", recipes: tuple = TABLE_RECIPES, seconds: float | None = None,
                   reuse: bool = False, log=print) -> AccuracyTable:
    """Quantize ``model`` (an fp32 export; exported from ``checkpoint`` when None) with every recipe, then
    measure each on ``sets`` (:func:`~stateport.quantize.evaluate.as_eval_sets`: any objects with ``name``,
    ``items`` ((waveform, token ids), ...) and ``sample_rate_hz``; ``kind="negative"`` for a set without tokens).

    ``calib`` / ``qat``: the calibration data and QAT training step (:func:`quantize_model`); a
    recipe whose input is missing gets a note instead of a row. ``seconds``: the proofs' length
    (default: quantize_model's). ``reuse``: a recipe's file already in ``out_dir`` is measured as it
    is when its card says it was made, and proved, from this fp32 file with this recipe's config (new
    sets then cost an evaluation, not another QAT). Every model of the table is
    written into ``out_dir`` (``benchmarks/drift.py --table-dir`` and ``benchmarks/int8_speed.py
    --table-dir`` read it), with ``accuracy_table.json``, ``.txt`` and ``.md``.
    """
    from ..atomic import atomic_copy, atomic_write_text, check_output_path
    from .api import quantize_model
    from .evaluate import as_eval_sets, evaluate_model
    from .recipes import QatInt8Config, StaticInt8Config, get_recipe, precision_of

    sets = as_eval_sets(sets)  # typed error before any work
    check_output_path(out_dir, directory=True, replaceable=lambda _: True)  # a folder to write into
    os.makedirs(out_dir, exist_ok=True)
    export_note = None
    if model is None:
        if checkpoint is None:
            from ..errors import InvalidInputError

            raise InvalidInputError("give an fp32 model or --checkpoint")
        model, problem = export_fp32(checkpoint, os.path.join(out_dir, "fp32.onnx"))
        log(f"exported {model}" + (f" ({problem})" if problem else ""))
        export_note = problem
    else:
        copy = os.path.join(out_dir, "fp32.onnx")
        if os.path.abspath(copy) != os.path.abspath(model):
            atomic_copy(model, copy)
        model = copy
    table = AccuracyTable([{"name": s.name, "group": s.group, "kind": s.kind, "utterances": len(s.items),
                            "audio_seconds": round(s.seconds, 1), "sample_rate_hz": s.sample_rate_hz} for s in sets])
    if export_note:
        table.notes.append(export_note)
    fp32_size = os.path.getsize(model)
    rows = [{"model": "fp32", "recipe": None, "precision": "fp32", "path": model, "bytes": fp32_size,
             "size_ratio": 1.0, "proof_passed": True, "argmax_agreement_vs_fp32": 1.0}]
    for name in (*recipes, qat_recipe):
        cfg = get_recipe(name)
        if isinstance(cfg, StaticInt8Config) and calib is None:
            table.notes.append(f"{name}: not measured (no calibration data given)")
            continue
        if isinstance(cfg, QatInt8Config) and qat is None:
            table.notes.append(f"{name}: not measured (no QAT training step given)")
            continue
        path = os.path.join(out_dir, f"{name}.onnx")
        passed, report = True, None
        card = _reusable(path, model, cfg) if reuse else None
        if card is not None:
            log(f"{name}: reusing {path} (made and proved from this fp32 file with this recipe)")
        else:
            log(f"{name}: quantizing")
            try:
                more = {} if seconds is None else {"seconds": seconds}
                card = quantize_model(model, path, recipe=cfg, calib=calib, qat=qat, checkpoint=checkpoint,
                                      log=lambda *_: None, **more).card
            except ParityError as e:
                from ..runtime.model_file import read_card

                passed, report, path = False, e.report, e.evidence  # the failed artifact, kept beside the path
                card = read_card(path)
        q = card.provenance.quantization or {}
        row = {"model": name, "recipe": name, "precision": precision_of(cfg), "path": path,
               "bytes": os.path.getsize(path), "size_ratio": os.path.getsize(path) / fp32_size,
               "proof_passed": passed, "proof": q.get("proofs"), "export_check": q.get("export_check"),
               "kernels": q.get("kernels"),
               "argmax_agreement_vs_fp32": (q.get("float_deviation") or {}).get("argmax_agreement")}
        if report is not None:
            row["failed_report"] = report.to_dict()
        rows.append(row)
    # Evaluated after every file exists, one model after the other on the same sets; fp32 first.
    for row in rows:
        log(f"{row['model']}: streaming {len(sets)} sets through the runtime")
        # A row whose proof failed is still measured (its row says FAIL): the runtime would
        # refuse its file, so it is opened knowingly here, not by a client.
        row.update(evaluate_model(row["path"], sets, allow_uncertified=not row["proof_passed"]))
        row["speedup_vs_fp32"] = rows[0]["model_rtf"] / row["model_rtf"]
        row["meets_goal"] = meets_goal(row, rows[0])
        log(f"{row['model']}: " + ", ".join(f"{s['set']}: {_cell(s)}" for s in row["sets"]))
    table.rows = rows
    atomic_write_text(os.path.join(out_dir, "accuracy_table.json"), json.dumps(table.to_dict(), indent=2, default=str))
    atomic_write_text(os.path.join(out_dir, "accuracy_table.txt"), table.to_text() + "\n")
    atomic_write_text(os.path.join(out_dir, "accuracy_table.md"), table.to_markdown() + "\n")
    return table
