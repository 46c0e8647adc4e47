"""The tests' fallback for a machine without FSDD (tests/corpus.py), exercised even where FSDD is present."""

import os
import subprocess
import sys

import corpus

SCRIPT = """
import corpus
note = corpus.install()
from stateport.train.fsdd import FSDD_SPEAKERS, load_fsdd
clips = load_fsdd()
print(len(clips), sorted({c.speaker for c in clips}) == sorted(FSDD_SPEAKERS), corpus.FULL_FSDD_DIR is None)
print(note)
"""


def test_a_machine_without_fsdd_composes_from_the_shipped_recordings(tmp_path):
    env = {**os.environ, "STATEPORT_FSDD_DIR": str(tmp_path / "no-fsdd")}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=corpus.TESTS_DIR, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    counts, note = proc.stdout.splitlines()[:2]
    assert counts == "61 True True"  # 40 calibration recordings + 21 test recordings, all five speakers
    assert "tests that need the whole corpus skip" in note


def test_shipped_recordings_keep_their_attribution_and_calibration_never_uses_the_test_speaker():
    import json

    from stateport.assets import builtin_dir, calibration_dir

    for folder in corpus.SHIPPED_DIRS:
        text = (folder / "ATTRIBUTION.md").read_text()
        assert "Free Spoken Digit Dataset" in text and "CC BY-SA 4.0" in text
    metrics = json.loads((builtin_dir() / "metrics.json").read_text())
    files = sorted(calibration_dir().glob("*.wav"))
    speakers = {p.name.split("_")[1] for p in files}
    assert len(files) == 40 and speakers == set(metrics["train_speakers"])
    assert metrics["held_out_speaker"] not in speakers
