"""``conformer``: chunked attention with a fixed-size key/value cache, proven streaming == offline.

The offline reference is the full-utterance forward with the chunked attention mask (each
frame sees its own chunk and ``L`` frames before it); the exported step graph must reproduce
it for any chunking aligned to the chunk size, and from one call over the whole utterance.
"""

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from stateport.errors import ChunkLengthError, InvalidInputError
from stateport.export import export_model
from stateport.export.backends.onnx_file import export_onnx
from stateport.nn import ChunkedSelfAttention
from stateport.runtime.session import OnnxStepSession
from stateport.verify import prove_parity
from stateport.verify.runners import OnnxRunner, TorchRunner
from stateport.verify.signals import synthetic_features
from stateport.zoo import get_architecture

COVERED_ARCHITECTURES = ("conformer",)  # see tests/zoo/test_architectures.py

PARITY_SECONDS = 60.0
TOLERANCE = 1e-4
TINY = get_architecture("conformer").config_for("tiny")
CHUNK_INPUT_FRAMES = TINY["chunk_encoder_frames"] * TINY["subsampling"]  # 4 encoder frames x 4 = 16


@pytest.fixture(scope="module")
def tiny_conformer(tmp_path_factory):
    path = tmp_path_factory.mktemp("conformer") / "conformer-tiny.onnx"
    return str(path), export_model(path, arch="conformer", size="tiny", seconds=PARITY_SECONDS, tolerance=TOLERANCE)


@pytest.mark.parametrize("arch", COVERED_ARCHITECTURES)
def test_tiny_export_passes_the_full_proof(arch, tiny_conformer):
    path, result = tiny_conformer
    report = result.report
    assert report.passed, report.to_text()
    assert report.seconds >= PARITY_SECONDS and report.max_abs_diff <= TOLERANCE
    names = {c.name for c in report.checks}
    # The ONNX offline mode is the step graph over the whole utterance from the zero state.
    assert "onnxruntime offline vs torch offline" in names
    # The nominal chunk is the smallest (one attention chunk): one chunking covers both.
    for chunking in (f"min-chunk {CHUNK_INPUT_FRAMES}", "ragged"):
        assert f"onnxruntime stream [{chunking}] vs torch offline" in names
        assert f"torch stream [{chunking}] vs torch offline" in names
    assert any("also the smallest" in n for n in report.notes)
    assert result.card.certificate["passed"]
    assert result.card.provenance.architecture == arch and result.card.provenance.size == "tiny"


def test_card_declares_fixed_size_caches_and_the_chunk_contract(tiny_conformer):
    _, result = tiny_conformer
    card = result.card
    shapes = {s.name: s.shape for s in card.states}
    L, D, K = TINY["left_context_encoder_frames"], TINY["d_model"], TINY["conv_kernel_size"]
    expected = {"subsample_convs_0_buf_in": ["batch", 80, 1], "subsample_convs_1_buf_in": ["batch", D, 1]}
    for i in range(TINY["num_layers"]):
        expected.update({f"blocks_{i}_attn_k_in": ["batch", L, D], f"blocks_{i}_attn_v_in": ["batch", L, D],
                         f"blocks_{i}_attn_valid_in": ["batch", 1],
                         f"blocks_{i}_conv_depthwise_buf_in": ["batch", D, K - 1]})
    assert shapes == expected
    # Only the batch axis is symbolic: an NPU compiler sees static cache shapes.
    assert all(isinstance(d, int) for s in card.states for i, d in enumerate(s.shape) if i != s.batch_axis)
    assert card.total_state_floats() == 80 + D + TINY["num_layers"] * (2 * L * D + 1 + D * (K - 1)) == 1394
    st = card.streaming
    assert (st.frames_per_step, st.frame_multiple, st.min_frames) == (CHUNK_INPUT_FRAMES,) * 3
    assert st.subsampling == 4 and st.lookahead_frames == 0
    assert st.algorithmic_latency_ms == pytest.approx(16 * 10 + 15)  # one chunk + the 25 ms window beyond a hop
    assert card.outputs[0].shape == ["batch", "T_div_4", 11]


def test_onnxruntime_alone_streams_and_counts_valid_frames(tiny_conformer):
    """Plain onnxruntime + the card: offline (features only) == ragged whole-chunk streaming."""
    path, _ = tiny_conformer
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    card = json.loads(sess.get_modelmeta().custom_metadata_map["stateport"])
    states = [p for p in card["ports"] if p["role"] == "state"]
    x = synthetic_features(2000, 80, seed=11)  # 20 s, a multiple of 16 frames
    (offline,) = sess.run(["logits"], {"features": x})

    state = {s["name"]: np.full([1 if d == "batch" else d for d in s["shape"]], s["init"], np.float32)
             for s in states}
    output_names = [o.name for o in sess.get_outputs()]
    rng = np.random.default_rng(5)
    outs, valid, a = [], [], 0
    while a < x.shape[1]:
        n = min(CHUNK_INPUT_FRAMES * int(rng.integers(1, 4)), x.shape[1] - a)
        named = dict(zip(output_names, sess.run(None, {"features": x[:, a:a + n], **state})))
        outs.append(named["logits"])
        state = {s["name"]: named[s["output"]] for s in states}
        valid.append(float(state["blocks_0_attn_valid_in"][0, 0]))
        a += n
    streamed = np.concatenate(outs, axis=1)
    assert offline.shape == (1, 500, 11)
    assert float(np.abs(streamed - offline).max()) <= TOLERANCE
    assert float(offline.std(axis=1).max()) > 100 * TOLERANCE  # the output moves with the input
    # The valid count grows by whole chunks from 0 and saturates at the cache size L.
    assert valid[0] in (4.0, 8.0) and valid[-1] == TINY["left_context_encoder_frames"]


