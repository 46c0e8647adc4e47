"""The accuracy table: FP32, FP16, dynamic int8, static int8 and QAT int8, measured in one run.

Every row is built from the same fp32 export, proved like any artifact (``quantize_model``), then
streamed through the client runtime over the caller's held-out set (for the digit recogniser, the
*held-out* FSDD speaker of the model's recipe: ``stateport.train.quantize_data``):
streaming WER, file size, 1-thread real-time factor (whole client loop, and the model alone) and
the mean step time, with the fp32 baseline measured in the same run on the same machine.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from ..errors import ParityError

TABLE_RECIPES = ("fp16", "dynamic-int8", "static-int8")


@dataclass
class AccuracyTable:
    speaker: str
    utterances: int
    audio_seconds: float
    rows: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"held_out_speaker": self.speaker, "utterances": self.utterances, "audio_seconds": self.audio_seconds,
                "rows": self.rows, "notes": self.notes}

    def to_text(self) -> str:
        head = (f"held-out speaker {self.speaker}: {self.utterances} utterances, {self.audio_seconds:.0f} s of "
                "speech, streamed through the runtime (1 thread)")
        lines = [head, f"{'model':<16}{'WER %':>7}{'size KB':>9}{'size %':>8}{'RTF':>8}{'model RTF':>10}"
                 f"{'step ms':>9}{'proof':>7}{'ORT level':>10}{'argmax=fp32':>12}"]
        for r in self.rows:
            agree = r.get("argmax_agreement_vs_fp32")
            lines.append(f"{r['model']:<16}{100 * r['wer']:>7.2f}{r['bytes'] / 1024:>9.1f}{100 * r['size_ratio']:>8.1f}"
                         f"{r['rtf']:>8.4f}{r['model_rtf']:>10.4f}{r['step_ms']:>9.3f}"
                         f"{'pass' if r['proof_passed'] else 'FAIL':>7}{r['ort_graph_optimization']:>10}"
                         f"{'' if agree is None else f'{100 * agree:.2f} %':>12}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


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


def accuracy_table(model: str | None, out_dir: str, *, data, checkpoint: str | None = None, calib=None, qat=None,
                   qat_recipe: str = "qat-int8", recipes: tuple = TABLE_RECIPES, log=print) -> AccuracyTable:
    """Quantize ``model`` (an fp32 export; exported from ``checkpoint`` when None) with every recipe, then
    measure each on ``data`` (a :class:`~stateport.quantize.evaluate.HeldOutSet`).

    ``calib`` / ``qat``: the calibration data and QAT training step (:func:`quantize_model`); a
    recipe whose input is missing gets a note instead of a row. Every model of the table is
    written into ``out_dir`` (``benchmarks/drift.py --table-dir`` reads it), with
    ``accuracy_table.json`` and ``.txt``.
    """
    from ..atomic import atomic_copy, atomic_write_text, check_output_path
    from .api import quantize_model
    from .evaluate import evaluate_model

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
    table = AccuracyTable(data.speaker, len(data.waveforms), round(data.seconds, 1))
    if export_note:
        table.notes.append(export_note)
    fp32_size = os.path.getsize(model)
    row = {"model": "fp32", "recipe": None, "bytes": fp32_size, "size_ratio": 1.0, "proof_passed": True,
           "argmax_agreement_vs_fp32": 1.0}
    row.update(evaluate_model(model, data))
    table.rows.append(row)
    log(f"fp32: WER {100 * row['wer']:.2f} %")
    from .recipes import QatInt8Config, StaticInt8Config, get_recipe

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
        try:
            result = quantize_model(model, path, recipe=cfg, calib=calib, qat=qat, checkpoint=checkpoint,
                                    log=lambda *_: None)
            card = result.card
        except ParityError as e:
            from ..runtime.model_file import read_card

            passed, report, path = False, e.report, e.evidence  # the failed artifact, kept beside the path
            card = read_card(path)
        q = card.provenance.quantization or {}
        row = {"model": name, "recipe": name, "path": path, "bytes": os.path.getsize(path),
               "size_ratio": os.path.getsize(path) / fp32_size, "proof_passed": passed,
               "proof": q.get("proofs"), "argmax_agreement_vs_fp32": (q.get("float_deviation") or {}).get(
                   "argmax_agreement")}
        if report is not None:
            row["failed_report"] = report.to_dict()
        row.update(evaluate_model(path, data))
        table.rows.append(row)
        log(f"{name}: WER {100 * row['wer']:.2f} %, {row['bytes']} bytes, proof {'pass' if passed else 'FAIL'}")
    atomic_write_text(os.path.join(out_dir, "accuracy_table.json"), json.dumps(table.to_dict(), indent=2, default=str))
    atomic_write_text(os.path.join(out_dir, "accuracy_table.txt"), table.to_text() + "\n")
    return table
