"""``embedding-ctc``: the pretrained speech embedding reproduced, its frontend matched, streaming == offline.

The reference numbers in ``data/speech_embedding_reference.npz`` were computed once with
openWakeWord 0.5.1's own ``melspectrogram.onnx`` and ``embedding_model.onnx`` under
onnxruntime (not in CI: the wheel is not a dependency): the embeddings of three random
windows, and Google's log-mel and embeddings of one FSDD recording (george's "seven",
index 3) between 0.3 s of seeded noise.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from stateport.errors import InvalidInputError
from stateport.export import export_model
from stateport.runtime.frontend import compute_features
from stateport.zoo import get_architecture
from stateport.zoo.embedding_ctc import HOP_FRAMES, LOG_MEL_FLOOR, QUIET_FRAME
from stateport.zoo.speech_embedding import (SpeechEmbedding, frontend_config, google_log_mel,
                                            weights_from_onnx)

COVERED_ARCHITECTURES = ("embedding-ctc",)  # see tests/zoo/test_architectures.py

REFERENCE = np.load(Path(__file__).parent / "data" / "speech_embedding_reference.npz")
PARITY_SECONDS = 60.0
TOLERANCE = 1e-4
GOOGLE_WINDOW_OFFSET_SAMPLES = 56  # Google's 400-sample window sits 56 samples into its 512-sample frame


@pytest.fixture(scope="module")
def backbone():
    return SpeechEmbedding().load_pretrained().eval()


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    path = tmp_path_factory.mktemp("embedding_ctc") / "embedding-ctc-tiny.onnx"
    return str(path), export_model(path, arch="embedding-ctc", size="tiny", seconds=PARITY_SECONDS,
                                   tolerance=TOLERANCE)


def test_shipped_weights_reproduce_the_original_model(backbone):
    x = np.random.default_rng(0).normal(1.0, 1.5, (3, 76, 32)).astype(np.float32)
    with torch.no_grad():
        ours = backbone(torch.from_numpy(x)).numpy()
    ref = REFERENCE["random_windows_embedding"]
    # Measured: 1.9e-5 at values up to ~60 (float32 convolution order).
    assert np.abs(ours - ref).max() < 1e-3
    assert np.abs(ref).max() > 10  # not a comparison of near-zero numbers


def test_our_frontend_computes_googles_features_and_embeddings(backbone):
    """Runtime frontend (knf) + scale + torch backbone == openWakeWord's ONNX pipeline on real speech."""
    from stateport.train.fsdd import load_fsdd

    # 7_george_3.wav ships in tests/data/fsdd (with its attribution): no need for the whole corpus.
    (clip,) = load_fsdd(speakers=["george"], digits=[7], indices=[3],
                        data_dir=Path(__file__).resolve().parents[1] / "data" / "fsdd")
    offset = int(REFERENCE["fsdd_george_7_3_waveform_offset_samples"])
    seed = int(REFERENCE["fsdd_george_7_3_noise_seed"])
    w = np.random.default_rng(seed).normal(0, 0.003, 16000 + 2 * offset).astype(np.float32)
    w[offset:offset + len(clip.waveform)] += clip.waveform
    w = w[:2 * offset + len(clip.waveform)]
    ours = google_log_mel(torch.from_numpy(compute_features(w[GOOGLE_WINDOW_OFFSET_SAMPLES:], frontend_config())))
    ref = REFERENCE["fsdd_google_log_mel"]
    n = min(len(ref), ours.shape[0])
    assert n >= len(ref) - 1
    # Measured: agreement to float rounding (log-mel values 5-12 on this scale).
    assert np.abs(ours[:n].numpy() - ref[:n]).max() < 2e-3
    windows = torch.stack([ours[i:i + 76] for i in range(0, n - 75, 8)])
    with torch.no_grad():
        emb = backbone(windows).numpy()
    ref_emb = REFERENCE["fsdd_embedding"][:len(emb)]
    assert np.abs(emb - ref_emb).max() < 0.05 * np.abs(ref_emb).max()


def test_conversion_reads_a_speech_embedding_onnx_file_back(backbone, tmp_path):
    """weights_from_onnx on our own export of the backbone returns the weights it was given."""
    path = tmp_path / "embedding.onnx"
    torch.onnx.export(backbone, (torch.zeros(1, 76, 32),), str(path), dynamo=False, opset_version=17)
    weights = weights_from_onnx(str(path))
    state = backbone.state_dict()
    assert set(weights) == set(state)
    assert all(np.array_equal(weights[k], state[k].numpy()) for k in state)


