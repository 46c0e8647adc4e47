"""``rnnt``: a transducer exported as three certified graphs, decoded greedily by the runtime.

Parity of the pieces (each graph's proof: encoder streaming vs offline over audio, predictor
over token sequences with its state carried, joiner pair by pair), then of the whole: the
streaming transcript (ragged encoder chunks, predictor state carried by the decoder) equals
the offline transcript (encoder over the whole utterance in one call) and a torch greedy decode.
"""

import json
import os

import numpy as np
import pytest
import torch

from stateport.cli.main import main
from stateport.errors import InvalidInputError, ParityError
from stateport.export import export_model, verify_file
from stateport.export.backends.onnx_file import export_onnx
from stateport.runtime.transducer import StreamingTransducer, TransducerGraphs, transcribe
from stateport.verify.signals import synthetic_features
from stateport.zoo import get_architecture
from stateport.zoo.rnnt import TransducerPredictor

COVERED_ARCHITECTURES = ("rnnt",)  # see tests/zoo/test_architectures.py

PARITY_SECONDS = 60.0
TOLERANCE = 1e-4
KINDS = {"encoder": "transducer_encoder", "predictor": "transducer_predictor", "joiner": "transducer_joiner"}


@pytest.fixture(scope="module")
def tiny_rnnt(tmp_path_factory):
    out = tmp_path_factory.mktemp("rnnt") / "rnnt-tiny"
    return str(out), export_model(out, arch="rnnt", size="tiny", seconds=PARITY_SECONDS, tolerance=TOLERANCE)


@pytest.fixture(scope="module")
def graphs(tiny_rnnt):
    return TransducerGraphs.from_directory(tiny_rnnt[0])


@pytest.mark.parametrize("arch", COVERED_ARCHITECTURES)
def test_every_graph_passes_its_parity_proof(arch, tiny_rnnt):
    out, result = tiny_rnnt
    assert list(result.graphs) == ["encoder", "predictor", "joiner"] and result.passed
    assert sorted(os.listdir(out)) == ["encoder.onnx", "joiner.onnx", "predictor.onnx"]
    for name, one in result.graphs.items():
        report, card = one.report, one.card
        assert report.passed, report.to_text()
        assert report.seconds >= PARITY_SECONDS and report.max_abs_diff <= TOLERANCE
        assert card.certificate["passed"] and card.output.kind == KINDS[name]
        assert card.output.vocabulary[0] == "<blank>" and card.output.blank_id == 0
        assert (card.provenance.architecture, card.provenance.size, card.provenance.graph) == (arch, "tiny", name)
    checks = {n: {c.name for c in one.report.checks} for n, one in result.graphs.items()}
    # The encoder and the predictor stream: offline, smallest-step and ragged chunkings all proven
    # (the predictor's nominal step, one token, is its smallest).
    for name, smallest in (("encoder", "min-chunk 2"), ("predictor", "1-frame")):
        assert {"onnxruntime offline vs torch offline", f"onnxruntime stream [{smallest}] vs torch offline",
                "onnxruntime stream [ragged] vs torch offline", "onnxruntime step vs torch step"} <= checks[name]
    assert {"onnxruntime stream [1-frame] vs torch offline", "onnxruntime step vs torch step"} <= checks["joiner"]


def test_cards_describe_multi_input_and_integer_ports(tiny_rnnt):
    cards = {n: one.card for n, one in tiny_rnnt[1].graphs.items()}
    (tokens,) = cards["predictor"].inputs
    assert (tokens.name, tokens.dtype, tokens.shape, tokens.time_axis, tokens.value_range) == (
        "tokens", "int64", ["batch", "U"], 1, [0, 11])
    assert cards["predictor"].outputs[0].shape == ["batch", "U", 32]
    assert [s.name for s in cards["predictor"].states] == ["lstm_h_in", "lstm_c_in"]
    joiner = cards["joiner"]
    assert [(p.name, p.shape, p.dtype) for p in joiner.inputs] == [
        ("encoder_frame", ["batch", 32], "float32"), ("prediction", ["batch", 32], "float32")]
    assert joiner.states == [] and joiner.input_names == ["encoder_frame", "prediction"]
    enc = cards["encoder"]
    assert enc.outputs[0].shape == ["batch", "T_div_2", 32]
    assert (enc.streaming.frame_multiple, enc.streaming.subsampling) == (2, 2)
    assert enc.total_state_floats() == cards["predictor"].total_state_floats() == 2 * 32


