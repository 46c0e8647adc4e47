"""Trust on load: a card that contradicts its graph is refused with the disagreement named; a model without
a PASSED certificate is refused unless allow_uncertified, which is then reported; inspect shows the truth."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from stream_helpers import tiny_ctc_model

from stateport.cli.main import main
from stateport.errors import CardGraphMismatchError, UncertifiedModelError
from stateport.runtime.model_file import read_card, write_card
from stateport.runtime.recognizer import Recognizer
from stateport.runtime.session import OnnxStepSession


def _with_card(src: str, dst, change) -> str:
    """A copy of ``src`` whose card went through ``change(card)`` (the graph untouched)."""
    card = read_card(src)
    change(card)
    model = onnx.load(src)
    write_card(model, card)
    onnx.save(model, str(dst))
    return str(dst)


def _certified(card):
    card.certificate = {"passed": True, "backend": "onnxruntime", "tolerance": 1e-4, "seconds": 60.0,
                        "frames": 6000, "max_abs_diff": 1e-6, "compared": []}


def _run_json(capsys, *argv):
    code = main([*argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("change,expected", [
    (lambda c: setattr(c.state("encoder_h_in"), "shape", [1, "batch", 64]),
     "state input encoder_h_in: axis 2 is 64 in the card, 32 in the graph"),
    (lambda c: setattr(c.state("encoder_c_in"), "dtype", "float16"),
     "state input encoder_c_in: dtype float16 in the card, float32 in the graph"),
    (lambda c: setattr(c.inputs[0], "shape", ["batch", "T", 40]),
     "input features: axis 2 is 40 in the card, 80 in the graph"),
    (lambda c: setattr(c.outputs[0], "name", "scores") or setattr(c.output, "port", "scores"),
     "output scores: not in the graph"),
    (lambda c: setattr(c.state("encoder_h_in"), "batch_axis", 0) or setattr(c.state("encoder_h_in"), "shape",
                                                                              ["batch", 1, 32]),
     "state input encoder_h_in: axis 0 is 'batch' (any size) in the card, fixed at 1 in the graph"),
])
def test_a_card_that_contradicts_its_graph_is_refused_with_the_disagreement(tmp_path, capsys, change, expected):
    def certified_and_changed(card):
        _certified(card)  # even a PASSED certificate does not make a lying card acceptable
        change(card)

    path = _with_card(tiny_ctc_model(), tmp_path / "lying.onnx", certified_and_changed)
    for open_it in (lambda: OnnxStepSession(path), lambda: Recognizer.from_file(path, allow_uncertified=True)):
        with pytest.raises(CardGraphMismatchError) as info:
            open_it()
        assert expected in str(info.value) and info.value.code == "CARD_GRAPH_MISMATCH"
        assert expected in info.value.disagreements
    wav = tmp_path / "a.wav"
    import soundfile as sf

    sf.write(wav, np.zeros(1600, np.float32), 16000)
    code, doc = _run_json(capsys, "stream", str(wav), "--model", path, "--allow-uncertified")
    assert code == 2 and doc["error"]["code"] == "CARD_GRAPH_MISMATCH"
    # inspect shows the disagreement, not the stale PASSED certificate, and exits 2.
    assert main(["inspect", path]) == 2
    out, err = capsys.readouterr()
    assert "DISAGREE" in out and expected in out and "not valid for this graph" in out
    assert "PASSED on" not in out and err.startswith("error[CARD_GRAPH_MISMATCH]")
    code, doc = _run_json(capsys, "inspect", path)
    assert code == 2 and doc["trust"]["card_matches_graph"] is False and expected in doc["trust"]["disagreements"]


def test_another_architectures_card_on_a_graph_is_refused(tmp_path, tiny_lstm_ctc):
    """The concurrent-export accident of issue 17: an lstm-ctc graph carrying a quartznet card with a PASSED
    certificate."""
    from stateport.export import export_model

    quartznet = tmp_path / "q.onnx"
    export_model(quartznet, arch="quartznet", size="tiny", verify=False)
    foreign = read_card(str(quartznet))
    path = _with_card(tiny_lstm_ctc[0], tmp_path / "swapped.onnx",
                      lambda c: (_certified(foreign), c.__dict__.update(foreign.__dict__)))
    with pytest.raises(CardGraphMismatchError, match="not in the graph"):
        OnnxStepSession(path)


def test_uncertified_and_failed_models_are_refused_unless_allowed(tmp_path, capsys):
    path = tiny_ctc_model()  # exported without the proof: no certificate
    with pytest.raises(UncertifiedModelError, match="no parity certificate.*allow_uncertified=True"):
        OnnxStepSession(path)
    with pytest.raises(UncertifiedModelError):
        Recognizer.from_file(path)
    rec = Recognizer.from_file(path, allow_uncertified=True)
    assert not rec.trust.certified and rec.trust.allowed_uncertified
    assert "UNCERTIFIED" in rec.trust.describe()

    failed = _with_card(path, tmp_path / "failed.onnx",
                        lambda c: (_certified(c), c.certificate.update(passed=False)))
    with pytest.raises(UncertifiedModelError, match="FAILED parity certificate"):
        OnnxStepSession(failed)
    assert OnnxStepSession(failed, allow_uncertified=True).trust.certificate == "failed"

    import soundfile as sf

    wav = tmp_path / "a.wav"
    sf.write(wav, (0.1 * np.random.default_rng(0).standard_normal(8000)).astype(np.float32), 16000)
    code, doc = _run_json(capsys, "stream", str(wav), "--model", path)
    assert code == 2 and doc["error"]["code"] == "UNCERTIFIED_MODEL" and "--allow-uncertified" in doc["error"]["message"]
    assert main(["stream", str(wav), "--model", path, "--allow-uncertified"]) == 0
    assert "UNCERTIFIED" in capsys.readouterr().err  # reported, on stderr (stdout stays the result)
    code, doc = _run_json(capsys, "stream", str(wav), "--model", path, "--allow-uncertified")
    assert code == 0 and doc["model_trust"] == {"certificate": "absent", "allowed_uncertified": True}
    # inspect says what the runtime will do with it (and does not refuse to show it).
    assert main(["inspect", path]) == 0
    assert "refuse it without --allow-uncertified" in capsys.readouterr().out


def test_certified_export_opens_and_inspect_agrees(tiny_lstm_ctc, capsys):
    path = tiny_lstm_ctc[0]
    session = OnnxStepSession(path)
    assert session.trust.certified and not session.trust.allowed_uncertified
    code, doc = _run_json(capsys, "inspect", path)
    assert code == 0 and doc["trust"] == {"card_matches_graph": True, "disagreements": [], "certificate": "passed"}
    assert main(["inspect", path]) == 0
    assert "card vs graph\n  agree" in capsys.readouterr().out


def test_the_shipped_model_and_silero_pass_the_check():
    from stateport.assets import default_model_path

    assert OnnxStepSession(default_model_path()).trust.certified
    pytest.importorskip("silero_vad", reason="silero-vad is not installed")
    from stateport.runtime.vad import SileroVad

    vad = SileroVad()  # a third-party graph, port-mapped: its card (written in code) is checked too
    assert vad.session.trust.certificate == "absent" and vad.session.trust.allowed_uncertified