def test_chunk_mask_is_the_documented_pattern():
    """C = 2, L = 3: the picture in stateport/nn/attention.py."""
    picture = ["##......", "##......", "####....", "####....", ".#####..", ".#####..", "...#####", "...#####"]
    mask = ChunkedSelfAttention.chunk_mask(8, 2, 3)
    assert ["".join("#" if v else "." for v in row) for row in mask.tolist()] == picture


def test_streaming_equals_the_chunk_masked_offline_forward_in_torch():
    layer = ChunkedSelfAttention(16, 2, chunk_frames=3, left_context_frames=5).eval()
    x = torch.randn(2, 3 * 11, 16)
    with torch.no_grad():
        offline = layer(x)
        state = layer.init_state(2)
        outs = []
        for a, n in zip([0, 3, 9, 18, 21], [3, 6, 9, 3, 12]):  # 1, 2, 3, 1, 4 chunks per call
            y, *state = layer.step(x[:, a:a + n], *state)
            outs.append(y)
        whole, *_ = layer.step(x, *layer.init_state(2))
    assert float((torch.cat(outs, 1) - offline).abs().max()) <= 1e-5
    assert float((whole - offline).abs().max()) <= 1e-5
    assert state[2].tolist() == [[5.0], [5.0]]  # valid frames saturate at L
    # The limit on the left context is real: more context gives another function.
    wider = ChunkedSelfAttention(16, 2, chunk_frames=3, left_context_frames=9).eval()
    wider.load_state_dict(layer.state_dict())
    with torch.no_grad():
        assert float((wider(x) - offline).abs().max()) > 1e-3


def test_a_step_with_another_chunk_size_fails_the_proof(tiny_conformer, tmp_path):
    """The chunk size is part of the model: a step graph built for C = 8 is not the C = 4 model,
    even driven with chunks the C = 4 card allows; the proof says where it diverges.

    A stream of one C = 4 chunk per call cannot tell them apart (either mask then shows each
    query the cache and the whole call), so it is the calls holding several chunks, ragged
    chunks and the whole-utterance offline call, that catch it.
    """
    _, result = tiny_conformer
    reference = get_architecture("conformer").build("tiny")
    wrong = get_architecture("conformer").build(config={**TINY, "chunk_encoder_frames": 8})
    assert all(torch.equal(a, b) for a, b in zip(reference.state_dict().values(), wrong.state_dict().values()))
    path = str(tmp_path / "wrong-chunk.onnx")
    export_onnx(wrong, path, chunk_frames=2 * CHUNK_INPUT_FRAMES)
    card = result.card
    report = prove_parity(TorchRunner(reference, card), OnnxRunner(path, card), card, seconds=10)
    assert not report.passed
    failed = {c.name for c in report.failures}
    assert {"onnxruntime offline vs torch offline", "onnxruntime stream [ragged] vs torch offline"} <= failed
    assert f"onnxruntime stream [min-chunk {CHUNK_INPUT_FRAMES}] vs torch offline" not in failed  # 1 chunk/call
    offline = next(c for c in report.checks if c.name == "onnxruntime offline vs torch offline")
    # With C = 8 the first frames already see 4 frames of the next (C = 4) chunk.
    assert offline.diffs[0].first_divergent_frame == 0 and offline.diffs[0].max_abs_diff > 1e-2
    assert "torch stream [ragged] vs torch offline" not in failed  # the reference itself is consistent


def test_chunks_must_be_whole_attention_chunks(tiny_conformer):
    path, _ = tiny_conformer
    session = OnnxStepSession(path)
    with pytest.raises(ChunkLengthError, match="multiple of 16"):
        session.run(np.zeros((1, 24, 80), np.float32), session.init_state(1))
    model = get_architecture("conformer").build("tiny")
    with pytest.raises(InvalidInputError, match="multiple of 16"):
        model.step(torch.zeros(1, 8, 80), *model.init_state(1))


def test_default_size_stays_edge_sized():
    model = get_architecture("conformer").build("default")
    assert 0 < sum(p.numel() for p in model.parameters()) < 5_000_000
    assert all(isinstance(d, int) for decl in model.state_decls() for d in decl.shape if d != "batch")
