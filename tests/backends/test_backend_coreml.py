"""Core ML: converted on Linux and read back; the spec is checked against the card (no runtime here)."""

import pytest

from backend_helpers import causal_conv, lstm_ctc_tiny, requires
from stateport.export import export_torch_model

pytestmark = requires("coreml")


@pytest.fixture(scope="module")
def lstm_package(tmp_path_factory):
    model, prov = lstm_ctc_tiny()
    path = tmp_path_factory.mktemp("coreml") / "lstm.mlpackage"
    return str(path), export_torch_model(model, path, backend="coreml", provenance=prov)


def test_state_as_io_ports_matches_the_card(lstm_package):
    from stateport.export.backends import coreml

    path, result = lstm_package
    assert result.report.passed, result.report.to_text()
    assert result.report.backend == "coreml (spec only)"
    assert any("cannot predict on Linux" in n for n in result.report.notes)
    info = coreml.describe(path)
    assert [i["name"] for i in info["inputs"]] == result.card.input_names
    assert [o["name"] for o in info["outputs"]] == result.card.output_names
    features = info["inputs"][0]
    assert features["dtype"] == "FLOAT32" and features["shape"][2] == 80
    assert isinstance(features["shape"][0], list) and isinstance(features["shape"][1], list)  # batch, T flexible
    assert "lstm" in info["ops"]
    assert coreml.read_card(path).certificate["backend"] == "coreml (spec only)"


def test_spec_check_catches_a_card_that_does_not_fit(lstm_package):
    from stateport.export.backends import coreml

    path, result = lstm_package
    card = coreml.read_card(path)
    card.states[0].shape = [1, "batch", 64]  # the model's hidden size is 32
    report = coreml.check_file(path, card)
    assert not report.passed
    bad = [d for c in report.checks for d in c.diffs if d.problem]
    assert any(d.port == "encoder_h_in" and "card says 64" in d.problem for d in bad)


def test_core_ml_states_option(tmp_path):
    """State as ct.StateType (iOS 18): fp16 states named after the state, no state I/O ports."""
    from stateport.export.backends import coreml

    model, prov = causal_conv()
    path = tmp_path / "conv_state.mlpackage"
    result = export_torch_model(model, path, backend="coreml", provenance=prov, backend_options={"state": "coreml"})
    assert result.report.passed, result.report.to_text()
    info = coreml.describe(path)
    assert [i["name"] for i in info["inputs"]] == ["features"]
    assert [o["name"] for o in info["outputs"]] == ["logits"]
    assert [(s["name"], s["dtype"]) for s in info["states"]] == [("conv1_buf", "FLOAT16"), ("conv2_buf", "FLOAT16")]
    assert {"read_state", "write_state"} <= set(info["ops"])
    assert result.card.provenance.backend == "coreml-state"
    assert all(s.dtype == "float16" for s in result.card.states)


def test_running_core_ml_here_is_a_clear_unsupported_error(lstm_package):
    from stateport.errors import UnsupportedError
    from stateport.export.backends import coreml

    path, result = lstm_package
    with pytest.raises(UnsupportedError, match="macOS"):
        coreml.make_runner(path, result.card)


@pytest.mark.parametrize("state_mode", ["io", "coreml"])
def test_a_bool_state_crosses_as_float_zero_or_one(state_mode, tmp_path):
    """Core ML has no bool arrays. Measured before the fix: the built-in model's ``windows_started`` (bool)
    was converted to a FLOAT32 port while its card said bool, so the spec check failed the export."""
    import torch

    from stateport.export.backends import coreml
    from stateport.export.backends.common import flat_step
    from stateport.export.sources import build_model

    model, prov = build_model(arch="embedding-ctc", size="tiny")
    path = tmp_path / f"emb_{state_mode}.mlpackage"
    options = {"state": "coreml"} if state_mode == "coreml" else {}
    result = export_torch_model(model, path, backend="coreml", provenance=prov, seconds=2.0, backend_options=options)
    assert result.report.passed, result.report.to_text()
    started = next(s for s in result.card.states if s.name == "windows_started_in")
    assert started.dtype == ("float16" if state_mode == "coreml" else "float32") and started.init == 0.0
    assert "0 or 1" in started.description and coreml.read_card(path).states[-3].dtype == started.dtype
    if state_mode == "io":
        assert {p["name"]: p["dtype"] for p in coreml.describe(path)["inputs"]}["windows_started_in"] == "FLOAT32"
        # What coremltools converted: the step with the flag as float 0/1 gives the bool step's outputs.
        card, n_in = result.card, len(result.card.inputs)
        bools = [k for k, s in enumerate(model.state_decls()) if s.dtype == torch.bool]
        wrapped = coreml._BoolStatesAsFloat.build(flat_step(model, card), n_in, len(card.outputs), bools)
        x = torch.randn(1, 16, 32)
        state = model.init_state(1)
        with torch.no_grad():
            for _ in range(2):
                want = flat_step(model, card)(x, *state)
                got = wrapped(x, *(s.float() if s.dtype == torch.bool else s for s in state))
                assert all(torch.equal(w.float(), g.float()) for w, g in zip(want, got))
                state = list(want[len(card.outputs):])
