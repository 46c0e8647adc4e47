"""The backend table and its errors: unknown names, wrong suffixes, missing extras (no converter needed)."""

import importlib.util

import pytest

from stateport.cli.main import main
from stateport.errors import InvalidInputError, MissingDependencyError
from stateport.export import export_model
from stateport.export.backends import BACKENDS, get_backend
from stateport.export.backends.common import ExportSettings
from stateport.export.backends.registry import backend_for_path

EXTRA_BACKENDS = ("tflite", "coreml", "executorch", "openvino")


def _hide(monkeypatch, module: str):
    """Pretend ``module`` is not installed (find_spec says None), whatever is installed here."""
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name == module else real(name, *a, **k))


@pytest.mark.parametrize("backend", EXTRA_BACKENDS)
def test_missing_extra_names_the_pip_command(monkeypatch, backend):
    spec = get_backend(backend)
    _hide(monkeypatch, spec.export_deps[0][0])
    with pytest.raises(MissingDependencyError) as e:
        spec.require("export")
    assert f"pip install 'stateport[{backend}]'" in e.value.message
    assert e.value.code == "MISSING_DEPENDENCY"


def test_export_model_checks_the_extra_before_converting(monkeypatch, tmp_path):
    _hide(monkeypatch, "litert_torch")
    with pytest.raises(MissingDependencyError, match=r"stateport\[tflite\]"):
        export_model(tmp_path / "m.tflite", arch="lstm-ctc", size="tiny", backend="tflite")
    assert not (tmp_path / "m.tflite").exists()


def test_cli_reports_a_missing_extra_without_a_trace(monkeypatch, tmp_path, capsys):
    _hide(monkeypatch, "openvino")
    code = main(["export", "--arch", "lstm-ctc", "--size", "tiny", "--backend", "openvino",
                 "-o", str(tmp_path / "m.xml")])
    err = capsys.readouterr().err
    assert code == 2
    assert "error[MISSING_DEPENDENCY]" in err and "stateport[openvino]" in err and "Traceback" not in err


def test_unknown_backend_and_wrong_suffix_are_user_errors(tmp_path):
    with pytest.raises(InvalidInputError, match="unknown backend 'tensorrt'"):
        get_backend("tensorrt")
    with pytest.raises(InvalidInputError, match=r"writes a \.pte file"):
        export_model(tmp_path / "m.onnx", arch="lstm-ctc", size="tiny", backend="executorch", verify=False)


def test_options_are_refused_where_a_backend_takes_none():
    with pytest.raises(InvalidInputError, match="unknown option"):
        ExportSettings(options={"state": "coreml"}).refuse("tflite")
    ExportSettings(options={"state": "coreml"}).refuse("coreml", options=("state",))  # where it is one


def test_every_backend_has_a_distinct_suffix():
    # A runtime's folder layout (sherpa-onnx) writes another backend's files: the suffix tells formats apart.
    suffixes = [b.suffix for b in BACKENDS.values() if b.layout_of is None]
    assert len(set(suffixes)) == len(suffixes)
    assert all(BACKENDS[b.layout_of].suffix == b.suffix for b in BACKENDS.values() if b.layout_of)
    assert backend_for_path("model/encoder.onnx").name == "onnx"
    assert backend_for_path("a/b/model.mlpackage/").name == "coreml"
    assert backend_for_path("x.tflite").name == "tflite"
