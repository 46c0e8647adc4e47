"""Quantization-aware fine-tuning of a float checkpoint, on one process or many (torchrun + gloo).

The recipe: replace every Linear/LSTM by its fake-quantized twin (:mod:`.qat_modules`), train a
few hundred steps with the float model's own recipe (stateport.train: the same composed FSDD
digit strings, augmentation and emission-restricted CTC), freeze the activation ranges halfway,
then fix every scale as a constant. The frozen model is the torch reference of the exported QDQ
graph (:func:`export_qat_onnx`), which keeps the float model's ports and state.

Multi-process: under ``torchrun --nproc_per_node N`` (``WORLD_SIZE`` > 1) each process trains on
its own data stream (seed + rank) inside DistributedDataParallel with the gloo backend (CPU); the
observers' buffers follow rank 0 (DDP broadcasts buffers every step), so every rank ends with
the same scales. Only rank 0 writes files.

Findings about torchao's PT2E flow (torch 2.13, torchao 0.18), which is why the twin is eager:
``prepare_qat_pt2e`` on ``torch.export`` of lstm-ctc leaves ``aten.lstm.input`` unannotated
(the XNNPACK-style quantizer covers linear/conv/add/...; it lives in ``torchao.testing`` and warns
that it is deprecated), so only the CTC head would be quantized; annotating ``aten.lstm.input``
with a custom Quantizer works (PT2E inserts fake quants on list arguments), but ``torch.export``
cannot keep the LSTM's time axis dynamic (constraint violation: T specialised to the example),
and exporting the 2x192 model at a fixed T=400 took 97 s on this machine.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field

import torch

from .qat_modules import disable_observers, freeze, make_qat_model, quantization_points
from .recipes import QatInt8Config


@dataclass
class QatResult:
    """The frozen fake-quant model and what the fine-tuning did."""

    model: torch.nn.Module
    replaced: list
    world_size: int
    rank: int
    params_in_sync: bool
    history: list = field(default_factory=list)
    dev_wer_float: float | None = None
    dev_wer_qat: float | None = None
    seconds: float = 0.0

    def summary(self) -> dict:
        return {"replaced_modules": self.replaced, "world_size": self.world_size,
                "params_in_sync": self.params_in_sync, "dev_wer_float": self.dev_wer_float,
                "dev_wer_qat": self.dev_wer_qat, "train_seconds": round(self.seconds, 1),
                "history": self.history, "quantization_points": quantization_points(self.model)}


def distributed_context() -> tuple[int, int]:
    """(rank, world_size); joins the gloo process group when launched by torchrun with WORLD_SIZE > 1."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _train_config(cfg: QatInt8Config, test_speaker: str, dev_speaker: str | None, seed: int):
    from ..train.trainer import TrainConfig

    # A float recipe without a dev speaker chose its checkpoint on held-out synthetic voices;
    # QAT does the same, so it needs the synthetic voices then.
    return TrainConfig(test_speaker=test_speaker, dev_speaker=dev_speaker, steps=cfg.steps,
                       batch_size=cfg.batch_size, seed=seed, use_synthetic=cfg.use_synthetic or dev_speaker is None,
                       num_digits_range=tuple(cfg.num_digits_range), emission_delay_ms=cfg.emission_delay_ms,
                       dev_utterances=cfg.dev_utterances, threads=cfg.threads, data_workers=0,
                       augment=dict(cfg.augment))


def _params_checksum(model) -> torch.Tensor:
    return torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().reshape(1)


def qat_finetune(float_model, cfg: QatInt8Config, *, test_speaker: str, dev_speaker: str | None = "next",
                 log=print) -> QatResult:
    """Fine-tune a fake-quantized copy of ``float_model``; returns it frozen (constant scales, eval)."""
    import torch.distributed as dist

    from ..train import trainer as T
    from ..train.augment import AugmentConfig
    from ..train.fsdd import leave_one_speaker_out

    t0 = time.time()
    torch.set_num_threads(cfg.threads)
    rank, world = distributed_context()
    torch.manual_seed(cfg.seed)
    tc = _train_config(cfg, test_speaker, dev_speaker, cfg.seed + rank)
    split = leave_one_speaker_out(test_speaker, dev_speaker=dev_speaker)
    sources, dev_sources = T._sources(tc, split)
    featurize = T._Featurizer.of(float_model)
    dev = T._dev_set(tc, dev_sources) if rank == 0 else []
    dev_wer_float = T.evaluate_torch(float_model, featurize, dev) if dev else None

    qat, replaced = make_qat_model(float_model)
    qat.train()
    net = torch.nn.parallel.DistributedDataParallel(qat) if world > 1 else qat
    batches = T._batch_stream(tc, sources, featurize, AugmentConfig(**cfg.augment))
    opt = torch.optim.AdamW(qat.parameters(), lr=cfg.learning_rate, weight_decay=0.0)

    def lr_at(step):  # short warm-up (the fake quants start from fresh ranges), then cosine to 10 %
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        p = (step - cfg.warmup_steps) / max(cfg.steps - cfg.warmup_steps, 1)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    history, running = [], None
    for step in range(cfg.steps):
        if step == cfg.observer_steps:
            # Ranges stop moving: the weights then adapt to the scales they will be exported with.
            disable_observers(qat)
        feats, frames, targets, target_lengths, mask = next(batches)
        (logits,) = net(feats)
        loss = T.restricted_ctc_loss(logits.log_softmax(-1), frames, targets, target_lengths, mask)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(qat.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        value = float(loss.detach())
        running = value if running is None else 0.9 * running + 0.1 * value
        if rank == 0 and ((step + 1) % max(cfg.steps // 5, 1) == 0 or step + 1 == cfg.steps):
            history.append({"step": step + 1, "loss": round(running, 4), "elapsed_s": round(time.time() - t0, 1)})
            log(f"qat step {step + 1}/{cfg.steps}: loss {running:.3f}")

    in_sync = True
    if world > 1:
        lo, hi = _params_checksum(qat), _params_checksum(qat)
        dist.all_reduce(lo, op=dist.ReduceOp.MIN)
        dist.all_reduce(hi, op=dist.ReduceOp.MAX)
        in_sync = bool(torch.equal(lo, hi))
    freeze(qat)
    dev_wer_qat = T.evaluate_torch(qat, featurize, dev) if dev else None
    return QatResult(qat, replaced, world, rank, in_sync, history, dev_wer_float, dev_wer_qat, time.time() - t0)


def export_qat_onnx(qat_model, out_path: str, *, provenance: dict, name: str | None = None):
    """Export the frozen fake-quant model as QDQ ONNX with int8 weights; returns the card.

    Same exporter and port layout as the float export (``export_onnx``), so the artifact has the
    float model's inputs, outputs and state ports.
    """
    import onnx

    from ..export import export_onnx
    from ..runtime.model_file import write_card
    from .onnx_graph import fold_dequantize_movement, fold_weight_quantize
    from .qat_modules import export_mode

    with export_mode():
        card = export_onnx(qat_model, out_path, provenance=provenance, name=name)
    proto = onnx.load(out_path)
    folded = fold_weight_quantize(proto)
    fold_dequantize_movement(proto)
    write_card(proto, card)
    onnx.save(proto, out_path)
    return card, folded
