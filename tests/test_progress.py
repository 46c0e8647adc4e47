"""Progress on stderr, never stdout; silent for library users until enabled; other libraries' advice kept off."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys

import pytest

from stateport import progress
from stateport.cli.main import main


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture(autouse=True)
def _restore():
    yield
    progress.disable()


def test_silent_for_a_library_user(capsys):
    progress.step("a step")
    with progress.task("a task"):
        pass
    with progress.meter(3.0, desc="audio") as advance:
        advance(1.0)
    assert capsys.readouterr() == ("", "")


def test_enabled_steps_go_to_stderr_with_elapsed_seconds(capsys):
    import time

    progress.enable()
    progress.step("export lstm-ctc")
    with progress.task("prove parity"):
        time.sleep(1.3)  # longer than a task may stay silent
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert out == "" and len(lines) == 3
    assert lines[0].startswith("[") and lines[0].endswith("s] export lstm-ctc")
    # The start line is stamped with when the work started, not when it was printed.
    assert lines[1].startswith("[   0.0 s]") and lines[1].endswith("prove parity")
    assert lines[2].startswith("[   1.") and lines[2].endswith("prove parity done (1.3 s)")


def test_quick_task_and_quick_failure_say_nothing(capsys):
    """A refusal of bad input inside a task stays the one line on stderr: the task printed nothing."""
    progress.enable()
    with progress.task("export"):
        pass
    with pytest.raises(ValueError):
        with progress.task("export"):
            raise ValueError("bad")
    assert capsys.readouterr().err == ""


def test_terminal_gets_a_ticker_and_a_bar():
    term = FakeTerminal()
    progress.enable(term)
    with progress.task("slow work"):
        import time

        time.sleep(1.8)  # the start line at 1 s, then a tick every 0.5 s
    with progress.meter(10.0, desc="stream a.wav") as advance:
        for _ in range(10):
            advance(1.0)
    text = term.getvalue()
    assert "slow work\n\r\x1b[K  ... 2 s" in text and "\r\x1b[K[" in text and "slow work done" in text
    assert "stream a.wav:   0%" in text and "0/10 s" in text  # tqdm throttles the rest of a fast loop


def test_third_party_advice_is_kept_off_but_errors_are_not(capsys):
    progress.enable(steps=False)  # --quiet: no steps, but the routing stays
    progress.step("not shown")
    logging.getLogger("onnxruntime.quantization").warning("Please consider pre-processing")
    logging.warning("root advice")  # what ONNX Runtime's quantizer does: no basicConfig behind our back
    logging.getLogger("somelib").error("a real error")
    err = capsys.readouterr().err
    assert "not shown" not in err and "pre-processing" not in err and "root advice" not in err
    assert "somelib: ERROR: a real error" in err
    progress.disable()
    assert not any(isinstance(h, progress._Handler) for h in logging.getLogger().handlers)


def test_log_level_variable_shows_more(capsys, monkeypatch):
    monkeypatch.setenv(progress.LOG_LEVEL_ENV, "WARNING")
    progress.enable()
    logging.getLogger("somelib").warning("advice worth reading now")
    assert "somelib: WARNING: advice worth reading now" in capsys.readouterr().err


def test_json_keeps_stdout_one_document_and_progress_on_stderr(capsys):
    assert main(["list", "--table", "--arch", "lstm-ctc", "--seconds", "2", "--json"]) == 0
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert doc["table"][0]["name"] == "lstm-ctc"
    assert "lstm-ctc (tiny): export, 2 s parity proof, latency" in err
    assert main(["list", "--table", "--arch", "lstm-ctc", "--seconds", "2", "--json", "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_quantize_prints_no_library_warnings(tiny_lstm_ctc, tmp_path):
    """The 40 s quantize whose only output was ONNX Runtime's root-logger advice: now our steps only."""
    pytest.importorskip("torchao", reason="the quantize extra is not installed")
    from stateport.assets import calibration_dir

    proc = subprocess.run([sys.executable, "-m", "stateport.cli.main", "quantize", tiny_lstm_ctc[0], "-o",
                           str(tmp_path / "q.onnx"), "--recipe", "static-int8", "--calib", str(calibration_dir()),
                           "--seconds", "2"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines and all(line.startswith("[") for line in lines), lines
    assert "wrote " in proc.stdout
