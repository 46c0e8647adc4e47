"""ExecuTorch: ``torch.export`` of the flat step, lowered to the XNNPACK delegate, as a ``.pte`` program.

- ``forward(*inputs, *states) -> (*outputs, *new_states)`` in the card's port order (a ``.pte``
  method has positional I/O only: the card is what names them).
- The card is the constant method ``get_stateport_card`` returning the JSON string (ExecuTorch
  ``constant_methods``: a method with no inputs whose value is baked into the program). Read it
  with :func:`read_card`, or from C++ as ``module.execute("get_stateport_card")``.
- The most dynamic shapes that export and lower (memory is planned ahead of time, so dynamic
  dims have upper bounds: batch <= ``MAX_BATCH``, time <= ``MAX_FRAMES``): dynamic batch and
  time, else dynamic time with batch 1, else static (batch 1, one nominal chunk); the artifact's
  notes say which and why. Measured on executorch 1.5.1 / torch 2.13: ``nn.LSTM`` specialises
  the time axis to the traced length (static only); a causal conv stack keeps a dynamic time
  axis but XNNPACK refuses dynamic batch and time together; the rnnt encoder (frame stacking,
  then nn.LSTM) exported "dynamic" without complaint yet ran only at the traced length, so every
  dynamic program is run at other lengths before it is accepted (``_smoke_test``).
"""

from __future__ import annotations

import os

from ...errors import MissingCardError, ModelFileError
from ...spec import ModelCard
from .common import (Artifact, ExportSettings, conversion_error, example_args, first_line, flat_step, prepare, quiet,
                     trace_frames)

CARD_METHOD = "get_stateport_card"
MAX_BATCH = 4       # the parity proof batches 3 streams
MAX_FRAMES = 8192   # 82 s of 10 ms frames: covers the 60 s offline call of the parity proof
TRACE_BATCH = 2     # a batch of 1 would be specialised (torch.export's 0/1 rule)


def _versions() -> str:
    from importlib.metadata import version

    return f"executorch {version('executorch')} (XNNPACK)"


def _dynamic_shapes(card: ModelCard, *, batch_dynamic: bool):
    """torch.export dynamic shapes for FlatStep.forward(x, *rest): the time axis (and the batch) as Dims."""
    from torch.export import Dim

    s = card.streaming
    batch = Dim("batch", min=1, max=MAX_BATCH) if batch_dynamic else None
    time = None
    if s.frames_per_step:
        unit = max(s.frame_multiple, 1)
        low = -(-max(s.min_frames, 1) // unit)
        steps = Dim("time_units", min=max(low, 1), max=MAX_FRAMES // unit)
        time = unit * steps if unit > 1 else steps
    specs = []
    for p in card.inputs:
        spec = {0: batch} if batch is not None else {}
        if p.time_axis is not None and time is not None:
            spec[p.time_axis] = time
        specs.append(spec or None)
    for st in card.states:
        specs.append({st.batch_axis: batch} if batch is not None else None)
    return (specs[0], tuple(specs[1:]))


def _fix_batch(card: ModelCard) -> None:
    """Make the card say batch 1 on every port (time stays symbolic): a program with a static batch."""
    for p in card.inputs + card.outputs:
        p.shape = [1 if i == 0 else d for i, d in enumerate(p.shape)]
    for st in card.states:
        st.shape = [1 if i == st.batch_axis else d for i, d in enumerate(st.shape)]


# (mode, batch dynamic, time dynamic), tried in order until torch.export and the XNNPACK lowering accept
# one. Measured on executorch 1.5.1 / torch 2.13: nn.LSTM specialises the time axis (static only); a
# causal conv model lowers with a dynamic time axis but not with dynamic batch and time together
# ("XNNPACK reshape only supports 1 dynamic dimension").
_ATTEMPTS = (("dynamic batch and time", True, True), ("dynamic time, batch 1", False, True),
             ("static", False, False))


def _lower(flat, args, dynamic_shapes, card: ModelCard):
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    with quiet(), torch.no_grad():
        program = torch.export.export(flat, args, dynamic_shapes=dynamic_shapes)
        return to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()],
                                           constant_methods={CARD_METHOD: card.to_json()})


