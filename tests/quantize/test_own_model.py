"""Quantizing models that are not the digit recogniser, with the user's own calibration audio and training loop;
calibration input checked where it enters."""

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from quantize_helpers import shipped_clips
from stateport.cli.main import main
from stateport.runtime.model_file import read_card

DOC = Path(__file__).resolve().parents[2] / "docs" / "quantization.md"


def _doc_example(name: str) -> str:
    text = DOC.read_text()
    m = re.search(rf"<!-- example: {name} -->\n```python\n(.*?)```", text, re.S)
    assert m, f"docs/quantization.md has no example {name!r}"
    return m.group(1)


def test_the_documented_qat_of_your_own_model_runs(tmp_path, monkeypatch, capsys):
    """docs/quantization.md's example word for word: a model of the user's, their float loop, their QAT
    step and their calibration features; the artifacts are proved and their cards say what they saw."""
    monkeypatch.chdir(tmp_path)
    scope: dict = {"__name__": "qat_own_model_example"}
    exec(compile(_doc_example("qat-own-model"), str(DOC), "exec"), scope)
    qat, static = scope["qat"], scope["static"]
    assert qat.passed and static.passed
    q = read_card(tmp_path / "tone.qat.onnx").provenance.quantization
    assert q["recipe"] == "qat-int8" and q["qat"]["replaced_modules"] == ["rnn.lstm", "head"]
    evaluation = q["qat"]["evaluation"]
    # The user's evaluate() ran on the float model and on the frozen fake-quant one (measured 0.79 -> 0.81).
    assert evaluation["float"]["dev_accuracy"] > 0.6 and evaluation["qat"]["dev_accuracy"] > 0.6
    assert q["qat"]["history"][-1]["step"] == 60 and "ToneQat" not in json.dumps(q["qat"]["task"])
    # The export check: an LSTM and a Linear quantized, so the QDQ file is within 1e-2 of its torch model.
    vs_torch = qat.checks["vs_torch_fake_quant"]
    assert vs_torch.passed and vs_torch.reference == "torch[qat-int8]"
    assert q["export_check"]["within_tolerance"] is True
    calib = read_card(tmp_path / "tone.int8.onnx").provenance.quantization["calibration"]
    assert calib == {"source": "caller's items", "kind": "features", "items": 8, "items_available": 8,
                     "seconds": 4.8, "streams": 2}
    # Features only: the model has no frontend, so the float deviation was measured on the calibration features.
    assert read_card(tmp_path / "tone.int8.onnx").provenance.quantization["float_deviation"]["measured_on"][
        "what"] == "the calibration data"


@pytest.fixture(scope="module")
def quartznet(tmp_path_factory):
    """A model that is not the digit recogniser (quartznet tiny, random weights), exported fp32."""
    from stateport.export import export_model

    path = tmp_path_factory.mktemp("quartznet") / "quartznet.onnx"
    export_model(path, arch="quartznet", size="tiny", seconds=2)
    return str(path)


