"""Quantization-aware fine-tuning of a float model with the caller's training step, on one process or many.

The recipe: replace every Linear/LSTM by its fake-quantized twin (:mod:`.qat_modules`), train a few
hundred steps, freeze the activation ranges halfway (``observer_steps``), then fix every scale as a
constant. The frozen model is the torch reference of the exported QDQ graph (:func:`export_qat_onnx`),
which keeps the float model's ports and state.

What is trained on is the caller's (:class:`QatTask`): ``loss(model, step)`` draws its own batch and
returns the loss of ``model`` on it; optionally ``evaluate(model) -> {metric: value}`` on a
development set (run before and after, rank 0 only) and ``describe() -> dict`` for the card. A bare
callable ``loss(model, step)`` is a task too. The optimiser (AdamW), its schedule
(:func:`warmup_cosine`), gradient clipping and the observer freeze are the recipe's. The digit
recogniser's task is ``stateport.train.quantize_data.DigitQatTask``.

Multi-process: under ``torchrun --nproc_per_node N`` (``WORLD_SIZE`` > 1) each process trains inside
DistributedDataParallel with the gloo backend (CPU); ``model`` given to ``loss`` is the DDP wrapper
(call it, do not unwrap it), and a task should draw a different stream per rank
(``torch.distributed.get_rank()``). The observers' buffers follow rank 0 (DDP broadcasts buffers
every step), so every rank ends with the same scales. Only rank 0 writes files.

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
from typing import Callable, Protocol, runtime_checkable

import torch

from ..errors import InvalidInputError
from .qat_modules import disable_observers, freeze, make_qat_model, quantization_points
from .recipes import QatInt8Config


@runtime_checkable
class QatTask(Protocol):
    """The caller's side of QAT: one training step's loss. ``evaluate`` and ``describe`` are optional."""

    def loss(self, model: torch.nn.Module, step: int) -> torch.Tensor:
        """The loss of ``model`` (in training mode) on the task's next batch; ``step`` counts from 0."""


class _CallableTask:
    """A bare ``loss(model, step)`` callable as a task."""

    def __init__(self, fn: Callable):
        self.loss = fn

    def describe(self) -> dict:
        return {"loss": getattr(self.loss, "__qualname__", type(self.loss).__name__)}


def as_task(qat) -> QatTask:
    """``qat`` as a :class:`QatTask` (a task object, or a callable ``loss(model, step)``); typed error otherwise."""
    if qat is None:
        raise InvalidInputError("qat-int8 fine-tunes with your training step: pass qat= (an object with "
                                "loss(model, step) -> loss tensor, or such a callable); see docs/quantization.md")
    if isinstance(qat, QatTask) and callable(getattr(qat, "loss", None)):
        return qat
    if callable(qat):
        return _CallableTask(qat)
    raise InvalidInputError(f"qat: expected an object with loss(model, step), or a callable; got {type(qat).__name__}")


def warmup_cosine(step: int, *, warmup_steps: int, total_steps: int, final_fraction: float) -> float:
    """Learning-rate factor at ``step``: linear warm-up over ``warmup_steps``, then cosine to ``final_fraction``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    p = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
    return final_fraction + (1 - final_fraction) * 0.5 * (1 + math.cos(math.pi * p))


@dataclass
class QatResult:
    """The frozen fake-quant model and what the fine-tuning did."""

    model: torch.nn.Module
    replaced: list
    world_size: int
    rank: int
    params_in_sync: bool
    history: list = field(default_factory=list)
    evaluation: dict = field(default_factory=dict)
    task: dict = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> dict:
        return {"replaced_modules": self.replaced, "world_size": self.world_size,
                "params_in_sync": self.params_in_sync, "evaluation": self.evaluation, "task": self.task,
                "train_seconds": round(self.seconds, 1), "history": self.history,
                "quantization_points": quantization_points(self.model)}


def distributed_context() -> tuple[int, int]:
    """(rank, world_size); joins the gloo process group when launched by torchrun with WORLD_SIZE > 1."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _params_checksum(model) -> torch.Tensor:
    return torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().reshape(1)


def _evaluate(task, model) -> dict | None:
    fn = getattr(task, "evaluate", None)
    if fn is None:
        return None
    was_training = model.training
    try:
        result = fn(model)
    finally:
        model.train(was_training)
    return result if isinstance(result, dict) else {"metric": result}


def qat_finetune(float_model, cfg: QatInt8Config, task, *, log=print) -> QatResult:
    """Fine-tune a fake-quantized copy of ``float_model`` with ``task``'s loss; returns it frozen (eval).

    ``task``: a :class:`QatTask` or a callable ``loss(model, step)`` (see the module docstring).
    """
    import torch.distributed as dist

    task = as_task(task)
    t0 = time.time()
    torch.set_num_threads(cfg.threads)
    rank, world = distributed_context()
    torch.manual_seed(cfg.seed)
    evaluation = {}
    if rank == 0:
        before = _evaluate(task, float_model.eval())
        if before is not None:
            evaluation["float"] = before

    qat, replaced = make_qat_model(float_model, float_input_layer=cfg.float_input_layer)
    qat.train()
    net = torch.nn.parallel.DistributedDataParallel(qat) if world > 1 else qat
    opt = torch.optim.AdamW(qat.parameters(), lr=cfg.learning_rate, weight_decay=0.0)
    # A short warm-up: the fake quants start from fresh ranges.
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: warmup_cosine(
        step, warmup_steps=cfg.warmup_steps, total_steps=cfg.steps, final_fraction=cfg.final_lr_fraction))
    history, running = [], None
    for step in range(cfg.steps):
        if step == cfg.observer_steps:
            # Ranges stop moving: the weights then adapt to the scales they will be exported with.
            disable_observers(qat)
        loss = task.loss(net, step)
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0 or not loss.requires_grad:
            raise InvalidInputError(f"qat task: loss(model, step) must return a scalar tensor with a gradient; got "
                                    f"{type(loss).__name__}{tuple(loss.shape) if isinstance(loss, torch.Tensor) else ''}")
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(qat.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        value = float(loss.detach())
        if not math.isfinite(value):
            raise InvalidInputError(f"qat task: the loss at step {step} is {value}")
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
    if rank == 0:
        after = _evaluate(task, qat)
        if after is not None:
            evaluation["qat"] = after
    qat.eval()
    describe = getattr(task, "describe", None)
    return QatResult(qat, replaced, world, rank, in_sync, history, evaluation,
                     describe() if callable(describe) else {}, time.time() - t0)


def export_qat_onnx(qat_model, *, provenance: dict, name: str | None = None):
    """The frozen fake-quant model as QDQ ONNX with int8 weights, in memory; returns ``(proto, card, folded)``.

    Same exporter and port layout as the float export (the ONNX backend's ``to_onnx``), so the
    artifact has the float model's inputs, outputs and state ports.
    """
    from ..export.backends.common import ExportSettings
    from ..export.backends.onnx_file import to_onnx
    from ..runtime.model_file import write_card
    from .onnx_graph import fold_dequantize_movement, fold_weight_quantize
    from .qat_modules import export_mode

    with export_mode():
        proto, card = to_onnx(qat_model, ExportSettings(provenance=dict(provenance), name=name))
    folded = fold_weight_quantize(proto)
    fold_dequantize_movement(proto)
    write_card(proto, card)
    return proto, card, folded
