"""Every class of bad input gets a typed one-line error and exit 2, through the CLI and the Python API.

One test per class, parametrised over its cases. The CLI runs in-process (``main([...])``: the
same parser, verbs and error handling as the console script; anything but a StateportError would
escape as an exception and fail the test), except where the process itself is what is tested
(SIGPIPE). Each case asserts the exit status, the error code and that stderr is that one line.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from stateport.cli.main import SIGPIPE_EXIT_STATUS, main
from stateport.errors import StateportError


def cli_error(capsys, *argv) -> tuple[int, str, str]:
    """Run ``stateport ARGV --quiet``; (exit status, error code, message) of its one-line error."""
    capsys.readouterr()
    status = main([*argv, "--quiet"])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert lines, f"exit {status} without an error line"
    found = re.fullmatch(r"error\[(\w+)\]: (.+)", lines[-1])
    assert found and len(lines) == 1, f"expected one error[CODE] line on stderr, got: {err!r}"
    return status, found.group(1), found.group(2)


def assert_cli_error(capsys, argv, codes, *, contains: str | None = None) -> str:
    status, code, message = cli_error(capsys, *argv)
    assert (status, code) in {(2, c) for c in codes}, (status, code, message)
    if contains is not None:
        assert contains in message, message
    return message


def assert_api_error(call, codes, *, contains: str | None = None) -> StateportError:
    with pytest.raises(StateportError) as raised:
        call()
    assert raised.value.code in codes and raised.value.exit_code == 2, (raised.value.code, raised.value.message)
    assert "\n" not in raised.value.message
    if contains is not None:
        assert contains in raised.value.message, raised.value.message
    return raised.value


# --------------------------------------------------------------------------------------------------
# The inputs: made once per module from the session's tiny lstm-ctc export.

def _rewrite_card(src: str, dst: str, change) -> str:
    import onnx

    proto = onnx.load(src)
    for prop in proto.metadata_props:
        if prop.key == "stateport":
            card = json.loads(prop.value)
            change(card)
            prop.value = json.dumps(card)
    onnx.save(proto, dst)
    return dst


def _first_state(card: dict) -> dict:
    return next(p for p in card["ports"] if p["role"] == "state")


@pytest.fixture(scope="module")
def files(tiny_lstm_ctc, tmp_path_factory) -> dict:
    """name -> path of every bad (and the one good) input below."""
    import torch

    good, _ = tiny_lstm_ctc
    d = tmp_path_factory.mktemp("bad_input")
    f = {"good": good, "dir": str(d)}

    def state_shape(card):
        _first_state(card)["shape"][-1] += 7

    def state_dtype(card):
        _first_state(card)["dtype"] = "float16"

    def failed(card):
        card["certificate"]["passed"] = False

    def uncertified(card):
        card["certificate"] = None

    for name, change in (("state_shape", state_shape), ("state_dtype", state_dtype), ("failed_certificate", failed),
                         ("no_certificate", uncertified)):
        f[name] = _rewrite_card(good, str(d / f"{name}.onnx"), change)

    rng = np.random.default_rng(0)
    speech = (0.1 * rng.standard_normal(16000)).astype(np.float32)
    for name, samples, rate, subtype in (("ok", speech, 16000, None), ("rate_100", speech, 100, None),
                                         ("rate_1", speech[:50], 1, None), ("rate_1MHz", speech, 1_000_000, None),
                                         ("unscaled_int16", speech * 32768, 16000, "FLOAT"),
                                         ("zero_samples", speech[:0], 16000, None)):
        f[name] = str(d / f"{name}.wav")
        sf.write(f[name], samples, rate, subtype=subtype)
    (d / "text.wav").write_text("not audio")
    (d / "empty.wav").write_bytes(b"")
    (d / "a_folder").mkdir()
    f.update(text_wav=str(d / "text.wav"), empty_wav=str(d / "empty.wav"), folder=str(d / "a_folder"))

    modules = {
        "syntax": "import torch\n\ndef broken(:\n    pass\n",
        "raises": "import torch\n\nx = 1\nraise RuntimeError('boom at import')\n",
        "missing_import": "import not_a_package_stateport_knows\n",
        "function": "def model(features, state):\n    return features\n",
        "builder_raises": "def model():\n    return make()\n\n\ndef make():\n    raise ValueError('no weights')\n",
    }
    for name, text in modules.items():
        (d / f"mod_{name}.py").write_text(text)
    (d / "mod_text.txt").write_text("model = 1\n")

    torch.save([1, 2, 3], d / "list.pt")
    torch.save({"epoch": 3}, d / "no_weights.pt")
    torch.save({"state_dict": {"w": torch.zeros(3)}}, d / "other_weights.pt")
    torch.save(torch.nn.Linear(2, 2), d / "pickled_module.pt")
    (d / "text.pt").write_text("not a checkpoint")
    (d / "empty.pt").write_bytes(b"")
    from stateport.zoo import get_architecture

    conformer = get_architecture("conformer")
    cfg = conformer.config_for("tiny")
    torch.save({"architecture": "conformer", "config": cfg, "state_dict": conformer.build(config=cfg).state_dict()},
               d / "conformer.pt")

    cal = d / "calib_unreadable"
    cal.mkdir()
    (cal / "a.wav").write_text("x")
    (cal / "b.wav").write_bytes(b"")
    short = d / "calib_short"
    short.mkdir()
    sf.write(short / "a.wav", speech[:4000], 16000)  # 0.25 s
    f.update(calib_unreadable=str(cal), calib_short=str(short))
    return f


# --------------------------------------------------------------------------------------------------
# Trust on load

@pytest.mark.parametrize("model", ["state_shape", "state_dtype"])
@pytest.mark.parametrize("verb", ["inspect", "stream", "api"])
def test_card_that_contradicts_its_graph(files, capsys, model, verb):
    path = files[model]
    if verb == "api":
        from stateport.runtime.session import OnnxStepSession

        assert_api_error(lambda: OnnxStepSession(path), {"CARD_GRAPH_MISMATCH"})
    elif verb == "inspect":
        assert_cli_error(capsys, ["inspect", path], {"CARD_GRAPH_MISMATCH"})
    else:
        assert_cli_error(capsys, ["stream", files["ok"], "--model", path], {"CARD_GRAPH_MISMATCH"})


@pytest.mark.parametrize("model", ["failed_certificate", "no_certificate"])
@pytest.mark.parametrize("verb", ["stream", "api"])
def test_model_without_a_passed_certificate_is_refused_unless_allowed(files, capsys, model, verb):
    path = files[model]
    if verb == "api":
        from stateport.runtime.session import OnnxStepSession

        assert_api_error(lambda: OnnxStepSession(path), {"UNCERTIFIED_MODEL"})
        assert OnnxStepSession(path, allow_uncertified=True).card is not None
    else:
        assert_cli_error(capsys, ["stream", files["ok"], "--model", path], {"UNCERTIFIED_MODEL"})
        assert main(["stream", files["ok"], "--model", path, "--allow-uncertified", "--quiet", "--json"]) == 0


# --------------------------------------------------------------------------------------------------
# Checkpoints and user modules (checked where they enter: stateport.export.sources)

CHECKPOINTS = {  # file -> what the one-line error says
    "missing.pt": "does not exist",
    "a_folder": "is a directory",
    "text.pt": "is not a torch checkpoint",
    "empty.pt": "is empty or truncated",
    "pickled_module.pt": "holds pickled Python objects",
    "list.pt": "holds no state_dict",
    "no_weights.pt": "holds no state_dict",
    "other_weights.pt": "does not fit the model: weights",
    "conformer.pt": "holds a 'conformer' model, not 'lstm-ctc'",
}


@pytest.mark.parametrize("name", sorted(CHECKPOINTS))
@pytest.mark.parametrize("surface", ["cli", "api"])
def test_checkpoint_that_is_not_one(files, capsys, tmp_path, name, surface):
    checkpoint = os.path.join(files["dir"], name)
    out = tmp_path / "m.onnx"
    if surface == "cli":
        assert_cli_error(capsys, ["export", "--arch", "lstm-ctc", "--size", "tiny", "--checkpoint", checkpoint,
                                  "-o", str(out)], {"INVALID_MODEL_FILE"}, contains=CHECKPOINTS[name])
    else:
        from stateport.export import export_model

        assert_api_error(lambda: export_model(out, arch="lstm-ctc", size="tiny", checkpoint=checkpoint),
                         {"INVALID_MODEL_FILE"}, contains=CHECKPOINTS[name])
    assert not out.exists()


def test_verify_with_a_checkpoint_the_model_was_not_exported_from(files, capsys):
    # The tiny export has random weights (init seed 0): any checkpoint, or a missing one, is the wrong input.
    for checkpoint in (os.path.join(files["dir"], "conformer.pt"), os.path.join(files["dir"], "missing.pt")):
        assert_cli_error(capsys, ["verify", files["good"], "--checkpoint", checkpoint], {"INVALID_INPUT"},
                         contains="exported without a checkpoint")


MODULES = {  # FILE.py:OBJ -> the file:line (or what) the MODULE_IMPORT error names
    "mod_syntax.py:model": "mod_syntax.py:3: SyntaxError",
    "mod_raises.py:model": "mod_raises.py:4 raised RuntimeError: boom at import",
    "mod_missing_import.py:model": "mod_missing_import.py:1 raised ModuleNotFoundError",
    "mod_function.py:model": "mod_function.py:1: model is a function of (features, state)",
    "mod_builder_raises.py:model": "raised ValueError: no weights at",
    "mod_text.txt:model": "is not a Python file",
    "a_folder:model": "is not a Python file",
}


@pytest.mark.parametrize("spec", sorted(MODULES))
@pytest.mark.parametrize("surface", ["export", "verify", "api"])
def test_user_module_that_does_not_import(files, capsys, tmp_path, spec, surface):
    module = os.path.join(files["dir"], spec)
    if surface == "api":
        from stateport.export.sources import load_module_object

        error = assert_api_error(lambda: load_module_object(module), {"MODULE_IMPORT"}, contains=MODULES[spec])
    elif surface == "export":
        assert_cli_error(capsys, ["export", "--module", module, "-o", str(tmp_path / "m.onnx")], {"MODULE_IMPORT"},
                         contains=MODULES[spec])
    else:
        assert_cli_error(capsys, ["verify", files["good"], "--module", module], {"MODULE_IMPORT", "INVALID_INPUT"})
    if surface == "api" and spec == "mod_builder_raises.py:model":
        assert error.message.endswith("mod_builder_raises.py:6")  # the line that raised, in the user's file


@pytest.mark.parametrize("spec", [123, None, "no_colon.py"])
def test_module_spec_that_is_not_file_colon_object(spec):
    from stateport.export.sources import load_module_object

    assert_api_error(lambda: load_module_object(spec), {"INVALID_INPUT"}, contains="expected FILE.py:OBJECT")


# --------------------------------------------------------------------------------------------------
# Output paths

@pytest.mark.parametrize("case", ["missing_folder", "onto_a_folder", "under_a_file", "empty", "read_only_folder"])
def test_export_output_path_that_cannot_be_written(files, capsys, tmp_path, case):
    if case == "read_only_folder" and hasattr(os, "geteuid") and os.geteuid() == 0:
        pytest.skip("running as root, which writes into a read-only folder: nothing to refuse")
    (tmp_path / "folder.onnx").mkdir()
    target = {"missing_folder": tmp_path / "no" / "such" / "m.onnx", "onto_a_folder": tmp_path / "folder.onnx",
              "under_a_file": os.path.join(files["ok"], "m.onnx"), "empty": "",
              "read_only_folder": tmp_path / "ro" / "m.onnx"}[case]
    if case == "read_only_folder":
        (tmp_path / "ro").mkdir()
        os.chmod(tmp_path / "ro", 0o555)
    assert_cli_error(capsys, ["export", "--arch", "lstm-ctc", "--size", "tiny", "--no-verify", "-o", str(target)],
                     {"INVALID_OUTPUT"})


@pytest.mark.parametrize("argv", [
    ["demo", "-o", "{ok}"],                      # a file where the demo's folder goes
    ["train", "-o", "{folder}"],                 # a folder where the checkpoint goes
    ["train", "-o", "{ok}/ck.pt"],               # under a file
    ["train", "-o", ""],
    ["demo", "-o", "{dir}/no/such/folder"],        # the demo fills a folder; its parent must exist, as for export
], ids=["demo_onto_file", "train_onto_folder", "train_under_file", "train_empty", "demo_missing_parent"])
def test_demo_and_train_output_path_that_cannot_be_written(files, capsys, argv):
    argv = [a.format(**files) for a in argv]
    assert_cli_error(capsys, argv, {"INVALID_OUTPUT"})


# --------------------------------------------------------------------------------------------------
# Audio

@pytest.mark.parametrize("name", ["text_wav", "empty_wav", "folder", "zero_samples", "missing"])
def test_stream_of_something_that_is_not_audio(files, capsys, name):
    path = files.get(name, os.path.join(files["dir"], "missing.wav"))
    assert_cli_error(capsys, ["stream", path, "--model", files["good"]], {"INVALID_AUDIO_FILE"})


@pytest.mark.parametrize("name", ["rate_100", "rate_1", "rate_1MHz", "unscaled_int16"])
def test_stream_of_implausible_audio(files, capsys, name):
    assert_cli_error(capsys, ["stream", files[name], "--model", files["good"]], {"INVALID_AUDIO_FILE", "INVALID_INPUT"})


@pytest.mark.parametrize("rate, scale", [(100, 1.0), (1, 1.0), (10_000_000, 1.0), (16000, 32768.0)],
                         ids=["100Hz", "1Hz", "10MHz", "unscaled_int16"])
def test_streamer_refuses_implausible_audio(files, rate, scale):
    from stateport.runtime.streamer import Streamer

    streamer = Streamer(files["good"])
    samples = (0.1 * scale * np.random.default_rng(1).standard_normal(1600)).astype(np.float32)
    assert_api_error(lambda: streamer.accept_waveform(samples, rate), {"INVALID_INPUT"})


# --------------------------------------------------------------------------------------------------
# Calibration data

@pytest.mark.parametrize("name", ["calib_unreadable", "calib_short"])
def test_calibration_folder_that_cannot_calibrate(files, capsys, tmp_path, name):
    pytest.importorskip("torchao", reason="the quantize extra is not installed")
    assert_cli_error(capsys, ["quantize", files["good"], "-o", str(tmp_path / "q.onnx"), "--recipe", "static-int8",
                              "--calib", files[name], "--seconds", "2"], {"INVALID_CALIBRATION"})
    assert not (tmp_path / "q.onnx").exists()


# --------------------------------------------------------------------------------------------------
# Numbers: refused while the command line is parsed (every verb), and by the library's entry points

NUMBERS = [
    ["export", "--arch", "lstm-ctc", "-o", "m.onnx", "--seconds", "0"],
    ["export", "--arch", "lstm-ctc", "-o", "m.onnx", "--seconds", "-1"],
    ["export", "--arch", "lstm-ctc", "-o", "m.onnx", "--seconds", "nan"],
    ["export", "--arch", "lstm-ctc", "-o", "m.onnx", "--tolerance", "-1e-4"],
    ["export", "--arch", "lstm-ctc", "-o", "m.onnx", "--chunk-frames", "0"],
    ["export", "--arch", "lstm-ctc", "-o", "m.onnx", "--chunk-frames", "1.5"],
    ["verify", "m.onnx", "--seconds", "0"],
    ["verify", "m.onnx", "--tolerance", "-1"],
    ["quantize", "m.onnx", "-o", "q.onnx", "--seconds", "-2"],
    ["quantize", "m.onnx", "-o", "q", "--table", "--table-utterances", "0"],
    ["stream", "a.wav", "--read-ms", "0"],
    ["stream", "a.wav", "--threads", "0"],
    ["stream", "a.wav", "--max-queue-ms", "inf"],
    ["stream", "--mic", "--seconds", "-5"],
    ["train", "-o", "ck.pt", "--steps", "0"],
    ["train", "-o", "ck.pt", "--dropout", "1.5"],
    ["train", "-o", "ck.pt", "--learning-rate", "0"],
    ["train", "-o", "ck.pt", "--batch-size", "-3"],
    ["list", "--table", "--seconds", "0"],
    ["drift", "a.onnx", "b.onnx", "-o", "d", "--minutes", "0"],
    ["matrix", "--seconds", "-1"],
    ["demo", "--seconds", "0"],
]


@pytest.mark.parametrize("argv", NUMBERS, ids=[" ".join(a[:1] + a[-2:]) for a in NUMBERS])
def test_numeric_option_out_of_range_is_refused_at_parse_time(capsys, argv):
    message = assert_cli_error(capsys, argv, {"INVALID_ARGUMENT"})
    assert f"stateport {argv[0]}: argument" in message and "expected" in message


def test_command_line_errors_are_typed_json_with_json(capsys):
    assert main(["export", "--arch", "lstm-ctc", "-o", "m.onnx", "--seconds", "0", "--json"]) == 2
    error = json.loads(capsys.readouterr().out)["error"]
    assert error["code"] == "INVALID_ARGUMENT" and "--seconds" in error["message"]


@pytest.mark.parametrize("call", ["export_seconds", "export_tolerance", "verify_seconds", "quantize_seconds"])
def test_library_refuses_a_proof_no_certificate_should_rest_on(files, tmp_path, call):
    from stateport.export import export_model, verify_file

    calls = {
        "export_seconds": lambda: export_model(tmp_path / "m.onnx", arch="lstm-ctc", size="tiny", seconds=0.01),
        "export_tolerance": lambda: export_model(tmp_path / "m.onnx", arch="lstm-ctc", size="tiny", tolerance=-1),
        "verify_seconds": lambda: verify_file(files["good"], seconds=0),
        "quantize_seconds": lambda: __import__("stateport.quantize", fromlist=["quantize_model"]).quantize_model(
            files["good"], tmp_path / "q.onnx", recipe="fp16", seconds=0),
    }
    assert_api_error(calls[call], {"INVALID_INPUT"})


# --------------------------------------------------------------------------------------------------
# Data that only training and the accuracy table need

@pytest.mark.parametrize("argv", [
    ["train", "-o", "{dir}/ck.pt", "--steps", "1", "--no-synthetic"],
    ["drift", "{good}", "{good}", "-o", "{dir}/drift", "--minutes", "0.1"],
], ids=["train", "drift"])
def test_commands_that_need_fsdd_say_where_it_comes_from(files, capsys, monkeypatch, tmp_path, argv):
    monkeypatch.setenv("STATEPORT_FSDD_DIR", str(tmp_path / "no-fsdd"))
    message = assert_cli_error(capsys, [a.format(**files) for a in argv], {"MISSING_DATA"})
    assert "STATEPORT_FSDD_DIR" in message and "github.com/Jakobovski/free-spoken-digit-dataset" in message


def test_fsdd_loader_without_the_data(monkeypatch, tmp_path):
    from stateport.train.fsdd import load_fsdd

    monkeypatch.setenv("STATEPORT_FSDD_DIR", str(tmp_path / "no-fsdd"))
    assert_api_error(lambda: load_fsdd(speakers=["jackson"]), {"MISSING_DATA"}, contains="STATEPORT_FSDD_DIR")


# --------------------------------------------------------------------------------------------------
# A closed stdout

def test_closed_pipe_ends_quietly_with_sigpipe_status(files):
    """``stateport inspect FILE | head -1``: the reader is gone before the first write."""
    proc = subprocess.Popen([sys.executable, "-m", "stateport.cli.main", "inspect", files["good"]],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    status = proc.wait(timeout=120)
    assert status in (-signal.SIGPIPE, SIGPIPE_EXIT_STATUS) and err == "", (status, err)


def test_closed_pipe_in_process_returns_sigpipe_status(files, monkeypatch):
    class ClosedPipe:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            raise BrokenPipeError(32, "Broken pipe")

        def fileno(self):
            raise OSError("not a file")

        def isatty(self):
            return False

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert main(["inspect", files["good"], "--quiet"]) == SIGPIPE_EXIT_STATUS


@pytest.mark.parametrize("kwargs", [{"indices": ["a"]}, {"indices": [60]}, {"digits": [11]}, {"digits": ["x"]},
                                    {"speakers": ["nobody"]}, {"speakers": [3]}],
                         ids=["index_not_int", "index_60", "digit_11", "digit_not_int", "unknown_speaker",
                              "speaker_not_str"])
def test_fsdd_loader_arguments(kwargs):
    from stateport.train.fsdd import load_fsdd

    assert_api_error(lambda: load_fsdd(**kwargs), {"INVALID_INPUT"})


def test_static_quantize_without_fsdd_names_the_shipped_calibration_set(files, capsys, monkeypatch, tmp_path):
    from stateport.assets import calibration_dir

    monkeypatch.setenv("STATEPORT_FSDD_DIR", str(tmp_path / "no-fsdd"))
    message = assert_cli_error(capsys, ["quantize", files["good"], "-o", str(tmp_path / "q.onnx"),
                                        "--recipe", "static-int8"], {"MISSING_DATA"})
    assert message.endswith(f"--calib {calibration_dir()}")
