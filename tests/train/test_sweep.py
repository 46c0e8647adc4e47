"""The checkpoint sweep: which files it reads, and that its offline figures are the runtime's."""

import os
import shutil

import pytest

from corpus import needs_full_fsdd

from stateport.assets import builtin_dir, default_model_path
from stateport.errors import InvalidInputError
from stateport.train.evaluate import evaluate, speaker_sets
from stateport.train.sweep import kept_checkpoints, offline_rows, sweep

SHIPPED_CHECKPOINT = str(builtin_dir() / "checkpoint.pt")


def _evals_folder(tmp_path, names):
    folder = tmp_path / "run.evals"
    folder.mkdir()
    for name in names:
        os.symlink(SHIPPED_CHECKPOINT, folder / name)
    return str(folder)


def test_kept_checkpoints_are_ordered_by_step_and_split_raw_from_averaged(tmp_path):
    folder = _evals_folder(tmp_path, ["step1000.pt", "step250.pt", "step1000.raw.pt", "step4750.pt", "notes.txt"])
    assert [c.step for c in kept_checkpoints(folder)] == [250, 1000, 4750]
    assert [c.step for c in kept_checkpoints(folder, from_step=1000)] == [1000, 4750]
    raw = kept_checkpoints(folder, raw=True)
    assert [(c.step, c.raw, os.path.basename(c.path)) for c in raw] == [(1000, True, "step1000.raw.pt")]
    with pytest.raises(InvalidInputError, match="from step 5000"):
        kept_checkpoints(folder, from_step=5000)
    with pytest.raises(InvalidInputError, match="keep-eval-checkpoints"):
        kept_checkpoints(str(tmp_path / "missing.evals"))


@needs_full_fsdd
def test_offline_figures_match_the_runtime_on_the_shipped_model():
    # Five recordings per digit and ten strings of the held-out speaker: the offline forward and
    # the exported model streamed in 20 ms reads must make the same errors (the export is proven
    # equal to the offline forward; a wrong frame count or batch padding would break this).
    sets = speaker_sets("george", strings=10, indices=range(0, 50, 10))
    offline = offline_rows(SHIPPED_CHECKPOINT, sets, batch_size=16)
    streamed = evaluate(str(default_model_path()), sets)
    for o, s in zip(offline, streamed):
        assert (o["set"], o["utterances"], o["digits"]) == (s["set"], s["utterances"], s["digits"])
        assert o["wer"] == pytest.approx(s["wer"], abs=1.0 / o["digits"] + 1e-9), (o, s)
    assert offline[0]["utterances"] == 50 and offline[0]["wer"] < 0.4


@needs_full_fsdd
def test_sweep_summarises_each_set_over_the_checkpoints(tmp_path):
    folder = _evals_folder(tmp_path, ["step4500.pt", "step4750.pt"])
    result = sweep(kept_checkpoints(folder), "george", strings=4, indices=range(0, 50, 25))
    assert [pc["step"] for pc in result["checkpoints"]] == [4500, 4750]
    for k, s in enumerate(result["summary"]):
        wers = [pc["rows"][k]["wer"] for pc in result["checkpoints"]]
        assert s["checkpoints"] == 2 and s["wer_min"] == min(wers) and s["wer_max"] == max(wers)
        assert s["wer_mean"] == pytest.approx(sum(wers) / 2)
