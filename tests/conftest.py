import pytest


@pytest.fixture(scope="session")
def tiny_lstm_ctc(tmp_path_factory):
    """``stateport export --arch lstm-ctc --size tiny`` once per session: (path, ExportResult)."""
    from stateport.export import export_model

    path = tmp_path_factory.mktemp("export") / "lstm_ctc_tiny.onnx"
    result = export_model(path, arch="lstm-ctc", size="tiny")
    return str(path), result


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """Measured on the 2-core CI box: 2 intra-op threads made small LSTM steps ~30x slower under load."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
