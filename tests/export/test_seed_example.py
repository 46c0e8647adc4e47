"""The seed article's StreamingLSTM, as printed, exports with the article's port names."""

import numpy as np
import onnxruntime as ort
import torch

from stateport.export import export_model

SEED = "examples/seed_streaming_lstm.py:model"


def test_seed_example_exports_with_article_port_names(tmp_path, monkeypatch):
    monkeypatch.chdir(__file__.rsplit("/tests/", 1)[0])
    path = tmp_path / "streaming_asr.onnx"
    result = export_model(path, module=SEED)
    assert result.report.passed, result.report.to_text()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = [i.name for i in sess.get_inputs()] + [i.name for i in sess.get_overridable_initializers()]
    assert inputs == ["audio_chunk", "h_in", "c_in"]
    assert [o.name for o in sess.get_outputs()] == ["logits", "h_out", "c_out"]
    assert [(s.name, s.output, s.shape) for s in result.card.states] == [
        ("h_in", "h_out", ["batch", 256]), ("c_in", "c_out", ["batch", 256])]

    # The client loop of the article's §8: pass h_out back into h_in, frame by frame.
    from stateport.export.sources import load_module_object

    model = load_module_object(SEED)
    h = np.zeros((1, 256), np.float32)
    c = np.zeros((1, 256), np.float32)
    th, tc = torch.zeros(1, 256), torch.zeros(1, 256)
    rng = np.random.default_rng(0)
    for _ in range(50):
        frame = rng.standard_normal((1, 80)).astype(np.float32)
        logits, h, c = sess.run(None, {"audio_chunk": frame, "h_in": h, "c_in": c})
        with torch.no_grad():
            ref, th, tc = model.inner(torch.from_numpy(frame), th, tc)
    assert np.abs(logits - ref.numpy()).max() < 1e-5
    assert np.abs(c - tc.numpy()).max() < 1e-5
