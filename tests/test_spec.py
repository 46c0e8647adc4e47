import json

import pytest

from stateport.errors import CardError, PortNameError
from stateport.spec import (ModelCard, OutputSpec, Provenance, StatePort, StreamingSpec, TensorPort,
                            state_port_names)


def make_card(**over):
    kw = dict(
        name="m",
        inputs=[TensorPort("features", "input", ["batch", "T", 80], time_axis=1)],
        outputs=[TensorPort("logits", "output", ["batch", "T", 11], time_axis=1)],
        states=[StatePort("h_in", "h_out", [2, "batch", 64], batch_axis=1),
                StatePort("buf_in", "buf_out", ["batch", 80, 2], batch_axis=0, init=-1.5,
                          reset_on_end_of_speech=False)],
        streaming=StreamingSpec(sample_rate_hz=16000, frame_hop_samples=160, frames_per_step=16,
                                frames_advanced_per_step=16, frontend_window_samples=400),
        output=OutputSpec("ctc", "logits", ["<blank>"] + list("abcdefghij"), 0),
        provenance=Provenance(stateport_version="0", architecture="x"),
    )
    kw.update(over)
    return ModelCard(**kw)


def test_card_round_trips_through_json():
    card = make_card()
    again = ModelCard.from_json(card.to_json())
    assert again.to_dict() == card.to_dict()
    assert again.input_names == ["features", "h_in", "buf_in"]
    assert again.output_names == ["logits", "h_out", "buf_out"]
    roles = [p["role"] for p in json.loads(card.to_json())["ports"]]
    assert roles == ["input", "state", "state", "output"]


def test_state_shapes_and_sizes():
    card = make_card()
    assert card.state("h").concrete_shape(3) == (2, 3, 64)
    assert card.state("buf_out").concrete_shape(1) == (1, 80, 2)
    assert card.total_state_floats() == 2 * 64 + 80 * 2


def test_latency_counts_chunk_and_frontend_window():
    s = make_card().streaming
    # 16 frames of 10 ms, plus the 25 ms window's 15 ms beyond one hop.
    assert s.algorithmic_latency_ms == pytest.approx(175.0)


def test_naming_rule():
    assert state_port_names("cache_k_0") == ("cache_k_0_in", "cache_k_0_out")
    with pytest.raises(PortNameError, match="naming rule"):
        StatePort("h_in", "h_new", [1, "batch", 4], batch_axis=1)
    with pytest.raises(PortNameError, match="lowercase identifier"):
        TensorPort("Audio-Chunk", "input", ["batch", 80])


def test_port_name_clash_is_refused():
    with pytest.raises(PortNameError, match="used twice"):
        make_card(outputs=[TensorPort("h_out", "output", ["batch", "T", 11], time_axis=1)],
                  output=OutputSpec("ctc", "h_out", [], None))


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(schema="other/9"), "schema"),
    (lambda d: d.pop("streaming"), "required field 'streaming'"),
    (lambda d: d["ports"][1].update(batch_axis=7), "batch_axis 7 outside"),
    (lambda d: d["ports"][0].update(dtype="float64x"), "dtype"),
    (lambda d: d["ports"][0].update(role="weird"), "unknown role"),
])
def test_broken_cards_give_card_errors(mutate, message):
    d = make_card().to_dict()
    mutate(d)
    with pytest.raises(CardError, match=message):
        ModelCard.from_dict(d)


def test_card_that_is_not_json():
    with pytest.raises(CardError, match="not valid JSON"):
        ModelCard.from_json("{nope")
