"""No file stateport writes ever lies: real processes writing one path at once, killed mid-proof, failing
their proof, or pointed at a path they cannot write. The file at the path is always absent, the previous
one, or a complete certified one whose card matches its graph."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from stateport.cli.main import main
from stateport.runtime.model_file import card_from_metadata, load_onnx_model, read_card

CLI = [sys.executable, "-m", "stateport.cli.main"]


def _leftovers(folder) -> list:
    return sorted(f for f in os.listdir(folder) if "stateport-tmp" in f or "stateport-old" in f)


def snapshot(path):
    """The graph and the card of one read of ``path``.

    Reading the path twice (once for the card, once for the graph) can straddle another writer's
    ``os.replace`` and pair one file's card with the next file's graph: a race in the reader, not a
    lie in any file. One read is one file."""
    proto = load_onnx_model(path)
    return proto, card_from_metadata({p.key: p.value for p in proto.metadata_props}, repr(str(path)))


def card_matches_graph(path) -> bool:
    """The card's ports are the graph's, in order, and a quantized card's op histogram is the graph's."""
    return _matches(*snapshot(path))


def _matches(proto, card) -> bool:
    from stateport.quantize.onnx_graph import op_histogram

    same_ports = ([i.name for i in proto.graph.input] == card.input_names
                  and [o.name for o in proto.graph.output] == card.output_names)
    q = card.provenance.quantization
    return same_ports and (q is None or q["ops"] == op_histogram(proto))


def _export(out, arch, *extra, seconds="2"):
    return subprocess.Popen([*CLI, "export", "--arch", arch, "--size", "tiny", "-o", str(out), "--seconds", seconds,
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


class Watcher:
    """Reads the path again and again while writers run; every complete file it sees must be certified and true."""

    def __init__(self, path):
        self.path, self.seen, self.bad, self.stop = str(path), 0, [], threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop.is_set():
            try:
                if os.path.exists(self.path):
                    proto, card = snapshot(self.path)
                    self.seen += 1
                    if not card.certificate or card.certificate.get("passed") is not True \
                            or not _matches(proto, card):
                        self.bad.append(card.provenance.architecture)
            except FileNotFoundError:
                pass  # replaced between exists() and the read: the next read sees the new one
            time.sleep(0.05)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def test_three_exports_of_different_models_to_one_path(tmp_path):
    """Measured before the fix: all three exited 0 with PASS and left an lstm-ctc graph with a quartznet card."""
    out = tmp_path / "m.onnx"
    archs = ["lstm-ctc", "quartznet", "dscnn-kws"]
    with Watcher(out) as watcher:
        procs = [_export(out, a) for a in archs]
        codes = [p.wait(timeout=600) for p in procs]
    assert codes == [0, 0, 0], [p.stderr.read()[-2000:] for p in procs]
    assert watcher.bad == [] and watcher.seen > 0, (watcher.bad, watcher.seen)
    card = read_card(out)
    assert card.provenance.architecture in archs and card.certificate["passed"] and card_matches_graph(out)
    # The strongest check: the card's own reference, rebuilt, proves the graph in the file.
    assert main(["verify", str(out), "--seconds", "2"]) == 0
    assert os.listdir(tmp_path) == ["m.onnx"]


def test_two_quantize_runs_to_one_path(tiny_lstm_ctc, tmp_path):
    """Measured before the fix: one of the two segfaulted."""
    pytest.importorskip("onnxconverter_common")
    out = tmp_path / "q.onnx"
    with Watcher(out) as watcher:
        procs = [subprocess.Popen([*CLI, "quantize", tiny_lstm_ctc[0], "-o", str(out), "--recipe", recipe,
                                   "--seconds", "2", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for recipe in ("dynamic-int8", "fp16")]
        codes = [p.wait(timeout=600) for p in procs]
    assert codes == [0, 0], [p.stderr.read()[-2000:] for p in procs]
    assert watcher.bad == [] and watcher.seen > 0
    card = read_card(out)
    assert card.provenance.quantization["recipe"] in ("dynamic-int8", "fp16") and card_matches_graph(out)
    assert card.certificate["passed"] and main(["verify", str(out), "--seconds", "2"]) == 0
    assert os.listdir(tmp_path) == ["q.onnx"]


def _wait_for_proof(folder, child, timeout_s=300.0):
    """Until the export's temporary holds the converted graph (the proof runs on it next)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        tmp = [f for f in _leftovers(folder) if f.endswith(".onnx")]
        if tmp and os.path.getsize(os.path.join(folder, tmp[0])) > 10_000:
            return
        assert child.poll() is None, child.stderr.read()[-2000:]
        time.sleep(0.05)
    raise AssertionError("the export never reached its proof")


