"""``lstm-transducer``: icefall's LSTM transducer with a stateless decoder, exported as sherpa-onnx's folder.

Each graph's parity proof (the encoder streams with overlapping chunks: 4n + 7 frames in, n
out, 4n advanced), the sherpa-onnx metadata and tokens.txt beside the stateport cards, then the
whole: the streaming transcript (ragged chunks) equals the offline one and a plain torch
greedy search under sherpa-onnx's rules. Models that do not map to sherpa-onnx are refused with
a reason. (sherpa-onnx itself runs the folder in tests/export/test_sherpa_onnx.py.)
"""

import os

import numpy as np
import onnx
import pytest
import torch

from stateport.cli.main import main
from stateport.errors import UnsupportedError
from stateport.export import export_model, verify_file
from stateport.runtime import Recognizer
from stateport.runtime.transducer import StreamingTransducer, TransducerGraphs, transcribe
from stateport.runtime.frontend import FrontendConfig, compute_features
from stateport.zoo import get_architecture
from stream_helpers import shipped_speech

COVERED_ARCHITECTURES = ("lstm-transducer",)  # see tests/zoo/test_architectures.py

PARITY_SECONDS = 60.0
TOLERANCE = 1e-4
KINDS = {"encoder": "transducer_encoder", "decoder": "transducer_decoder", "joiner": "transducer_joiner"}


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    out = tmp_path_factory.mktemp("lstm-transducer") / "sherpa"
    return str(out), export_model(out, arch="lstm-transducer", size="tiny", backend="sherpa-onnx",
                                  seconds=PARITY_SECONDS, tolerance=TOLERANCE)


@pytest.fixture(scope="module")
def graphs(tiny_export):
    return TransducerGraphs.from_directory(tiny_export[0])


def _metadata(path: str) -> dict:
    return {p.key: p.value for p in onnx.load(path, load_external_data=False).metadata_props}


@pytest.mark.parametrize("arch", COVERED_ARCHITECTURES)
def test_every_graph_passes_its_parity_proof(arch, tiny_export):
    out, result = tiny_export
    assert list(result.graphs) == ["encoder", "decoder", "joiner"] and result.passed
    assert sorted(os.listdir(out)) == ["decoder.onnx", "encoder.onnx", "joiner.onnx", "tokens.txt"]
    for name, one in result.graphs.items():
        report, card = one.report, one.card
        assert report.passed, report.to_text()
        assert report.seconds >= PARITY_SECONDS - 0.1 and report.max_scaled_diff <= TOLERANCE
        assert card.certificate["passed"] and card.output.kind == KINDS[name]
        assert (card.provenance.architecture, card.provenance.graph, card.provenance.backend) == (
            arch, name, "sherpa-onnx")
    enc_checks = {c.name for c in result.graphs["encoder"].report.checks}
    # Overlapping chunks: every advance a multiple of 4 (the smallest, the nominal 32, ragged), each
    # step taking 7 frames of look-ahead; the whole utterance in one call; lock-step states.
    assert {"onnxruntime offline vs torch offline", "onnxruntime stream [min-chunk 4] vs torch offline",
            "onnxruntime stream [nominal] vs torch offline", "onnxruntime stream [ragged] vs torch offline",
            "onnxruntime step vs torch step", "onnxruntime stream, 3 streams batched"} <= enc_checks


