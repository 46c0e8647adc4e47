"""ExecuTorch (.pte, XNNPACK): positional I/O in card order, the card as a constant method, parity."""

import pytest

from backend_helpers import PARITY_SECONDS, causal_conv, lstm_ctc_tiny, requires
from stateport.export.backends import read_backend_card
from stateport.export import export_torch_model

pytestmark = requires("executorch")


def test_lstm_ctc_static_streams_like_torch(tmp_path):
    """nn.LSTM specialises the time axis under torch.export, so the LSTM model is exported static.

    A 4-frame chunk: the LSTM is unrolled per frame, and lowering 16 frames costs ~4x the time.
    """
    model, prov = lstm_ctc_tiny()
    path = tmp_path / "lstm.pte"
    result = export_torch_model(model, path, backend="executorch", provenance=prov, static=True, chunk_frames=4,
                                 seconds=PARITY_SECONDS)
    assert result.report.passed, result.report.to_text()
    assert result.report.max_abs_diff <= 1e-4
    card = read_backend_card(path)  # the constant method get_stateport_card
    assert card.input_names == result.card.input_names and card.provenance.backend == "executorch"
    assert card.certificate["passed"]


def test_causal_conv_keeps_a_dynamic_time_axis(tmp_path):
    """Finding: XNNPACK refuses dynamic batch and time together; dynamic time with batch 1 lowers."""
    model, prov = causal_conv()
    result = export_torch_model(model, tmp_path / "conv.pte", backend="executorch", provenance=prov,
                                 seconds=PARITY_SECONDS)
    report = result.report
    assert report.passed, report.to_text()
    names = [c.name for c in report.checks]
    # The dynamic time axis is proven: 1-frame and ragged chunks, the offline call, 3 streams.
    assert "executorch stream [ragged] vs torch offline" in names
    assert "executorch offline vs torch offline" in names
    assert result.card.inputs[0].shape == [1, "T", 12]
    assert any("dynamic time, batch 1" in n for n in result.notes)


def test_a_file_without_the_card_method_is_refused(tmp_path):
    from stateport.errors import ModelFileError

    bad = tmp_path / "junk.pte"
    bad.write_bytes(b"not a program")
    with pytest.raises(ModelFileError):
        read_backend_card(bad)
