"""stateport.atomic: a file appears at its path complete, or not at all; the previous one survives anything else."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from stateport.atomic import atomic_output, atomic_write_text, check_output_path, failed_path
from stateport.errors import OutputPathError


def _leftovers(folder) -> list:
    return sorted(f for f in os.listdir(folder) if "stateport-tmp" in f or "stateport-old" in f)


def test_commit_replaces_and_an_exception_keeps_the_previous_file(tmp_path):
    path = tmp_path / "m.onnx"
    atomic_write_text(path, "first")
    with pytest.raises(RuntimeError):
        with atomic_output(path) as target:
            with open(target.tmp, "w") as f:
                f.write("half written")
            assert os.path.dirname(target.tmp) == str(tmp_path) and target.tmp.endswith(".onnx")
            raise RuntimeError("the proof crashed")
    assert path.read_text() == "first" and not _leftovers(tmp_path)
    with atomic_output(path) as target:
        with open(target.tmp, "w") as f:
            f.write("second")
        target.commit()
    assert path.read_text() == "second" and not _leftovers(tmp_path)


def test_not_committing_writes_nothing_and_evidence_goes_beside(tmp_path):
    path = tmp_path / "m.onnx"
    with atomic_output(path) as target:
        open(target.tmp, "w").close()
    assert not path.exists()
    with atomic_output(path) as target:
        with open(target.tmp, "w") as f:
            f.write("failed proof")
        kept = target.keep_as(failed_path(path))
    assert kept == str(tmp_path / "m.failed.onnx") and not path.exists()
    assert os.listdir(tmp_path) == ["m.failed.onnx"]


def test_failed_path_names():
    assert failed_path("a/model.int8.onnx") == "a/model.int8.failed.onnx"
    assert failed_path("out/rnnt/", "") == "out/rnnt.failed"
    assert failed_path("m.mlpackage", ".mlpackage") == "m.failed.mlpackage"
    assert failed_path("m.xml", ".xml") == "m.failed.xml"


def test_a_folder_output_is_swapped_whole_and_only_over_its_own_kind(tmp_path):
    out = tmp_path / "graphs"
    ours = lambda p: set(os.listdir(p)) <= {"a.onnx", "b.onnx"}  # noqa: E731
    for content in ("one", "two"):
        with atomic_output(out, directory=True, replaceable=ours) as target:
            for name in ("a.onnx", "b.onnx"):
                (tmp_path / target.tmp / name).write_text(content)
            target.commit()
        assert sorted(os.listdir(out)) == ["a.onnx", "b.onnx"] and (out / "a.onnx").read_text() == content
    (out / "notes.txt").write_text("the user's")
    with pytest.raises(OutputPathError, match="holding files stateport did not write"):
        with atomic_output(out, directory=True, replaceable=ours):
            pass
    assert (out / "notes.txt").exists() and not _leftovers(tmp_path)


def test_companion_files_move_with_their_file(tmp_path):
    path = tmp_path / "m.xml"
    for content in ("v1", "v2"):
        with atomic_output(path, companions=(".bin",)) as target:
            open(target.tmp, "w").write(f"xml {content}")
            open(os.path.splitext(target.tmp)[0] + ".bin", "w").write(f"bin {content}")
            target.commit()
        assert path.read_text() == f"xml {content}" and (tmp_path / "m.bin").read_text() == f"bin {content}"
    assert sorted(os.listdir(tmp_path)) == ["m.bin", "m.xml"]


def test_new_files_get_the_usual_permissions(tmp_path):
    """mkstemp makes private files; an artifact must be readable like any file the user writes."""
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "x.json", "{}")
    finally:
        os.umask(old)
    assert oct(os.stat(tmp_path / "x.json").st_mode & 0o777) == "0o644"


@pytest.mark.parametrize("case", ["missing folder", "folder at the path", "file where a folder goes"])
def test_output_paths_that_cannot_be_written(case, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "file").write_text("x")
    path, directory, expected = {
        "missing folder": (tmp_path / "nope" / "m.onnx", False, "does not exist"),
        "folder at the path": (tmp_path / "taken", False, "is a folder"),
        "file where a folder goes": (tmp_path / "file", True, "is a file"),
    }[case]
    with pytest.raises(OutputPathError, match=expected) as e:
        check_output_path(path, directory=directory)
    assert e.value.code == "INVALID_OUTPUT" and "\n" not in e.value.message


def without_root_override() -> list:
    """A command prefix that makes a child obey permission bits (root ignores them), or [] when we are not root."""
    if os.geteuid() != 0:
        return []
    import shutil

    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: permission bits do not apply to this process")
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]


def test_a_read_only_folder_is_a_typed_error(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    os.chmod(folder, 0o555)
    code = ("import sys\nfrom stateport.atomic import atomic_output\nfrom stateport.errors import OutputPathError\n"
            "try:\n    with atomic_output(sys.argv[1]):\n        pass\n"
            "except OutputPathError as e:\n    print(e.code, e.message)\n")
    try:
        done = subprocess.run([*without_root_override(), sys.executable, "-c", code, str(folder / "m.onnx")],
                              capture_output=True, text=True, timeout=60)
    finally:
        os.chmod(folder, 0o755)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("INVALID_OUTPUT") and "not writable" in done.stdout
    assert os.listdir(folder) == []


SIGTERM_CHILD = textwrap.dedent("""
    import sys, time
    from stateport.atomic import atomic_output
    with atomic_output(sys.argv[1]) as target:
        with open(target.tmp, "w") as f:
            f.write("half")
        print("writing", flush=True)
        time.sleep(60)
        target.commit()
""")


def test_sigterm_removes_the_temporary_and_keeps_the_previous_file(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_text("previous")
    child = subprocess.Popen([sys.executable, "-c", SIGTERM_CHILD, str(path)], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "writing"
    assert len(_leftovers(tmp_path)) == 1
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=30) == 128 + signal.SIGTERM
    assert path.read_text() == "previous" and not _leftovers(tmp_path)


def test_sigterm_keeps_a_handler_someone_else_installed(tmp_path):
    """Only the default SIGTERM action is replaced (and restored): an application's own handler stays."""
    code = textwrap.dedent("""
        import signal, sys
        from stateport.atomic import atomic_output
        mine = lambda *a: None
        signal.signal(signal.SIGTERM, mine)
        with atomic_output(sys.argv[1]) as target:
            assert signal.getsignal(signal.SIGTERM) is mine
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        with atomic_output(sys.argv[1]) as target:
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "x.onnx")], capture_output=True, text=True,
                          timeout=60)
    assert done.stdout.strip() == "ok", done.stderr