def test_cards_and_sherpa_metadata_describe_the_same_graphs(tiny_export):
    out, result = tiny_export
    cards = {n: one.card for n, one in result.graphs.items()}
    st = cards["encoder"].streaming
    assert (st.frames_per_step, st.frames_advanced_per_step, st.lookahead_frames, st.subsampling,
            st.frame_multiple, st.min_frames) == (39, 32, 7, 4, 4, 11)
    assert cards["encoder"].frontend["snip_edges"] is False and cards["encoder"].frontend["input_scale"] == 1.0
    assert [s.name for s in cards["encoder"].states] == ["lstm_h_in", "lstm_c_in"]
    (context,) = cards["decoder"].inputs
    assert (context.name, context.dtype, context.shape, context.value_range) == ("context", "int64",
                                                                                 ["batch", 2], [-1, 11])
    assert cards["decoder"].states == [] and cards["decoder"].outputs[0].shape == ["batch", 48]
    assert [p.shape for p in cards["joiner"].inputs] == [["batch", 48], ["batch", 48]]
    assert _metadata(f"{out}/encoder.onnx") | {"stateport": ""} == {
        "model_type": "lstm", "version": "1", "model_author": "stateport", "T": "39", "decode_chunk_len": "32",
        "num_encoder_layers": "1", "d_model": "48", "rnn_hidden_size": "48", "stateport": ""}
    assert {k: v for k, v in _metadata(f"{out}/decoder.onnx").items() if k != "stateport"} == {
        "vocab_size": "11", "context_size": "2"}
    assert {k: v for k, v in _metadata(f"{out}/joiner.onnx").items() if k != "stateport"} == {"joiner_dim": "48"}
    with open(f"{out}/tokens.txt") as f:
        assert f.read().splitlines() == [f"{t} {i}" for i, t in enumerate(cards["decoder"].output.vocabulary)]
    # sherpa-onnx feeds the states by position among the graph's required inputs: no defaults.
    import onnxruntime as ort

    session = ort.InferenceSession(f"{out}/encoder.onnx", providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["features", "lstm_h_in", "lstm_c_in"]
    assert [o.name for o in session.get_outputs()] == ["encoder_out", "lstm_h_out", "lstm_c_out"]


def test_streaming_transcript_equals_offline_and_torch(graphs):
    config = FrontendConfig.from_dict(graphs.encoder.card.frontend)
    x = compute_features(shipped_speech(60.07), config)[None]  # 1500 encoder frames (+ 7 frames look-ahead)
    assert x.shape[1] == 6007
    offline = transcribe(graphs, x)
    stream = StreamingTransducer(graphs)
    rng = np.random.default_rng(3)
    a = 0
    while a + 7 < x.shape[1]:
        n = min(4 * int(rng.integers(1, 20)), x.shape[1] - 7 - a)  # advance: whole blocks of 4 frames
        stream.accept_features(x[0, a:a + n + 7])
        a += n
    streamed = stream.result()
    frames = 1500
    # A meaningful transcript: many tokens of several kinds, and frames that emit nothing.
    assert len(offline.token_ids) > 50 and len(set(offline.token_ids)) >= 3
    assert len(set(offline.frame_indices)) < frames
    assert streamed == offline
    # sherpa-onnx's rule: at most one token per encoder frame.
    assert len(set(offline.frame_indices)) == len(offline.frame_indices)
    model = get_architecture("lstm-transducer").build("tiny")  # the weights of the export (seed 0)
    assert tuple(model.greedy_decode(torch.from_numpy(x))) == offline.token_ids


def test_decoder_takes_the_minus_one_ids_before_the_first_token(graphs):
    out, _ = graphs.predictor.run({"context": np.array([[-1, 0], [-1, 3], [0, 3]], np.int64)})
    model = get_architecture("lstm-transducer").build("tiny")
    with torch.no_grad():
        (ref,) = model.decoder(torch.tensor([[-1, 0], [-1, 3], [0, 3]]))
        (zero,) = model.decoder(torch.tensor([[0, 0]]))
    assert np.abs(out["decoder_out"] - ref.numpy()).max() <= TOLERANCE
    # -1 is "no token" (a zero embedding), not token 0: [-1, 0] differs from [0, 0].
    assert np.abs(ref[0] - zero[0]).max() > 1e-3


def test_recognizer_opens_the_folder_and_batches(tiny_export):
    out, _ = tiny_export
    rec = Recognizer.from_file(out)
    assert rec.graphs.stateless and rec.graphs.context_size == 2
    rng = np.random.default_rng(0)
    audios = [(rng.standard_normal(16000 * (2 + k)) * 0.05).astype(np.float32) for k in range(3)]
    alone = [rec.transcribe(a, 16000) for a in audios]
    together = rec.transcribe_many([(a, 16000) for a in audios])
    assert [r.tokens for r in together] == [r.tokens for r in alone]
    assert sum(len(r.tokens) for r in alone) > 5


def test_verify_reproves_the_folder_and_keeps_sherpas_metadata(tiny_export, tmp_path):
    import shutil

    out = str(tmp_path / "copy")
    shutil.copytree(tiny_export[0], out)
    before = _metadata(f"{out}/encoder.onnx")
    report = verify_file(out, seconds=5, write_certificate=True)
    assert report.passed
    after = _metadata(f"{out}/encoder.onnx")
    assert {k: v for k, v in after.items() if k != "stateport"} == {k: v for k, v in before.items()
                                                                    if k != "stateport"}
    assert sorted(os.listdir(out)) == ["decoder.onnx", "encoder.onnx", "joiner.onnx", "tokens.txt"]


def test_models_that_do_not_map_are_refused_with_the_reason(tmp_path, capsys):
    with pytest.raises(UnsupportedError, match="predictor with its own recurrent state"):
        export_model(tmp_path / "a", arch="rnnt", size="tiny", backend="sherpa-onnx", verify=False)
    with pytest.raises(UnsupportedError, match="one graph with output kind 'classifier'"):
        export_model(tmp_path / "b", arch="dscnn-kws", size="tiny", backend="sherpa-onnx", verify=False)
    entry = get_architecture("lstm-transducer")
    model = entry.build("tiny")
    model.encoder.streaming.frontend = {**model.encoder.streaming.frontend, "input_scale": 32768.0,
                                        "high_freq_hz": 0.0}
    from stateport.export import export_torch_model

    with pytest.raises(UnsupportedError, match=r"input_scale: 32768.0 vs 1.0.*high_freq_hz|high_freq_hz.*input_scale"):
        export_torch_model(model, tmp_path / "c", backend="sherpa-onnx", verify=False)
    assert not any(tmp_path.iterdir())  # nothing written for a refusal
    code = main(["export", "--arch", "rnnt", "--size", "tiny", "--format", "sherpa-onnx", "-o", str(tmp_path / "d")])
    err = capsys.readouterr().err
    assert code == 2 and "error[" in err and "stateless" in err and "Traceback" not in err


def test_chunk_frames_is_the_chunk_sherpa_feeds(tmp_path):
    result = export_model(tmp_path / "m", arch="lstm-transducer", size="tiny", backend="sherpa-onnx",
                          chunk_frames=11, seconds=2)
    st = result.graphs["encoder"].card.streaming
    assert (st.frames_per_step, st.frames_advanced_per_step) == (11, 4)
    assert _metadata(str(tmp_path / "m" / "encoder.onnx"))["decode_chunk_len"] == "4"
    with pytest.raises(Exception, match=r"7 look-ahead frames plus a multiple of 4"):
        export_model(tmp_path / "n", arch="lstm-transducer", size="tiny", backend="sherpa-onnx", chunk_frames=12,
                     verify=False)
