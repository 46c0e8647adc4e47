"""Card fields for third-party models: side-input roles, batch-uniform and valid-length states,
chunk_exact, bound constants. Optional, so cards written before them still parse."""

import pytest

from stateport.errors import CardError
from stateport.spec import ModelCard, OutputSpec, Provenance, StatePort, StreamingSpec, TensorPort


def card(**kw):
    parts = dict(
        name="m",
        inputs=[TensorPort("x", "input", ["batch", "T", 8], time_axis=1),
                TensorPort("offset", "input", ["batch"], "int64", side_role="stream_offset")],
        outputs=[TensorPort("y", "output", ["batch", "T", 8], time_axis=1)],
        states=[StatePort("ctx_in", "ctx_out", ["batch", 16, 8], 0, valid_length_state="ctx_valid", grow_axis=1),
                StatePort("ctx_valid_in", "ctx_valid_out", ["batch"], 0, "int64", batch_uniform=True)],
        streaming=StreamingSpec(16000, 160, 8, 8, chunk_exact=True),
        output=OutputSpec(), provenance=Provenance("0.1.0", "custom"), constants={"sr": 16000})
    parts.update(kw)
    return ModelCard(**parts)


def test_new_fields_round_trip():
    c = ModelCard.from_json(card().to_json())
    assert c.inputs[1].side_role == "stream_offset" and c.constants == {"sr": 16000}
    assert c.states[0].valid_length_state == "ctx_valid" and c.states[0].grow_axis == 1
    assert c.states[1].batch_uniform and c.streaming.chunk_exact


def test_a_card_without_them_still_parses():
    d = card().to_dict()
    del d["constants"]
    for p in d["ports"]:
        for k in ("side_role", "batch_uniform", "valid_length_state", "grow_axis"):
            p.pop(k, None)
    d["ports"] = [p for p in d["ports"] if p["name"] not in ("offset", "ctx_valid_in")]
    del d["streaming"]["chunk_exact"]
    c = ModelCard.from_dict(d)
    assert c.constants is None and not c.streaming.chunk_exact and c.states[0].valid_length_state is None


def test_chunk_exact_refuses_a_longer_chunk():
    st = StreamingSpec(16000, 160, 8, 8, chunk_exact=True)
    assert st.check_chunk_frames(8) is None and st.check_chunk_frames(5) is None
    assert "exactly 8 frames" in st.check_chunk_frames(16)


@pytest.mark.parametrize("bad, message", [
    (lambda: dict(outputs=[TensorPort("y", "output", ["batch"], "int64", side_role="chunk_length")]),
     "only an input can have a side_role"),
    (lambda: dict(inputs=[TensorPort("x", "input", ["batch", "T", 8], time_axis=1),
                          TensorPort("n", "input", ["batch"], "int64", side_role="frames")]), "is not one of"),
    (lambda: dict(inputs=[TensorPort("x", "input", ["batch", "T", 8], time_axis=1),
                          TensorPort("n", "input", ["batch", 2], "int64", side_role="chunk_length")]),
     r"integer \[batch\]"),
    (lambda: dict(states=[StatePort("ctx_in", "ctx_out", ["batch", 16, 8], 0, valid_length_state="nope",
                                    grow_axis=1)]), "not a state of this model"),
    (lambda: dict(states=[StatePort("ctx_in", "ctx_out", ["batch", 16, 8], 0, grow_axis=1)]), "go together"),
])
def test_contradictions_are_refused(bad, message):
    with pytest.raises(CardError, match=message):
        card(**bad())


def test_inspect_shows_them(tmp_path):
    """`stateport inspect` says what a client must feed and keep: side inputs, growing and batch-uniform states,
    bound constants, chunk-exact stepping."""
    from stateport.cli.inspect_cmd import render

    f = tmp_path / "m.onnx"
    f.write_bytes(b"0" * 2048)
    text = render(card(), str(f))
    assert "side: stream_offset" in text and "offset: the client feeds the frames advanced before each step" in text
    assert "ctx_in: fixed-size buffer growing along axis 1; its valid length is ctx_valid" in text
    assert "ctx_valid_in: one value for the whole batch" in text
    assert "bound at export (the graph holds only for these): sr=16000" in text and "chunk-exact" in text
    plain = render(card(constants=None, streaming=StreamingSpec(16000, 160, 8, 8)), str(f))
    assert "bound at export" not in plain and "chunk-exact" not in plain
