"""The built-in model's feature options on every CTC architecture: a telephone band
(``high_freq_hz``) and online mean normalisation (``online_cmn_frames``), so a recipe can be
compared across architectures. The normaliser's float64 states come first on the card and
the full parity proof holds; an option an architecture does not take is a typed error."""

import pytest
import torch

from stateport.errors import InvalidInputError
from stateport.export import export_model
from stateport.zoo import get_architecture

OPTIONS = {"input_dim": 40, "high_freq_hz": 3800.0, "online_cmn_frames": 100.0}


@pytest.mark.parametrize("arch", ["quartznet", "conformer"])
def test_band_and_online_cmn_export_with_the_proof(arch, tmp_path):
    entry = get_architecture(arch)
    config = {**entry.config_for("tiny"), **OPTIONS}
    model = entry.build(config=config, seed=2)
    torch.save({"architecture": arch, "config": config, "state_dict": model.state_dict()}, tmp_path / "ck.pt")
    result = export_model(tmp_path / "m.onnx", arch=arch, checkpoint=str(tmp_path / "ck.pt"), seconds=20.0)
    assert result.report.passed, result.report.to_text()
    assert result.report.max_scaled_diff <= 1e-4
    card = result.card
    assert card.frontend["num_mel_bins"] == 40 and card.frontend["high_freq_hz"] == 3800.0
    names = [s.name for s in card.states]
    assert names[:2] == ["cmn_mean_in", "cmn_count_in"] and len(names) > 2
    resets = {s.name: s.reset_on_end_of_speech for s in card.states}
    assert resets["cmn_mean_in"] is False and resets["cmn_count_in"] is False
    assert all(resets[n] for n in names[2:])
    # The normaliser really acts: once the running mean has caught up (16 s), a constant offset
    # on every feature moves the output far less than it moves the same weights without it
    # (measured: 0.13x for quartznet, 0.11x for conformer).
    x = torch.randn(1, 1600, 40)

    def offset_effect() -> float:
        with torch.no_grad():
            return float((model(x)[0][:, -20:] - model(x + 2.0)[0][:, -20:]).abs().max())

    with_cmn = offset_effect()
    model.cmn = None
    assert with_cmn < 0.3 * offset_effect()


def test_an_option_the_architecture_lacks_is_a_typed_error():
    entry = get_architecture("conformer")
    with pytest.raises(InvalidInputError, match="no option.*subsampling_typo.*it takes"):
        entry.build(config={**entry.config_for("tiny"), "subsampling_typo": 3})
