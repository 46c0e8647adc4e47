"""The end of a stream is part of the contract: the card's tail padding, measured, shipped, flushed.

Recordings that end on their last word (trimmed files, push-to-talk) must give the text the same
recording gives with a second of silence after it.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import onnx
import pytest
import soundfile as sf

from corpus import FULL_FSDD_DIR, needs_full_fsdd
from stream_helpers import tiny_ctc_model, trimmed_clips

from stateport.assets import default_model_path
from stateport.errors import CardError
from stateport.runtime.model_file import read_card, replace_card
from stateport.runtime.recognizer import Recognizer
from stateport.train.metrics import word_error_rate
from stateport.verify.tail import measure_tail_padding, write_tail_padding

MAX_TRIMMED_CLIP_WER = 0.25  # the shipped clips' regression guard (measured 0.125: 4 of 32 digits, as padded)


def test_the_shipped_card_carries_a_measured_tail():
    card = read_card(default_model_path())
    st = card.streaming
    # Measured on trimmed held-out speech (340 ms for the shipped model, written by python -m stateport.train.ship).
    assert st.tail_padding_ms is not None and 200 <= st.tail_padding_ms <= 1000
    assert st.tail_padding_basis.startswith("emission delay on") and "trimmed held-out recordings" in st.tail_padding_basis
    assert card.certificate["passed"]  # written beside the graph, which stayed byte for byte the same


def test_trimmed_clips_give_the_text_of_the_same_clips_followed_by_a_second_of_silence():
    rec = Recognizer.builtin()
    unflushed = Recognizer(rec.session, tail_padding_ms=0)
    refs, hyps, lost = [], [], 0
    for samples, rate, reference in trimmed_clips():
        trimmed = rec.transcribe(samples, rate).text
        padded = rec.transcribe(np.concatenate([samples, np.zeros(rate, np.float32)]), rate).text
        assert trimmed == padded and trimmed, (trimmed, padded, reference)
        refs.append(reference.split())
        hyps.append(trimmed.split())
        lost += len(unflushed.transcribe(samples, rate).text.split()) < len(trimmed.split())
    assert word_error_rate(refs, hyps) <= MAX_TRIMMED_CLIP_WER, list(zip(refs, hyps))
    assert lost >= 1, "without the flush a trimmed clip loses its last word (measured: 2 of 6)"


def test_the_stream_cli_on_a_trimmed_clip(tmp_path, capsys):
    import json

    from stateport.cli.main import main

    samples, rate, reference = trimmed_clips()[3]
    path = tmp_path / "trimmed.wav"
    sf.write(path, samples, rate)
    assert main(["stream", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["text"] == reference and doc["tail_padding_ms"] == read_card(default_model_path()).streaming.tail_padding_ms


def test_untrained_export_gets_the_receptive_field():
    m = measure_tail_padding(tiny_ctc_model(), None, allow_uncertified=True)
    assert m.method == "receptive-field" and m.tail_padding_ms == 15.0  # 25 ms window - 10 ms hop, no subsampling
    assert "receptive field" in m.basis


def test_write_tail_padding_changes_only_the_card(tmp_path):
    path = tmp_path / "m.onnx"
    shutil.copy(tiny_ctc_model(), path)
    os.chmod(path, 0o644)
    graph = onnx.load(str(path)).graph.SerializeToString()
    m = measure_tail_padding(str(path), None, allow_uncertified=True)
    write_tail_padding(path, m)
    card = read_card(path)
    assert card.streaming.tail_padding_ms == 15.0 and card.streaming.tail_padding_basis == m.basis
    assert onnx.load(str(path)).graph.SerializeToString() == graph
    assert os.stat(path).st_mode & 0o777 == 0o644
    assert [f for f in os.listdir(tmp_path) if f != "m.onnx"] == []  # no temporary left behind
    with pytest.raises(CardError):
        card.streaming.__class__(**{**card.streaming.to_dict(), "tail_padding_ms": -5})


def test_a_failed_card_rewrite_leaves_the_file_as_it_was(tmp_path, monkeypatch):
    path = tmp_path / "m.onnx"
    shutil.copy(tiny_ctc_model(), path)
    before = path.read_bytes()
    card = read_card(path)
    card.streaming.tail_padding_ms = 123.0

    def interrupted(src, dst):
        raise KeyboardInterrupt  # as if the process were stopped between proof and rename

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        replace_card(path, card)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["m.onnx"]


@needs_full_fsdd
def test_measuring_the_shipped_model_on_held_out_recordings():
    """The held-out speaker's delays fit inside the shipped tail (measured without him; benchmarks/end_of_input.py
    measures all 500 of his recordings: the same 340 ms)."""
    recordings = []
    for digit in range(10):
        for index in (30, 45):
            x, rate = sf.read(os.path.join(FULL_FSDD_DIR, f"{digit}_george_{index}.wav"), dtype="float32")
            recordings.append((x, rate))
    m = measure_tail_padding(default_model_path(), recordings, source="FSDD george 30, 45")
    # The shipped model rejects a few of george's words outright (17 of his 500 trimmed recordings give
    # nothing, with or without a second of silence after them): 19 of these 20 emit.
    assert m.method == "emission-delay" and m.emitted >= 18 and m.margin_ms == 80.0
    assert 0 < m.max_delay_ms <= read_card(default_model_path()).streaming.tail_padding_ms - m.margin_ms
    assert m.tail_padding_ms % 10 == 0 and m.tail_padding_ms >= m.receptive_field_ms