@pytest.mark.parametrize("previous", ["a certified file", "nothing"])
@pytest.mark.parametrize("delay_s", [0.5, 3.0])
def test_sigterm_during_the_proof(previous, delay_s, tmp_path):
    """Measured before the fix: an uncertified file at -o whose card said --no-verify; the previous file lost."""
    out = tmp_path / "m.onnx"
    if previous == "a certified file":
        assert main(["export", "--arch", "quartznet", "--size", "tiny", "-o", str(out), "--seconds", "2",
                     "--json"]) == 0
        before = out.read_bytes()
    child = _export(out, "lstm-ctc", seconds="300")  # a proof of ~35 s here: the signal lands inside it
    _wait_for_proof(tmp_path, child)
    time.sleep(delay_s)
    assert child.poll() is None, "the proof ended before the signal: make it longer"
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=120) == 128 + signal.SIGTERM
    assert not _leftovers(tmp_path)
    if previous == "nothing":
        assert os.listdir(tmp_path) == []
    else:
        assert out.read_bytes() == before and read_card(out).certificate["passed"]


def test_sigterm_during_a_quantize_proof(tiny_lstm_ctc, tmp_path):
    out = tmp_path / "q.onnx"
    out.write_bytes(open(tiny_lstm_ctc[0], "rb").read())  # a previous file (any) at the path
    before = out.read_bytes()
    child = subprocess.Popen([*CLI, "quantize", tiny_lstm_ctc[0], "-o", str(out), "--recipe", "dynamic-int8",
                              "--seconds", "300"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_proof(tmp_path, child)
    time.sleep(1.0)
    assert child.poll() is None
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=120) == 128 + signal.SIGTERM
    assert out.read_bytes() == before and os.listdir(tmp_path) == ["q.onnx"]


def test_a_failed_proof_keeps_its_evidence_beside_the_path(tmp_path, capsys):
    """Tolerance 0 fails on float rounding: exit 1, nothing at -o (the previous file stays), the failed file
    beside it with a FAILED certificate; `stream`-style loaders never find a failed file at the path."""
    out = tmp_path / "m.onnx"
    assert main(["export", "--arch", "lstm-ctc", "--size", "tiny", "-o", str(out), "--no-verify", "--json"]) == 0
    before = out.read_bytes()
    capsys.readouterr()
    code = main(["export", "--arch", "lstm-ctc", "--size", "tiny", "-o", str(out), "--seconds", "2",
                 "--tolerance", "0", "--json"])
    error = json.loads(capsys.readouterr().out)["error"]
    assert code == 1 and error["code"] == "PARITY_FAILED"
    assert error["evidence"] == str(tmp_path / "m.failed.onnx") and "m.failed.onnx" in error["message"]
    assert out.read_bytes() == before
    assert read_card(tmp_path / "m.failed.onnx").certificate["passed"] is False
    assert sorted(os.listdir(tmp_path)) == ["m.failed.onnx", "m.onnx"]


def test_no_verify_says_so_in_the_card(tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert main(["export", "--arch", "lstm-ctc", "--size", "tiny", "-o", str(out), "--no-verify"]) == 0
    certificate = read_card(out).certificate
    assert certificate == {"passed": None, "skipped": True,
                           "reason": "exported with --no-verify: no parity proof ran"}
    capsys.readouterr()
    assert main(["inspect", str(out)]) == 0
    assert "none: exported with --no-verify: no parity proof ran" in capsys.readouterr().out


def test_a_multi_graph_export_is_one_folder_swapped_whole(tmp_path, capsys):
    """`stateport export --arch rnnt -o DIR` exits 0 (it crashed after writing three graphs), twice over the same
    folder; a folder holding the user's files is refused before any work."""
    out = tmp_path / "rnnt"
    for _ in range(2):
        assert main(["export", "--arch", "rnnt", "--size", "tiny", "-o", str(out), "--seconds", "2"]) == 0
        assert sorted(os.listdir(out)) == ["encoder.onnx", "joiner.onnx", "predictor.onnx"]
    text = capsys.readouterr().out
    assert text.count("-> PASS") == 6 and f"wrote {out / 'joiner.onnx'}" in text
    (out / "notes.txt").write_text("mine")
    code = main(["export", "--arch", "rnnt", "--size", "tiny", "-o", str(out), "--json"])
    assert code == 2 and json.loads(capsys.readouterr().out)["error"]["code"] == "INVALID_OUTPUT"
    assert (out / "notes.txt").read_text() == "mine" and not _leftovers(tmp_path)
    assert main(["verify", str(out), "--seconds", "2", "--json"]) == 0  # every graph of the folder, proved again
    report = json.loads(capsys.readouterr().out)
    assert {c["name"].split(":")[0] for c in report["checks"]} == {"encoder.onnx", "joiner.onnx", "predictor.onnx"}


@pytest.fixture()
def no_model_is_built(monkeypatch):
    """Fails the test if the export gets as far as building the model."""
    import stateport.export.pipeline as pipeline

    def refuse(**_):
        raise AssertionError("the model was built before the output path was checked")
    monkeypatch.setattr(pipeline, "build_model", refuse)


def test_a_missing_folder_is_refused_before_the_model_is_built(tmp_path, capsys, no_model_is_built):
    code = main(["export", "--arch", "lstm-ctc", "--size", "tiny", "-o", str(tmp_path / "nope" / "m.onnx"), "--json"])
    error = json.loads(capsys.readouterr().out)["error"]
    assert code == 2 and error["code"] == "INVALID_OUTPUT" and "does not exist" in error["message"]


def test_export_onto_an_existing_folder_is_refused_before_conversion(tmp_path, capsys, monkeypatch):
    """Whether -o must be a file or a folder is known once the model is built (one graph or several);
    the refusal comes before any conversion."""
    from stateport.export.backends import onnx_file

    monkeypatch.setattr(onnx_file, "to_onnx", lambda *a, **k: pytest.fail("converted before the path was checked"))
    (tmp_path / "taken.onnx").mkdir()
    code = main(["export", "--arch", "lstm-ctc", "--size", "tiny", "-o", str(tmp_path / "taken.onnx"), "--json"])
    error = json.loads(capsys.readouterr().out)["error"]
    assert code == 2 and error["code"] == "INVALID_OUTPUT" and "is a folder" in error["message"]


def test_read_only_folder_from_the_cli(tmp_path):
    from test_atomic import without_root_override

    folder = tmp_path / "ro"
    folder.mkdir()
    os.chmod(folder, 0o555)
    try:
        done = subprocess.run([*without_root_override(), *CLI, "export", "--arch", "lstm-ctc", "--size", "tiny",
                               "-o", str(folder / "m.onnx")], capture_output=True, text=True, timeout=300)
    finally:
        os.chmod(folder, 0o755)
    assert done.returncode == 2 and done.stderr.startswith("error[INVALID_OUTPUT]") and "not writable" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and os.listdir(folder) == []


# A number no option takes (<= 0, negative, NaN) is refused while the command line is parsed
# (INVALID_ARGUMENT, stateport/cli/args.py); a positive proof too short to show state, by the library.
@pytest.mark.parametrize("argv, code, expected", [
    (["export", "--arch", "lstm-ctc", "--size", "tiny", "-o", "{tmp}/m.onnx", "--seconds", "0"],
     "INVALID_ARGUMENT", "argument --seconds: expected a number > 0"),
    (["export", "--arch", "lstm-ctc", "--size", "tiny", "-o", "{tmp}/m.onnx", "--seconds", "0.01"],
     "INVALID_INPUT", "at least 1 s"),
    (["export", "--arch", "lstm-ctc", "--size", "tiny", "-o", "{tmp}/m.onnx", "--tolerance", "-1"],
     "INVALID_ARGUMENT", "argument --tolerance: expected a number >= 0"),
    (["export", "--arch", "lstm-ctc", "--size", "tiny", "-o", "{tmp}/m.onnx", "--tolerance", "nan"],
     "INVALID_ARGUMENT", "finite"),
    (["verify", "{model}", "--seconds", "-5"], "INVALID_ARGUMENT", "argument --seconds"),
    (["verify", "{model}", "--seconds", "0.5"], "INVALID_INPUT", "at least 1 s"),
    (["verify", "{model}", "--tolerance", "-0.1"], "INVALID_ARGUMENT", "argument --tolerance"),
    (["quantize", "{model}", "-o", "{tmp}/q.onnx", "--recipe", "dynamic-int8", "--seconds", "0"],
     "INVALID_ARGUMENT", "argument --seconds"),
    (["matrix", "--arch", "lstm-ctc", "--backend", "onnx", "--seconds", "0"], "INVALID_ARGUMENT", "argument --seconds"),
])
def test_proof_options_no_certificate_can_rest_on(argv, code, expected, tiny_lstm_ctc, tmp_path, capsys):
    """A PASS over one frame (--seconds near 0) or with a negative tolerance must be impossible: typed, exit 2."""
    argv = [a.format(tmp=tmp_path, model=tiny_lstm_ctc[0]) for a in argv]
    status = main([*argv, "--json"])
    error = json.loads(capsys.readouterr().out)["error"]
    assert status == 2 and error["code"] == code and expected in error["message"]
    assert not [f for f in os.listdir(tmp_path)]
