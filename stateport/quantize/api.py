"""``stateport quantize``: fp32 stateport ONNX -> reduced-precision artifact, card and proofs.

Every artifact carries its recipe in ``card.provenance.quantization`` (+ ``precision``), what it was
calibrated or fine-tuned on, its certificate at the ONNX Runtime level the client must use
(``certificate.ort_graph_optimization``, also ``quantization.ort_graph_optimization``), the
float-vs-quantized deviation on real speech, and the file sizes. The artifact is written to a
temporary beside ``out``, proved there and only then moved into place; a failed proof keeps it as
``OUT.failed.onnx`` (its card says FAILED) and raises ParityError.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
from dataclasses import dataclass

from ..atomic import atomic_output, check_output_path, failed_path
from ..errors import InvalidInputError, UnsupportedError
from ..spec import ModelCard
from ..verify import check_proof_options, parity_error, prove_self
from .onnx_graph import file_size_bytes, op_histogram, output_quantization_step, weight_bytes_by_dtype
from .proof import float_deviation, kernel_report, level_loads, prove_against_torch
from .recipes import (CalibrationConfig, DynamicInt8Config, Fp16Config, QatInt8Config, RecipeConfig,
                      StaticInt8Config, get_recipe, precision_of, recipe_dict)

DEFAULT_PROOF_SECONDS = 20.0
DEVIATION_UTTERANCES = 8


@dataclass
class QuantizeResult:
    """``reports``: the proofs the artifact must pass (its certificate is ``stream_vs_offline``);
    ``checks``: measured comparisons with their own acceptance rule (QAT: ``vs_torch_fake_quant``)."""

    path: str | None
    card: ModelCard | None
    reports: dict
    sizes: dict
    rank: int = 0
    checks: dict = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"path": self.path, "sizes": self.sizes, "rank": self.rank,
                "card": self.card.to_dict() if self.card else None,
                "parity": {k: r.to_dict() for k, r in self.reports.items()},
                "checks": {k: r.to_dict() for k, r in self.checks.items()}}

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.reports.values())


def _fresh_card(card: ModelCard, cfg: RecipeConfig) -> ModelCard:
    new = ModelCard.from_dict(card.to_dict())
    new.name = f"{card.name}-{cfg.name}"
    new.certificate = None
    new.provenance.precision = precision_of(cfg)
    new.provenance.created_utc = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    return new


def _deviation_streams(card: ModelCard, calib) -> tuple[list, dict]:
    """Real speech to measure fp32 vs the artifact on: the clips the package ships (independent of
    any calibration), else the calibration data, else none (reported as not measured)."""
    from .calibration import calibration_streams, shipped_speech

    cfg = CalibrationConfig(utterances=DEVIATION_UTTERANCES, utterances_per_stream=DEVIATION_UTTERANCES)
    shipped = shipped_speech()
    if card.frontend and shipped is not None:
        streams, info = calibration_streams(card, shipped, cfg)
        return streams, {**info, "what": "the speech clips shipped in stateport/assets (FSDD, CC BY-SA 4.0)"}
    if calib is not None:
        streams, info = calibration_streams(card, calib, cfg)
        return streams, {**info, "what": "the calibration data"}
    return [], {}


def quantize_model(model: str | os.PathLike, out: str | os.PathLike, *, recipe: str | RecipeConfig = "static-int8",
                   calib=None, qat=None, reference=None, module: str | None = None,
                   checkpoint: str | os.PathLike | None = None, seconds: float = DEFAULT_PROOF_SECONDS,
                   ort_optimization: str | None = None, log=print) -> QuantizeResult:
    """``stateport quantize``: the same argument names as the CLI.

    model: an fp32 stateport ONNX file. calib: calibration data for ``static-int8`` (a folder of
    recordings or ``.npy`` features, an iterable of waveforms / ``(waveform, rate)`` pairs /
    features, or a :class:`~stateport.quantize.calibration.CalibrationSet`; see
    :mod:`.calibration`). qat: the training step for ``qat-int8`` (an object with
    ``loss(model, step)``, or such a callable; see :mod:`.qat`). reference: the float torch model
    QAT fine-tunes (default: rebuilt from the card, with ``module`` / ``checkpoint`` when it was
    exported from them). Under torchrun, QAT trains on every rank and only rank 0 writes (the
    others return ``path=None``).
    """
    from ..runtime.model_file import read_card

    model, out = os.fspath(model), os.fspath(out)
    check_proof_options(seconds, None)
    check_output_path(out)  # before any work: a missing or read-only folder, or a folder at the path
    if os.path.abspath(out) == os.path.abspath(model):
        raise InvalidInputError(f"-o {out!r} is the fp32 model itself: write the quantized model elsewhere")
    cfg = get_recipe(recipe) if isinstance(recipe, str) else recipe
    if ort_optimization is not None:
        cfg = get_recipe(cfg.name, ort_optimization=ort_optimization) if isinstance(recipe, str) \
            else dataclasses.replace(cfg, ort_optimization=ort_optimization)
    card = read_card(model)
    if card.provenance.precision != "fp32":
        raise InvalidInputError(f"{model} is already {card.provenance.precision}: quantize the fp32 export")
    level = cfg.ort_optimization
    new_card = _fresh_card(card, cfg)
    quant = {"recipe": cfg.name, "config": recipe_dict(cfg), "ort_graph_optimization": level,
             "source_model": os.path.basename(model)}
    from ..export.sources import sha256_file

    quant["source_sha256"] = sha256_file(model)
    torch_reference = None

    if isinstance(cfg, DynamicInt8Config):
        from .ptq import quantize_dynamic_int8

        proto, info = quantize_dynamic_int8(model, card, cfg)
    elif isinstance(cfg, StaticInt8Config):
        from .calibration import calibration_streams
        from .ptq import quantize_static_int8

        streams, calib_info = calibration_streams(card, calib, cfg.calibration)
        proto, info = quantize_static_int8(model, card, cfg, streams)
        info["calibration"] = calib_info
    elif isinstance(cfg, Fp16Config):
        from .ptq import convert_fp16

        proto, info = convert_fp16(model, card, cfg)
    elif isinstance(cfg, QatInt8Config):
        proto, info, torch_reference = _run_qat(card, cfg, qat, reference, module, checkpoint, log)
        if proto is None:
            return QuantizeResult(None, None, {}, {}, rank=info["rank"])
    else:
        raise UnsupportedError(f"no recipe handler for {type(cfg).__name__}")

    quant.update(info)
    # Streaming may differ from offline by one step of an output's quantizer (see
    # output_quantization_step): the recipe's bound never goes below that step.
    steps = [output_quantization_step(proto, p.name) for p in new_card.outputs]
    steps = [s for s in steps if s]
    stream_tolerance = max([cfg.stream_tolerance] + [1.001 * s for s in steps])
    quant["stream_tolerance"] = stream_tolerance
    quant["ops"] = op_histogram(proto)
    quant["weight_bytes"] = weight_bytes_by_dtype(proto)
    new_card.provenance.quantization = quant
    deviation_streams, deviation_info = _deviation_streams(card, calib)

    from ..export.backends.onnx_file import save_onnx, write_card

    with atomic_output(out) as target:
        save_onnx(proto, new_card, target.tmp)
        loads, why = level_loads(target.tmp, level)
        if not loads:
            raise UnsupportedError(f"ONNX Runtime cannot open the {cfg.name} artifact at optimisation level "
                                   f"{level!r} ({why}); choose another level (--ort-optimization)")
        if precision_of(cfg) == "int8":
            quant["kernels"] = kernel_report(target.tmp, level)
        reports = {"stream_vs_offline": prove_self(target.tmp, new_card, label=cfg.name, level=level,
                                                   seconds=seconds, tolerance=stream_tolerance)}
        checks = {}
        if torch_reference is not None:
            checks["vs_torch_fake_quant"] = prove_against_torch(torch_reference, target.tmp, new_card,
                                                                label=cfg.name, level=level, seconds=seconds,
                                                                tolerance=cfg.reference_tolerance)
        if deviation_streams:
            quant["float_deviation"] = {**float_deviation(model, target.tmp, new_card, deviation_streams, level=level),
                                        "measured_on": deviation_info}
        else:
            quant["float_deviation"] = {"note": "not measured: the model takes features and no calibration "
                                                "features were given"}
        sizes = {"fp32_bytes": file_size_bytes(model), "bytes": file_size_bytes(target.tmp)}
        sizes["ratio"] = round(sizes["bytes"] / sizes["fp32_bytes"], 4)
        quant["size"] = sizes
        new_card.certificate = reports["stream_vs_offline"].certificate()
        quant["proofs"] = {k: {"passed": r.passed, "max_abs_diff": r.max_abs_diff, "tolerance": r.tolerance,
                               "reference": r.reference, "ort_graph_optimization": r.optimization}
                           for k, r in reports.items()}
        export_problem = None
        if checks:
            quant["export_check"], export_problem = _export_check(checks["vs_torch_fake_quant"], cfg)
        write_card(target.tmp, new_card)
        if not all(r.passed for r in reports.values()):
            raise parity_error(out, reports, evidence=target.keep_as(failed_path(out, ".onnx")))
        if export_problem:
            from ..errors import ParityError

            evidence = target.keep_as(failed_path(out, ".onnx"))
            raise ParityError(f"parity failed for {os.path.basename(out)}: {export_problem}; the file that failed "
                              f"is kept as {evidence}, nothing was written at {out}", checks["vs_torch_fake_quant"],
                              evidence=evidence)
        target.commit()
    return QuantizeResult(out, new_card, reports, sizes, checks=checks)


def _export_check(report, cfg: QatInt8Config) -> tuple[dict, str | None]:
    """The QDQ file vs the torch fake-quant model it was exported from: the card's record, and why it fails (or None).

    Accepted when every output and state is within ``reference_tolerance`` *or* every output's frame
    argmax agrees on at least ``min_torch_argmax_agreement`` of frames: two float implementations of
    the same quantized arithmetic differ by ~1e-7 before each quantizer, which flips a rounding now
    and then, and through a stack of quantized convolutions those flips cascade (QatInt8Config).
    """
    agreements = [d.argmax_agreement for c in report.checks for d in c.diffs if d.argmax_agreement is not None]
    agreement = min(agreements) if agreements else None
    record = {"reference": report.reference, "ort_graph_optimization": report.optimization,
              "max_abs_diff": report.max_abs_diff, "tolerance": report.tolerance, "within_tolerance": report.passed,
              "min_argmax_agreement": agreement, "required_argmax_agreement": cfg.min_torch_argmax_agreement}
    if report.passed or (agreement is not None and agreement >= cfg.min_torch_argmax_agreement):
        return record, None
    return record, (f"the QDQ graph does not compute its torch fake-quant model: max |diff| {report.max_abs_diff:.3g} "
                    f"(bound {report.tolerance:g}) and frame argmax agreement "
                    f"{'n/a' if agreement is None else f'{100 * agreement:.2f} %'} "
                    f"(needed {100 * cfg.min_torch_argmax_agreement:g} %)")


def _run_qat(card: ModelCard, cfg: QatInt8Config, qat, reference, module, checkpoint, log):
    """Fine-tune, export in memory (rank 0); returns (proto, info, frozen torch model) or (None, {"rank": r}, None)."""
    import torch

    from ..export.sources import rebuild_reference
    from .qat import as_task, export_qat_onnx, qat_finetune

    task = as_task(qat)  # typed error before the float model is built
    if reference is None:
        if checkpoint is None and card.provenance.checkpoint_sha256:
            raise InvalidInputError("qat-int8 fine-tunes the float weights: pass --checkpoint (the one this model "
                                    "was exported from)")
        reference = rebuild_reference(card, module=module, checkpoint=checkpoint)
    result = qat_finetune(reference, cfg, task, log=log)
    if result.rank != 0:
        torch.distributed.barrier()
        return None, {"rank": result.rank}, None
    prov = {k: v for k, v in card.provenance.to_dict().items()
            if k in ("architecture", "size", "config", "init_seed", "checkpoint_sha256", "module", "graph")}
    proto, _, folded = export_qat_onnx(result.model, provenance=prov, name=card.name)
    if result.world_size > 1:
        torch.distributed.barrier()
    info = {"tool": f"torchao {_torchao_version()} fake quantization (eager QAT twins), torch {torch.__version__}",
            "qat": result.summary(), "folded_weight_quantizers": folded}
    return proto, info, result.model


def _torchao_version() -> str:
    try:
        import torchao

        return torchao.__version__
    except ImportError:
        return "?"
