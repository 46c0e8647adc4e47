"""The ONNX-Runtime-only snippet (docs/onnxruntime-only.md, linked from the README): quoted verbatim from
examples/onnxruntime_only.py, and right.

"Right" means streaming equals offline (within the parity proof's scaled tolerance) on the
shipped built-in model and on tiny exports, including a ``--static`` one and a model whose chunk
lengths must be multiples of 16 frames; and the same code with zero-filled states (what the README
used to show) is measurably wrong on the built-in model, so this test can fail.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "onnxruntime_only.py"
BUILTIN = ROOT / "stateport" / "assets" / "digits" / "model.onnx"
CLIPS = ROOT / "stateport" / "assets" / "digits" / "clips"
TOLERANCE = 1e-4  # the parity proof's default: |diff| <= tolerance * max(1, |reference|)


@pytest.fixture(scope="module")
def example():
    import onnxruntime as ort

    ort.set_default_logger_severity(3)  # state inputs double as initializers by design
    spec = importlib.util.spec_from_file_location("onnxruntime_only", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def quoted_block() -> str:
    """The lines between the example's quote markers, dedented."""
    text = EXAMPLE.read_text()
    match = re.search(r"# --- quoted in docs/onnxruntime-only.md: begin\n(.*?)\n[ ]*# --- quoted in docs/onnxruntime-only.md: end",
                      text, re.S)
    assert match, "examples/onnxruntime_only.py lost its quote markers"
    return textwrap.dedent(match.group(1))


DOC = ROOT / "docs" / "onnxruntime-only.md"


def readme_python_blocks() -> list[str]:
    """The Python blocks of the page that quotes the example (the README links it)."""
    assert "docs/onnxruntime-only.md" in (ROOT / "README.md").read_text(), "the README must link the snippet's page"
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)


def clip(example, index: int) -> np.ndarray:
    samples, rate_hz = example.read_wav(str(CLIPS / f"digits_{index}.wav"))
    assert rate_hz == 16000
    return samples


def assert_parity(streamed: np.ndarray, offline: np.ndarray) -> None:
    assert streamed.shape == offline.shape
    bound = TOLERANCE * np.maximum(1.0, np.abs(offline))
    worst = float(np.max(np.abs(streamed - offline) - bound))
    assert worst <= 0.0, f"streamed vs offline exceeds the scaled tolerance by {worst:.3g}"


def test_readme_quotes_the_example_verbatim():
    block = quoted_block()
    assert any(block.strip() in b for b in readme_python_blocks()), \
        "docs/onnxruntime-only.md must quote the lines between the markers of examples/onnxruntime_only.py verbatim"


@pytest.mark.parametrize("index", [3, 4])
def test_builtin_model_streams_like_offline(example, index):
    offline, streamed = example.run(str(BUILTIN), clip(example, index))
    assert offline is not None and streamed.shape[0] > 30  # 80 ms per output frame, seconds of audio
    assert_parity(streamed, offline)


def test_zero_states_are_wrong_on_the_builtin_model(example):
    """The same code with states filled with zeros (what the README showed before): the embedding's
    window buffer starts at 0 instead of its card's quiet frame (ln 10), and the logits move by far
    more than rounding (0.9-2.0 over the six demo clips)."""
    block = quoted_block()
    assert 's["init"]' in block
    zero_block = block.replace('s["init"]', "0.0")
    namespace = {"np": np, "json": __import__("json"), "ort": __import__("onnxruntime"),
                 "features": example.features, "model": str(BUILTIN), "samples": clip(example, 4)}
    exec(compile(zero_block, "readme-snippet-with-zero-states", "exec"), namespace)
    assert float(np.max(np.abs(namespace["streamed"] - namespace["offline"]))) > 0.5


def test_tiny_lstm_ctc_streams_like_offline(example, tiny_lstm_ctc):
    offline, streamed = example.run(tiny_lstm_ctc[0], clip(example, 0))
    assert_parity(streamed, offline)


def test_static_export_streams_like_the_dynamic_offline(example, tiny_lstm_ctc, tmp_path):
    """A --static export takes exactly frames_per_step frames: the snippet pads the last chunk;
    its stream equals the dynamic export's offline run (same architecture, size and seed)."""
    from stateport.export import export_model

    static = tmp_path / "lstm_ctc_static.onnx"
    export_model(static, arch="lstm-ctc", size="tiny", static=True, seconds=5)
    samples = clip(example, 1)
    none, streamed = example.run(str(static), samples)
    offline, _ = example.run(tiny_lstm_ctc[0], samples)
    assert none is None
    assert_parity(streamed, offline)


def test_chunk_multiple_model_streams_like_offline(example, tmp_path):
    """The conformer takes chunks in multiples of 16 frames and subsamples by 4."""
    from stateport.export import export_model

    path = tmp_path / "conformer_tiny.onnx"
    export_model(path, arch="conformer", size="tiny", seconds=5)
    offline, streamed = example.run(str(path), clip(example, 2))
    assert_parity(streamed, offline)


def test_example_runs_as_a_script():
    result = subprocess.run([sys.executable, str(EXAMPLE), str(BUILTIN), str(CLIPS / "digits_0.wav")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    diff = float(re.search(r"max \|streamed - offline\| = (\S+)", result.stdout).group(1))
    assert diff <= TOLERANCE * 20  # logits reach about 15 on this model
    assert "onnxruntime" not in result.stderr  # no leaked runtime warnings
