"""TFLite / LiteRT: the flat step converted by litert-torch, the card in the flatbuffer's metadata.

- Signature ``serving_default`` whose inputs and outputs are named like the card's ports
  (litert-torch names signature inputs after the traced function's arguments and outputs
  after the keys of a returned dict, so the step is wrapped to take and return those names).
- The card is a flatbuffer ``Model.metadata`` entry named ``"stateport"`` whose buffer holds the
  JSON (the TFLite schema's slot for named metadata, next to ``min_runtime_version``); read it
  back with :func:`read_card` (``ai_edge_litert`` only, no torch).
- Static shapes only: batch 1 and exactly the nominal chunk. Measured with litert-torch 0.10 on
  torch 2.13: a dynamic time axis fails to lower a causal ``Conv1d`` ("inferred shape
  '[1, 16, 1, 0]' is incompatible"), and ``nn.LSTM`` is unrolled over the traced chunk
  (FULLY_CONNECTED + LOGISTIC/TANH per frame), which freezes the chunk length anyway.
- ``quantize="dynamic-int8"``: weights int8, activations float, quantised at run time
  (ai-edge-quantizer's ``dynamic_wi8_afp32`` recipe on the float flatbuffer).
"""

from __future__ import annotations

import os

import numpy as np

from ...errors import MissingCardError, ModelFileError
from ...spec import CARD_KEY, ModelCard
from .common import (Artifact, ExportSettings, conversion_error, example_args, flat_step, named_step, prepare, quiet,
                     trace_frames)

QUANTIZE_RECIPES = ("dynamic-int8",)
SIGNATURE = "serving_default"


def _versions() -> str:
    from importlib.metadata import version

    return f"litert-torch {version('litert-torch')}"


def convert(model, settings: ExportSettings) -> Artifact:
    """Convert ``model`` to a TFLite flatbuffer (static shapes); ``save`` writes it with the card."""
    settings.refuse("tflite", quantize=QUANTIZE_RECIPES)
    import litert_torch
    import torch

    quantize = settings.quantize
    notes = []
    if not settings.static:
        notes.append("tflite: exported with static shapes (batch 1, one nominal chunk): litert-torch cannot "
                     "keep a dynamic time axis for these layers (see stateport.export.backends.tflite)")
    model, card = prepare(model, settings, backend="tflite", exporter=_versions(), static=True)
    flat = flat_step(model, card)
    args = example_args(model, card, batch=1, frames=trace_frames(card))
    named = named_step(flat, card)
    try:
        with quiet(), torch.no_grad():
            edge = litert_torch.convert(named, sample_kwargs=dict(zip(card.input_names, args)))
            data = bytes(edge.model_content())
    except Exception as e:  # the converter raises many types; the first line names the op
        raise conversion_error("tflite", "litert-torch", model, e) from e
    if quantize == "dynamic-int8":
        data = _quantize_dynamic_int8(data)
        card.provenance.precision = "dynamic-int8"
        card.provenance.quantization = {"recipe": "dynamic_wi8_afp32", "tool": _quantizer_version(),
                                        "weights": "int8", "activations": "float32"}
    if any(p.dtype == "int64" for p in card.inputs):
        notes.append("tflite: int64 inputs are narrowed to int32 by the converter (the runner casts)")

    def save(path: str, card_to_write: ModelCard) -> None:
        with open(path, "wb") as f:
            f.write(with_metadata(data, CARD_KEY, card_to_write.to_json().encode()))

    return Artifact(card, save, notes)


def write_card(path, card: ModelCard) -> None:
    """Replace the card stored in the flatbuffer at ``path`` (a temporary the caller commits)."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(with_metadata(data, CARD_KEY, card.to_json().encode()))


def _quantizer_version() -> str:
    from importlib.metadata import version

    return f"ai-edge-quantizer {version('ai-edge-quantizer')}"


def _quantize_dynamic_int8(data: bytes) -> bytes:
    from ai_edge_quantizer import quantizer, recipe

    with quiet():
        q = quantizer.Quantizer(bytearray(data))
        q.load_quantization_recipe(recipe.dynamic_wi8_afp32())
        return bytes(q.quantize().quantized_model)


def with_metadata(data: bytes, key: str, value: bytes) -> bytes:
    """The flatbuffer ``data`` with the metadata entry ``key`` set to ``value`` (replacing an older one).

    Unpacks to the object API and packs again; the file identifier ``TFL3`` is kept.
    """
    import flatbuffers
    from ai_edge_litert import schema_py_generated as fb

    model = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(data, 0))
    # A buffer may live after the flatbuffer proper (``offset``/``size`` into the file: ai-edge-quantizer
    # writes them so). Packing again moves everything, so those bytes are inlined first; measured:
    # without this, lstm-ctc default quantised to dynamic-int8 failed to load ("Constant buffer 3
    # specified an out of range offset").
    for buf in model.buffers or []:
        if buf.offset and buf.offset > 1:
            buf.data = np.frombuffer(data[buf.offset: buf.offset + buf.size], dtype=np.uint8)
            buf.offset, buf.size = 0, 0
    buffer = fb.BufferT()
    buffer.data = np.frombuffer(value, dtype=np.uint8)
    model.buffers.append(buffer)
    entry = fb.MetadataT()
    entry.name = key
    entry.buffer = len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if _name(m.name) != key] + [entry]
    builder = flatbuffers.Builder(len(data) + len(value) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _name(n) -> str:
    return n.decode() if isinstance(n, bytes) else str(n)


def read_metadata(data: bytes) -> dict:
    """Every named metadata entry of a TFLite flatbuffer: name -> bytes."""
    from ai_edge_litert import schema_py_generated as fb

    model = fb.Model.GetRootAsModel(data, 0)
    out = {}
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        buf = model.Buffers(entry.Buffer())
        raw = buf.DataAsNumpy()
        out[_name(entry.Name())] = raw.tobytes() if isinstance(raw, np.ndarray) else b""
    return out


def read_card(path) -> ModelCard:
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
        meta = read_metadata(data)
    except (OSError, ValueError, IndexError, TypeError) as e:
        raise ModelFileError(f"{path!r} is not a readable TFLite flatbuffer ({type(e).__name__}: {e})") from None
    if CARD_KEY not in meta:
        raise MissingCardError(f"{path!r} has no stateport model card (flatbuffer metadata entry {CARD_KEY!r})")
    return ModelCard.from_json(meta[CARD_KEY].decode())


def make_runner(path, card: ModelCard, *, optimization: str | None = None):
    from ...verify.backend_runners import LiteRTRunner

    return LiteRTRunner(path, card)


def operator_names(data: bytes) -> list:
    """The builtin operator of every node of the main subgraph, in order (e.g. to see an unrolled LSTM)."""
    from ai_edge_litert import schema_py_generated as fb

    names = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
    model = fb.Model.GetRootAsModel(data, 0)
    sub = model.Subgraphs(0)
    out = []
    for i in range(sub.OperatorsLength()):
        code = model.OperatorCodes(sub.Operators(i).OpcodeIndex())
        out.append(names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM"))
    return out
