"""Models whose weights use a non-default memory layout (the built-in model's speech embedding keeps its conv
weights channels_last for eager speed) export to every backend: converters get contiguous tensors."""

import pytest
import torch

from backend_helpers import requires
from stateport.export import export_torch_model
from stateport.export.backends.common import contiguous_tensors
from stateport.export.sources import build_model


def _layouts(model) -> list:
    return [t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()
            for t in model.parameters() if t.dim() == 4]


def test_contiguous_tensors_lends_the_default_layout_and_gives_the_model_back_as_it_was():
    model, _ = build_model(arch="embedding-ctc", size="tiny")
    before = _layouts(model)
    values = [t.detach().clone() for t in model.parameters()]
    assert any(before)  # the embedding's convs are channels_last
    with contiguous_tensors(model):
        assert all(t.is_contiguous() for t in [*model.parameters(), *model.buffers()])
    assert _layouts(model) == before
    assert all(torch.equal(a, b) for a, b in zip(values, model.parameters()))


@pytest.mark.parametrize("backend", [pytest.param("tflite", marks=requires("tflite")),
                                     pytest.param("executorch", marks=requires("executorch"))])
def test_channels_last_weights_export_and_prove(backend, tmp_path):
    """Measured before: the built-in model's TFLite file computed wrong numbers (logits off by 12.5 from its
    9th conv on, failing its proof), and ExecuTorch's XNNPACK lowering refused it (ChannelsLastTaggedReshapePass)."""
    model, prov = build_model(arch="embedding-ctc", size="tiny")
    before = _layouts(model)
    suffix = {"tflite": "tflite", "executorch": "pte"}[backend]
    result = export_torch_model(model, tmp_path / f"emb.{suffix}", backend=backend, provenance=prov, seconds=2.0)
    assert result.report.passed, result.report.to_text()
    assert _layouts(model) == before  # the caller's model keeps its own layout
