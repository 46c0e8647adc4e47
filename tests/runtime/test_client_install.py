"""``pip install stateport`` is the client: a fresh virtual environment, no extras, no torch.

The package is installed from this checkout into a new venv under the test's temporary folder
(it downloads numpy, onnx, onnxruntime, kaldi-native-fbank, soundfile, soxr and tqdm from the
package index: about a minute). There, ``stateport stream`` and ``inspect`` run on the shipped
model, ``stateport.transcribe_file`` works, torch is absent, and a verb that needs torch says
which extra to install. Slow (CI runs it: ``pytest -q`` runs every test).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, **kw)


@pytest.mark.slow
def test_client_install_without_extras_runs_stream_and_inspect(tmp_path):
    from stateport.assets import default_model_path
    from stateport.demo import demo_clips

    env_dir = tmp_path / "client-venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    bin_dir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    python = str(bin_dir / "python")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    install = _run([python, "-m", "pip", "install", "-q", "-e", str(REPO)], env=env)
    if install.returncode and any(s in install.stderr for s in ("NewConnectionError", "Temporary failure in name",
                                                                  "No matching distribution found")):
        pytest.skip(f"the package index is not reachable: {install.stderr.strip().splitlines()[-1]}")
    assert install.returncode == 0, install.stderr[-3000:]

    listed = _run([python, "-m", "pip", "list", "--format", "json"], env=env)
    names = {p["name"].lower().replace("_", "-") for p in json.loads(listed.stdout)}
    assert "torch" not in names and {"onnxruntime", "kaldi-native-fbank", "soxr", "numpy"} <= names

    clip, reference = demo_clips()[3]
    cli = str(bin_dir / "stateport")
    out = _run([cli, "stream", clip, "--json"], env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["text"] == reference and doc["model_trust"]["certificate"] == "passed"

    out = _run([cli, "inspect", str(default_model_path()), "--json"], env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["trust"]["card_matches_graph"] is True

    probe = ("import sys, stateport; r = stateport.transcribe_file(sys.argv[1]); "
             "print(r.text); print('torch' in sys.modules)")
    out = _run([python, "-c", probe, clip], env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [reference, "False"]

    out = _run([cli, "export", "--arch", "lstm-ctc", "-o", str(tmp_path / "x.onnx"), "--json"], env=env,
               cwd=tmp_path)
    assert out.returncode == 2, (out.stdout, out.stderr)
    error = json.loads(out.stdout)["error"]
    assert error["code"] == "MISSING_DEPENDENCY" and 'pip install "stateport[export]"' in error["message"]
    assert sys.executable != python  # the test ran the client venv, not this one