def test_a_model_that_is_not_the_embedding_is_refused(tmp_path):
    path = tmp_path / "other.onnx"
    torch.onnx.export(torch.nn.Conv2d(1, 4, 3), (torch.zeros(1, 1, 8, 8),), str(path), dynamo=False)
    with pytest.raises(InvalidInputError, match="convs"):
        weights_from_onnx(str(path))


def test_the_backbone_is_frozen_and_the_head_trains():
    model = get_architecture("embedding-ctc").build("tiny").train()
    frozen = [p.requires_grad for p in model.windows.parameters()]
    assert frozen and not any(frozen)
    assert all(p.requires_grad for p in model.encoder.parameters())
    assert not model.windows.embedding.training  # frozen: stays in eval mode


def test_head_forward_of_the_frozen_prefix_equals_the_offline_forward():
    """What training fits (prefix in the data workers, head in the loop) is the exported function."""
    model = get_architecture("embedding-ctc").build("tiny").eval()
    x = torch.randn(2, 8 * 25, 32) - 3.0
    (offline,) = model(x)
    (split,) = model.head_forward(model.frozen_prefix(x))
    assert offline.shape == (2, 25, 11)
    assert (offline - split).abs().max() < 1e-5


def test_digital_silence_is_seen_at_the_floor():
    """Frames below the floor (digital silence: float epsilon, ln = -15.9) reach the embedding as
    the floor, and the state starts there; speech above it is untouched."""
    model = get_architecture("embedding-ctc").build("tiny").eval()
    speech = torch.full((1, 8 * 4, 32), 15.0) + torch.randn(1, 8 * 4, 32)
    silence_then_speech = torch.cat([torch.full((1, 8 * 3, 32), -15.9), speech], dim=1)
    floor_then_speech = torch.cat([torch.full((1, 8 * 3, 32), LOG_MEL_FLOOR), speech], dim=1)
    (a,) = model(silence_then_speech)
    (b,) = model(floor_then_speech)
    assert torch.equal(a, b)
    (c,) = model(torch.cat([torch.full((1, 8 * 3, 32), LOG_MEL_FLOOR + 0.5), speech], dim=1))
    assert (c - b).abs().max() > 1e-4  # above the floor, values still count
    assert QUIET_FRAME == LOG_MEL_FLOOR


def test_input_noise_acts_in_training_only():
    """The head's input regularisers change training-mode outputs and vanish in eval mode (export)."""
    config = {"hidden_size": 16, "num_layers": 1}
    plain = get_architecture("embedding-ctc").build(config=config, seed=3)
    noisy = get_architecture("embedding-ctc").build(config={**config, "input_noise": 0.5, "input_dropout": 0.1},
                                                    seed=3)
    noisy.load_state_dict(plain.state_dict())  # the regularisers hold no weights
    emb = plain.frozen_prefix(torch.randn(2, 8 * 6, 32) - 3.0)
    (a,) = plain.eval().head_forward(emb)
    (b,) = noisy.eval().head_forward(emb)
    assert torch.equal(a, b)
    (c,) = noisy.train().head_forward(emb)
    (d,) = noisy.train().head_forward(emb)
    assert (c - a).abs().max() > 1e-3 and (c - d).abs().max() > 1e-3  # fresh noise every call


def test_state_is_the_embeddings_contexts():
    """One state per conv that reaches back in time (its last 2 input frames) and a flag: the input frames start
    quiet (the card's init); the deeper contexts are taken from the graph's quiet ones until the flag is set."""
    model = get_architecture("embedding-ctc").build("tiny")
    decls = {d.name: d for d in model.state_decls()}
    windows = {name: d for name, d in decls.items() if name.startswith("windows_")}
    assert list(windows) == [f"windows_conv{i}" for i in range(0, 19, 2)] + ["windows_last", "windows_started"]
    assert windows["windows_conv0"].shape == ("batch", 1, 2, 32)
    assert windows["windows_conv0"].init == pytest.approx(float(google_log_mel(torch.tensor(QUIET_FRAME))))
    assert windows["windows_last"].shape == ("batch", 96, 2, 1)
    assert windows["windows_started"].dtype == torch.bool and windows["windows_started"].shape == ("batch", 1)
    contexts = [d for name, d in windows.items() if name != "windows_started"]
    assert sum(np.prod(d.shape[1:]) for d in contexts) == 9472  # 37 KB a stream
    assert model.streaming.subsampling == model.streaming.frame_multiple == HOP_FRAMES
    with pytest.raises(InvalidInputError, match="multiple of 8"):
        get_architecture("embedding-ctc").build(config={"hidden_size": 8, "num_layers": 1, "frames_per_step": 12})


