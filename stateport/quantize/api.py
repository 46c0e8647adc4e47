"""``stateport quantize``: fp32 stateport ONNX -> reduced-precision artifact, card and proofs.

Every artifact carries its recipe in ``card.provenance.quantization`` (+ ``precision``), its
certificate at the ONNX Runtime level the client must use (``certificate.ort_graph_optimization``,
also ``quantization.ort_graph_optimization``), the float-vs-quantized deviation, and the file
sizes. A failed proof still writes the card (``passed: false``) and then raises ParityError.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
from dataclasses import dataclass

from ..errors import InvalidInputError, ParityError, UnsupportedError
from ..spec import ModelCard
from .onnx_graph import file_size_bytes, op_histogram, output_quantization_step, weight_bytes_by_dtype
from .proof import float_deviation, level_loads, prove_against_torch, prove_self
from .recipes import (DynamicInt8Config, Fp16Config, QatInt8Config, RecipeConfig, StaticInt8Config, get_recipe,
                      precision_of, recipe_dict)

DEFAULT_PROOF_SECONDS = 20.0
DEVIATION_UTTERANCES = 8


@dataclass
class QuantizeResult:
    path: str | None
    card: ModelCard | None
    reports: dict
    sizes: dict
    rank: int = 0

    def to_dict(self) -> dict:
        return {"path": self.path, "sizes": self.sizes, "rank": self.rank,
                "card": self.card.to_dict() if self.card else None,
                "parity": {k: r.to_dict() for k, r in self.reports.items()}}

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


def _save(proto, card: ModelCard, path: str) -> None:
    import onnx

    from ..runtime.model_file import write_card

    write_card(proto, card)
    onnx.save(proto, path)


def _deviation_streams(card: ModelCard, checkpoint, calib) -> tuple[list, dict]:
    """Real held-out-free feature streams for the float deviation: training speakers, other seed."""
    from .calibration import calibration_streams, default_training_speakers
    from .recipes import CalibrationConfig

    speakers, _ = default_training_speakers(checkpoint)
    cfg = CalibrationConfig(utterances=DEVIATION_UTTERANCES, utterances_per_stream=DEVIATION_UTTERANCES,
                            augment=False, seed=777)
    return calibration_streams(card, cfg, source=calib, speakers=speakers)


def quantize_model(model: str | os.PathLike, out: str | os.PathLike, *, recipe: str | RecipeConfig = "static-int8",
                   calib: str | os.PathLike | None = None, checkpoint: str | os.PathLike | None = None,
                   seconds: float = DEFAULT_PROOF_SECONDS, ort_optimization: str | None = None,
                   log=print) -> QuantizeResult:
    """``stateport quantize``: the same argument names as the CLI.

    model: an fp32 stateport ONNX file. checkpoint: the float weights it was exported from (QAT
    fine-tunes them; calibration excludes its recipe's test speaker). calib: a folder of FSDD-style
    recordings, other ``.wav`` files, or ``.npy`` features (default: FSDD, training speakers).
    Under torchrun, QAT trains on every rank and only rank 0 writes (others return ``path=None``).
    """
    from ..export.backends.onnx_file import write_card as update_card
    from ..runtime.model_file import read_card

    model, out = os.fspath(model), os.fspath(out)
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
    reports, torch_reference = {}, None

    if isinstance(cfg, DynamicInt8Config):
        from .ptq import quantize_dynamic_int8

        proto, info = quantize_dynamic_int8(model, card, cfg)
    elif isinstance(cfg, StaticInt8Config):
        from .calibration import calibration_streams, default_training_speakers
        from .ptq import quantize_static_int8

        speakers, why = (cfg.calibration.speakers, "given") if cfg.calibration.speakers \
            else default_training_speakers(checkpoint)
        streams, calib_info = calibration_streams(card, cfg.calibration, source=calib, speakers=tuple(speakers))
        calib_info["speakers_from"] = why
        proto, info = quantize_static_int8(model, card, cfg, streams)
        info["calibration"] = calib_info
    elif isinstance(cfg, Fp16Config):
        from .ptq import convert_fp16

        proto, info = convert_fp16(model, card, cfg)
    elif isinstance(cfg, QatInt8Config):
        proto, info, torch_reference = _run_qat(card, cfg, checkpoint, out, log)
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
    _save(proto, new_card, out)

    loads, why = level_loads(out, level)
    if not loads:
        raise UnsupportedError(f"ONNX Runtime cannot open the {cfg.name} artifact at optimisation level "
                               f"{level!r} ({why}); choose another level (--ort-optimization)")
    reports["stream_vs_offline"] = prove_self(out, new_card, label=cfg.name, level=level, seconds=seconds,
                                              tolerance=stream_tolerance)
    if torch_reference is not None:
        reports["vs_torch_fake_quant"] = prove_against_torch(torch_reference, out, new_card, label=cfg.name,
                                                             level=level, seconds=seconds,
                                                             tolerance=cfg.reference_tolerance)
    streams, _ = _deviation_streams(card, checkpoint, calib)
    quant["float_deviation"] = float_deviation(model, out, new_card, streams, level=level)
    sizes = {"fp32_bytes": file_size_bytes(model), "bytes": file_size_bytes(out)}
    sizes["ratio"] = round(sizes["bytes"] / sizes["fp32_bytes"], 4)
    quant["size"] = sizes

    main = reports.get("vs_torch_fake_quant", reports["stream_vs_offline"])
    new_card.certificate = main.certificate()
    quant["proofs"] = {k: {"passed": r.passed, "max_abs_diff": r.max_abs_diff, "tolerance": r.tolerance,
                           "reference": r.reference, "ort_graph_optimization": r.optimization}
                       for k, r in reports.items()}
    update_card(out, new_card)
    result = QuantizeResult(out, new_card, reports, sizes)
    failed = [k for k, r in reports.items() if not r.passed]
    if failed:
        raise ParityError(f"{cfg.name}: proof(s) {', '.join(failed)} failed for {os.path.basename(out)}",
                          reports[failed[0]])
    return result


def _run_qat(card: ModelCard, cfg: QatInt8Config, checkpoint, out: str, log):
    """Fine-tune, export (rank 0); returns (proto, info, frozen torch model) or (None, {"rank": r}, None)."""
    import onnx
    import torch

    from ..export.sources import rebuild_reference
    from .calibration import held_out_speaker
    from .qat import export_qat_onnx, qat_finetune

    if checkpoint is None and card.provenance.checkpoint_sha256:
        raise InvalidInputError("qat-int8 fine-tunes the float weights: pass --checkpoint (the one this model "
                                "was exported from)")
    float_model = rebuild_reference(card, checkpoint=checkpoint)
    test, dev = held_out_speaker(checkpoint), _dev_speaker(checkpoint)
    result = qat_finetune(float_model, cfg, test_speaker=test, dev_speaker=dev, log=log)
    if result.rank != 0:
        torch.distributed.barrier()
        return None, {"rank": result.rank}, None
    prov = {k: v for k, v in card.provenance.to_dict().items()
            if k in ("architecture", "size", "config", "init_seed", "checkpoint_sha256", "module", "graph")}
    _, folded = export_qat_onnx(result.model, out, provenance=prov, name=card.name)
    if result.world_size > 1:
        torch.distributed.barrier()
    info = {"tool": f"torchao {_torchao_version()} fake quantization (eager QAT twins), torch {torch.__version__}",
            "qat": result.summary(), "folded_weight_quantizers": folded,
            "test_speaker": test, "dev_speaker": dev}
    return onnx.load(out), info, result.model


def _dev_speaker(checkpoint) -> str | None:
    if checkpoint is not None:
        from ..train.trainer import recipe_of

        dev = (recipe_of(os.fspath(checkpoint)).get("speakers") or {}).get("dev")
        if dev is not None:
            return dev[0] if dev else None
    return "next"


def _torchao_version() -> str:
    try:
        import torchao

        return torchao.__version__
    except ImportError:
        return "?"
