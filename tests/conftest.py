import pytest

import corpus

# Before any test module is imported: a machine without FSDD gets the recordings we ship (corpus.py).
FSDD_NOTE = corpus.install()


def pytest_report_header(config):
    return FSDD_NOTE


@pytest.fixture(scope="session")
def tiny_lstm_ctc(tmp_path_factory):
    """``stateport export --arch lstm-ctc --size tiny`` once per session: (path, ExportResult)."""
    from stateport.export import export_model

    path = tmp_path_factory.mktemp("export") / "lstm_ctc_tiny.onnx"
    result = export_model(path, arch="lstm-ctc", size="tiny")
    return str(path), result


@pytest.fixture(scope="session")
def audio_in_builtin(tmp_path_factory):
    """``stateport export --arch embedding-ctc --checkpoint ... --audio-input`` once per session, certified
    over 5 s (docs/browser.md has the 60 s proof): the path."""
    import os

    from stateport.export import export_model

    assets = os.path.join(os.path.dirname(__file__), "..", "stateport", "assets", "digits")
    path = tmp_path_factory.mktemp("audio_in") / "model.onnx"
    result = export_model(path, arch="embedding-ctc", checkpoint=os.path.join(assets, "checkpoint.pt"),
                          audio_input=True, seconds=5.0)
    assert result.report.passed
    return str(path)


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """Every test's torch steps are tiny: one intra-op thread (see stateport.verify.runners.one_torch_thread)."""
    from stateport.verify.runners import one_torch_thread

    with one_torch_thread():
        yield