def test_streaming_transcript_equals_offline_and_torch(graphs):
    x = synthetic_features(6000, 80, seed=11)  # 60 s
    offline = transcribe(graphs, x)

    stream = StreamingTransducer(graphs)
    enc_state = graphs.encoder.init_state(1)
    enc_chunks = []
    rng = np.random.default_rng(3)
    a = 0
    while a < x.shape[1]:
        n = min(2 * int(rng.integers(1, 40)), x.shape[1] - a)  # ragged, whole stacks of 2 frames
        stream.accept_features(x[0, a:a + n])
        outputs, enc_state = graphs.encoder.run(x[:, a:a + n], enc_state)
        enc_chunks.append(outputs["encoder_frames"])
        a += n
    streamed = stream.result()

    enc_offline = graphs.encoder.offline(x)["encoder_frames"]
    assert float(np.abs(np.concatenate(enc_chunks, axis=1) - enc_offline).max()) <= TOLERANCE
    # A meaningful transcript: many tokens of several kinds, and frames that emit nothing.
    frames = enc_offline.shape[1]
    assert len(offline.token_ids) > 20 and len(set(offline.token_ids)) >= 3
    assert len(set(offline.frame_indices)) < frames
    assert streamed.token_ids == offline.token_ids and streamed.frame_indices == offline.frame_indices
    assert streamed.text == offline.text

    model = get_architecture("rnnt").build("tiny")  # the weights the export was made from (seed 0)
    assert tuple(model.greedy_decode(torch.from_numpy(x))) == offline.token_ids


def test_sessions_check_multi_and_integer_inputs(graphs):
    predictor, joiner = graphs.predictor, graphs.joiner
    state = predictor.init_state(1)
    with pytest.raises(InvalidInputError, match="integer values"):
        predictor.run(np.zeros((1, 1), np.float32), state)
    with pytest.raises(InvalidInputError, match=r"values must lie in \[0, 11\)"):
        predictor.run(np.array([[11]], np.int64), state)
    out, _ = predictor.run({"tokens": np.array([[3, 4, 5]], np.int64)}, state)  # U is dynamic
    assert out["prediction"].shape == (1, 3, 32)
    enc, pred = np.zeros((2, 32), np.float32), np.zeros((2, 32), np.float32)
    with pytest.raises(InvalidInputError, match="pass a dict"):
        joiner.run(enc)
    with pytest.raises(InvalidInputError, match="missing prediction"):
        joiner.run({"encoder_frame": enc})
    with pytest.raises(InvalidInputError, match="same batch size"):
        joiner.run({"encoder_frame": enc, "prediction": pred[:1]})
    assert joiner.run({"encoder_frame": enc, "prediction": pred})[0]["logits"].shape == (2, 11)


class _StaleStatePredictor(TransducerPredictor):
    """A classic streaming bug: the step returns the state it was given instead of the new one."""

    def step(self, tokens, h, c):
        y, _, _ = self.lstm.step(self.embedding(tokens), h, c)
        return y, h + 0.0, c + 0.0


def test_the_predictor_proof_catches_a_state_not_carried(tmp_path):
    good = get_architecture("rnnt").build("tiny").predictor
    broken = _StaleStatePredictor(vocabulary=get_architecture("rnnt").build("tiny").vocabulary, embedding_dim=16,
                                  hidden_size=32)
    broken.load_state_dict(good.state_dict())
    path = str(tmp_path / "predictor.onnx")
    card = export_onnx(broken.eval(), path)
    with pytest.raises(ParityError) as info:
        verify_file(path, reference=good, seconds=5)
    failed = {c.name for c in info.value.report.failures}
    # One call over a whole token sequence is right; carrying state across calls is not.
    assert "onnxruntime offline vs torch offline" not in failed
    assert {"onnxruntime stream [1-frame] vs torch offline", "onnxruntime step vs torch step"} <= failed


def test_cli_exports_a_directory_and_verifies_one_graph(tmp_path, capsys):
    out = tmp_path / "rnnt"
    assert main(["export", "--arch", "rnnt", "--size", "tiny", "-o", str(out), "--seconds", "2", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert list(doc["graphs"]) == ["encoder", "predictor", "joiner"]
    assert all(g["parity"]["passed"] for g in doc["graphs"].values())
    assert main(["verify", str(out / "joiner.onnx"), "--seconds", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["passed"]