def _smoke_test(edge, flat, model, card: ModelCard, *, batch_dynamic: bool) -> None:
    """Run the emitted program at chunk lengths other than the traced one; raise if it fails or differs.

    Measured (executorch 1.5.1, torch 2.13, the rnnt encoder: frame stacking then nn.LSTM):
    torch.export accepted a dynamic time axis, yet the program ran only at the traced length
    ("method->execute() failed with error 0x12" at any other). A cheap run here turns that into
    the next, less dynamic attempt instead of a failed parity proof.
    """
    import copy

    import torch
    from executorch.runtime import Runtime

    s = card.streaming
    unit = max(s.frame_multiple, 1)
    smallest = max(unit, s.min_frames + (-s.min_frames) % unit)
    # Keep the buffer and the program referenced while the method runs: the runtime reads the bytes in
    # place (measured: a temporary buffer here segfaulted on the second execute).
    buffer = copy.deepcopy(edge).to_executorch().buffer
    program = Runtime.get().load_program(buffer)
    method = program.load_method("forward")
    for batch in ((1, 2) if batch_dynamic else (1,)):
        for frames in sorted({smallest, s.frames_per_step}):
            args = example_args(model, card, batch=batch, frames=frames)
            try:
                got = method.execute(list(args))
            except Exception as e:  # the runtime raises RuntimeError with its error code
                raise RuntimeError(f"the lowered program does not run at {frames} frames x batch {batch} "
                                   f"(traced at {trace_frames(card)}): {first_line(e)}") from None
            with torch.no_grad():
                want = flat(*args)
            worst = max(float((g - w).abs().max()) for g, w in zip(got, want))
            if worst > 1e-4:
                raise RuntimeError(f"the lowered program differs from torch by {worst:.1e} at {frames} frames x "
                                   f"batch {batch} (traced at {trace_frames(card)})")


def convert(model, settings: ExportSettings) -> Artifact:
    """Export and lower to XNNPACK (the most dynamic shapes that work); ``save`` emits the ``.pte``.

    (XNNPACK int8 needs PT2E calibration, not wired in: ``quantize`` is refused.)
    """
    import copy

    settings.refuse("executorch")
    notes = []
    attempts = _ATTEMPTS[-1:] if settings.static else _ATTEMPTS
    edge, card, failures = None, None, []
    for mode, batch_dynamic, time_dynamic in attempts:
        if time_dynamic and any("time_units" in str(e) for _, e in failures):
            continue  # torch.export already specialised the time axis: no dynamic-time attempt can work
        model, card = prepare(model, settings, backend="executorch", exporter=_versions(), static=not time_dynamic)
        if time_dynamic and not batch_dynamic:
            _fix_batch(card)
        flat = flat_step(model, card)
        batch = TRACE_BATCH if batch_dynamic else 1
        args = example_args(model, card, batch=batch, frames=trace_frames(card))
        shapes = _dynamic_shapes(card, batch_dynamic=batch_dynamic) if time_dynamic else None
        try:
            edge = _lower(flat, args, shapes, card)
            if time_dynamic:
                with quiet():
                    _smoke_test(edge, flat, model, card, batch_dynamic=batch_dynamic)
            break
        except Exception as e:  # torch.export / the partitioner / the smoke run raise many types: findings
            edge = None
            failures.append((mode, e))
    if edge is None:
        mode, e = failures[-1]
        raise conversion_error("executorch", "torch.export + XNNPACK lowering", model, e) from e
    for failed_mode, e in failures:
        notes.append(f"executorch: {failed_mode} not usable ({first_line(e, 160)})")
    if failures:
        notes.append(f"executorch: exported with {mode} shapes")
    if time_dynamic:
        card.provenance.exporter += (f"; dynamic dims bounded: {'batch <= %d, ' % MAX_BATCH if batch_dynamic else ''}"
                                     f"frames <= {MAX_FRAMES}")

    def save(path: str, card_to_write: ModelCard) -> None:
        # The card is baked into the program: emit again with the new card (after the parity proof,
        # with the certificate). ``_config_methods`` holds the constant methods given to the lowering;
        # emitting mutates the edge program (a second to_executorch() fails on nn.LSTM: "Invalid node
        # spec"), so each emit works on a copy.
        fresh = copy.deepcopy(edge)
        fresh._config_methods = {**(fresh._config_methods or {}), CARD_METHOD: card_to_write.to_json()}
        with quiet():
            buffer = fresh.to_executorch().buffer
        with open(path, "wb") as f:
            f.write(buffer)

    return Artifact(card, save, notes)


def read_card(path) -> ModelCard:
    from executorch.runtime import Runtime

    path = os.fspath(path)
    try:
        program = Runtime.get().load_program(path)
    except Exception as e:  # the runtime raises RuntimeError/ValueError for unreadable files
        raise ModelFileError(f"{path!r} is not a readable ExecuTorch program ({first_line(e)})") from None
    if CARD_METHOD not in program.method_names:
        raise MissingCardError(f"{path!r} has no stateport model card (constant method {CARD_METHOD!r})")
    (text,) = program.load_method(CARD_METHOD).execute([])
    return ModelCard.from_json(text)


def write_card(path, card: ModelCard) -> None:
    from ...errors import UnsupportedError

    raise UnsupportedError("executorch: the card is a constant method baked into the program; it cannot be "
                           "rewritten without the exported program (re-export to get a new certificate)")


def make_runner(path, card: ModelCard, *, optimization: str | None = None):
    from ...verify.backend_runners import ExecuTorchRunner

    return ExecuTorchRunner(path, card)
