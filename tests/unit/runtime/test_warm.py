"""Warm starts (baige.runtime.warm): which commands run warm, and a warm worker runs a script
as ``python script.py`` would — ``__main__``, ``sys.argv``, its exit status, its ``atexit``
handlers, a traceback and status 1 for an uncaught exception."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import sys
from pathlib import Path

from baige.runtime.warm import run_python, warm_args

SCRIPT = """\
import atexit, json, os, sys
def done():
    with open(os.environ["OUT"] + ".atexit", "w") as f:
        f.write("ran")
atexit.register(done)
with open(os.environ["OUT"], "w") as f:
    json.dump({"name": __name__, "argv": sys.argv, "path0": sys.path[0],
               "session": os.getsid(0) == os.getpid()}, f)
if "--raise" in sys.argv:
    raise ValueError("boom")
sys.exit(int(sys.argv[-1]))
"""


def test_which_commands_run_warm(tmp_path: Path) -> None:
    here = sys.executable
    assert warm_args(here, ("-u", "train.py", "--steps", "3")) == ("train.py", "--steps", "3")
    assert warm_args(here, ("-m", "pkg.train", "--x")) == ("-m", "pkg.train", "--x")
    # a -u after the script is the script's own argument, kept
    assert warm_args(here, ("-u", "train.py", "-u", "3")) == ("train.py", "-u", "3")
    sibling = str(Path(here).with_name("python3"))
    if Path(sibling).exists():
        assert warm_args(sibling, ("train.py",)) == ("train.py",)
    assert warm_args(here, ("-c", "print(1)")) is None  # options python alone understands
    assert warm_args(here, ("-m",)) is None
    assert warm_args(here, ()) is None
    assert warm_args(shutil.which("sh") or "/bin/sh", ("train.py",)) is None
    other = tmp_path / "bin" / "python"  # another interpreter (another venv): its packages
    other.parent.mkdir()
    other.symlink_to(os.path.realpath(here))
    assert warm_args(str(other), ("train.py",)) is None


def _run(tmp_path: Path, *args: str) -> tuple[int | None, dict[str, object]]:
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    out = tmp_path / "out.json"
    os.environ["OUT"] = str(out)
    try:
        proc = multiprocessing.get_context("spawn").Process(
            target=run_python, args=(str(script), *args)
        )
        proc.start()
        proc.join(60)
    finally:
        del os.environ["OUT"]
    return proc.exitcode, json.loads(out.read_text())


def test_a_warm_worker_runs_the_script_as_python_would(tmp_path: Path) -> None:
    code, seen = _run(tmp_path, "--steps", "3")
    assert code == 3
    assert seen["name"] == "__main__" and seen["session"] is True
    assert seen["argv"] == [str(tmp_path / "script.py"), "--steps", "3"]
    assert seen["path0"] == str(tmp_path)
    assert (tmp_path / "out.json.atexit").read_text() == "ran"


def test_an_uncaught_exception_exits_1_after_the_atexit_handlers(tmp_path: Path) -> None:
    code, _ = _run(tmp_path, "--raise", "0")
    assert code == 1
    assert (tmp_path / "out.json.atexit").exists()
    code, _ = _run(tmp_path, "0")
    assert code == 0