def test_calib_dir_of_recordings_at_any_rate(quartznet, tmp_path, capsys):
    """`stateport quantize --calib DIR` for another architecture: recordings at 44.1 kHz stereo (FLAC) and
    22.05 kHz (WAV), a README beside them; the card records exactly that."""
    from stateport.runtime.audio import read_audio_file
    from stateport.runtime.resample import resample

    calib = tmp_path / "my recordings"
    calib.mkdir()
    for i, (rate, fmt) in enumerate([(44100, "FLAC"), (22050, "WAV"), (44100, "WAV")]):
        samples, src_rate = read_audio_file(os.path.join(shipped_clips(), f"digits_{i}.wav"))
        wave = resample(samples[:, 0], src_rate, rate)
        channels = np.stack([wave, 0.5 * wave], axis=1) if fmt == "FLAC" else wave
        sf.write(calib / f"take{i}.{fmt.lower()}", channels, rate, format=fmt)
    (calib / "README.txt").write_text("three takes of digit strings")
    out = tmp_path / "q.int8.onnx"
    code = main(["quantize", quartznet, "-o", str(out), "--recipe", "static-int8", "--calib", str(calib),
                 "--seconds", "2", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0, doc
    q = read_card(out).provenance.quantization
    c = q["calibration"]
    assert c["kind"] == "audio" and c["source"] == str(calib) and c["items"] == 3
    assert c["sample_rates_hz"] == [22050, 44100] and c["resampled_to_hz"] == 16000
    assert c["ignored_files"] == ["README.txt"] and 10 < c["seconds"] < 20
    assert read_card(out).certificate["passed"] and q["calibration_steps"] > 50


def _write(folder: Path, files: dict) -> Path:
    folder.mkdir()
    for name, content in files.items():
        if isinstance(content, np.ndarray):
            sf.write(folder / name, content, 16000)
        else:
            (folder / name).write_bytes(content)
    return folder


SPEECH = (0.1 * np.sin(np.linspace(0, 3000, 48000))).astype(np.float32)  # 3 s

BAD_CALIBRATION = {
    "missing folder": (None, "does not exist"),
    "a text file named .wav": ({"a.wav": SPEECH, "b.wav": b"this is not audio"}, "b.wav: cannot read audio file"),
    "an empty .wav": ({"a.wav": SPEECH, "c.wav": b""}, "c.wav: cannot read audio file"),
    "no recordings at all": ({"notes.txt": b"hello"}, "no recordings"),
    "shorter than a second": ({"a.wav": SPEECH[:8000]}, "0.50 s long (1 item(s)); at least 1 s"),
    "audio and features mixed": ({"a.wav": SPEECH, "f.npy": b""}, "mixes recordings (1) and .npy features (1)"),
}


@pytest.mark.parametrize("case", sorted(BAD_CALIBRATION))
def test_bad_calibration_is_a_typed_error_before_anything_is_written(case, tiny_lstm_ctc, tmp_path, capsys):
    files, expected = BAD_CALIBRATION[case]
    calib = tmp_path / "calib" if files is None else _write(tmp_path / "calib", files)
    out = tmp_path / "q.onnx"
    code = main(["quantize", tiny_lstm_ctc[0], "-o", str(out), "--recipe", "static-int8", "--calib", str(calib),
                 "--json"])
    error = json.loads(capsys.readouterr().out)["error"]
    assert code == 2 and error["code"] == "INVALID_CALIBRATION", error
    assert expected in error["message"] and "\n" not in error["message"]
    assert not out.exists() and not [f for f in os.listdir(tmp_path) if "tmp" in f]


@pytest.mark.parametrize("calib, expected", [
    ([np.zeros(16000, np.int16)], "int16 audio: divide by 32768"),
    ([np.full(16000, np.nan, np.float32)], "NaN or Inf"),
    ([np.zeros((100, 7), np.float32)], "features must be [T, 80]"),
    ([object()], "got object"),
    (np.zeros(16000, np.float32), "one waveform: pass [waveform]"),
])
def test_bad_calibration_items_in_python(calib, expected, tiny_lstm_ctc, tmp_path):
    from stateport.errors import CalibrationError
    from stateport.quantize import quantize_model

    with pytest.raises(CalibrationError) as e:
        quantize_model(tiny_lstm_ctc[0], tmp_path / "q.onnx", recipe="static-int8", calib=calib)
    assert expected in e.value.message
    assert not (tmp_path / "q.onnx").exists()


def test_qat_without_a_training_step_says_what_to_pass(tiny_lstm_ctc, tmp_path):
    from stateport.errors import InvalidInputError
    from stateport.quantize import quantize_model

    with pytest.raises(InvalidInputError, match=r"pass qat= \(an object with loss\(model, step\)"):
        quantize_model(tiny_lstm_ctc[0], tmp_path / "q.onnx", recipe="qat-int8-smoke")
    with pytest.raises(InvalidInputError, match="must return a scalar tensor"):
        quantize_model(tiny_lstm_ctc[0], tmp_path / "q.onnx", recipe="qat-int8-smoke", qat=lambda model, step: 1.0)
    assert not (tmp_path / "q.onnx").exists()


def test_quantize_never_imports_the_trainer():
    """stateport.quantize takes its data as inputs: importing every module of it loads no stateport.train."""
    import subprocess
    import sys

    code = ("import importlib, pkgutil, sys, stateport.quantize as q\n"
            "for m in pkgutil.walk_packages(q.__path__, 'stateport.quantize.'):\n"
            "    importlib.import_module(m.name)\n"
            "print(sorted(n for n in sys.modules if n.startswith('stateport.train')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_shipped_clips_calibrate_without_the_corpus(tiny_lstm_ctc, tmp_path):
    """The clips folder the package ships is a calibration folder like any other."""
    from stateport.quantize.calibration import calibration_streams

    copy = tmp_path / "clips"
    shutil.copytree(shipped_clips(), copy)
    streams, info = calibration_streams(read_card(tiny_lstm_ctc[0]), copy)
    clips = len([f for f in os.listdir(copy) if f.endswith(".wav")])  # 8: six strings with pauses, two connected
    assert info["items"] == clips == 8 and info["kind"] == "audio" and len(streams) == 2