@pytest.mark.parametrize("twin", ["float", "qat"])
def test_incremental_embeddings_equal_whole_windows(twin):
    """Streaming the embedding (contexts carried, ragged chunks of 8 k frames) gives the embeddings of the whole
    76-frame windows ending at every 8th frame, the first ones reaching back into quiet frames; the same for the
    quantization twin, which overrides the pieces the two computations share."""
    from stateport.quantize.qat_modules import freeze, make_qat_model

    model = get_architecture("embedding-ctc").build("tiny").eval()
    if twin == "qat":
        model, _ = make_qat_model(model)
        model.train()
        with torch.no_grad():
            model.windows.embedding(torch.randn(12, 76, 32) * 1.5 + 4.5)  # the observers see one batch
            freeze(model)
        model.eval()
    windows = model.windows
    x = torch.randn(2, 8 * 25, 32) * 2.0 + 1.0  # log-mel-like, some frames under the floor
    x[:, :30] = -20.0  # digital silence at the start: floored to the quiet frame
    with torch.no_grad():
        reference = windows.step_windows(x)
        state, parts, at = windows.init_state(2), [], 0
        for n in (8, 16, 8, 40, 24, 104):
            y, *state = windows.step(x[:, at:at + n], *state)
            parts.append(y)
            at += n
    streamed = torch.cat(parts, dim=1)
    assert streamed.shape == reference.shape == (2, 25, 96)
    scale = float(reference.abs().max())
    assert scale > 10  # not a comparison of near-zero numbers
    # Measured 6.9e-5 at values up to 53 (float32: the convolutions add in another order).
    assert float((streamed - reference).abs().max()) < 1e-5 * scale
    assert bool(state[-1].all())  # started: the deeper contexts are the stream's own now
    # After quiet frames the contexts are the graph's quiet ones: stepping from either gives the same.
    with torch.no_grad():
        _, *after_quiet = windows.step(torch.full((1, 16, 32), QUIET_FRAME), *windows.init_state(1))
        y_fresh, *_ = windows.step(x[:1, :16], *windows.init_state(1))
        y_quiet, *_ = windows.step(x[:1, :16], *after_quiet)
    assert float((y_fresh - y_quiet).abs().max()) < 1e-5 * scale


def test_quiet_contexts_follow_loaded_weights():
    """The quiet contexts are a function of the frozen weights, recomputed when a state dict is loaded
    (not saved with it)."""
    a = get_architecture("embedding-ctc").build("tiny", seed=1)
    b = get_architecture("embedding-ctc").build(config={"hidden_size": 32, "num_layers": 1, "pretrained": False},
                                                seed=2)
    assert not any(k.startswith("windows.quiet_context") for k in a.state_dict())
    differs = [float((p - q).abs().max()) for p, q in zip(a.windows.quiet_contexts(), b.windows.quiet_contexts())]
    assert max(differs) > 1e-3  # random weights: other quiet contexts
    b.load_state_dict(a.state_dict())
    for p, q in zip(a.windows.quiet_contexts(), b.windows.quiet_contexts()):
        assert torch.equal(p, q)


@pytest.mark.parametrize("arch", COVERED_ARCHITECTURES)
def test_tiny_export_passes_the_parity_proof(arch, tiny_export):
    _, result = tiny_export
    report = result.report
    assert report.passed, report.to_text()
    # States pass on |diff| <= tol * max(1, |value|): the untrained LSTM's cell state grows to
    # hundreds on the proof's signal, so its absolute differences exceed 1e-4; the logits may not.
    assert report.seconds >= PARITY_SECONDS and report.max_abs_diff_of(["logits"]) <= TOLERANCE
    names = {c.name for c in report.checks}
    for chunking in (f"min-chunk {HOP_FRAMES}", "nominal", "ragged"):
        assert f"onnxruntime stream [{chunking}] vs torch offline" in names
    card = result.card
    assert card.frontend["mel_filters"] == "slaney" and card.frontend["window"] == "hann-periodic"
    assert card.provenance.architecture == arch
