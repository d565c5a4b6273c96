"""Running ``baige run`` as a user does: ``python -m baige.runtime``, a real process with real
workers, and finding every process a run started (to prove none outlives its test)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from baige.runtime.events import read_events

__all__ = ["EXAMPLE", "TOY", "Run", "processes_of", "run_baige"]

ROOT = Path(__file__).parents[3]
EXAMPLE = ROOT / "examples" / "runtime" / "train_transformer.py"
TOY = Path(__file__).parent / "toy_trainer.py"


@dataclass
class Run:
    returncode: int
    stderr: str
    stdout: str
    run_dir: Path

    @property
    def events(self) -> list[dict[str, Any]]:
        path = self.run_dir / "events.jsonl"
        return list(read_events(path)) if path.exists() else []

    def named(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == name]


def processes_of(run_dir: Path) -> list[int]:
    """Every live process started for this run: agent, workers, checkpoint persisters (they
    all carry BAIGE_RUN_DIR, or the run directory on their command line)."""
    needle_env = f"BAIGE_RUN_DIR={run_dir}".encode()
    needle_cmd = str(run_dir).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if (entry / "stat").read_text().split()[2] == "Z":
                continue
            env = (entry / "environ").read_bytes().split(b"\0")
            cmd = (entry / "cmdline").read_bytes()
            if needle_env in env or needle_cmd in cmd:
                found.append(int(entry.name))
    return found


def run_baige(
    run_dir: Path, args: list[str], env: dict[str, str] | None = None, timeout: float = 120
) -> Run:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("BAIGE_")}
    full_env.update(env or {})
    cmd = [sys.executable, "-m", "baige.runtime", "--run-dir", str(run_dir), *args]
    proc = subprocess.Popen(
        cmd,
        env=full_env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"baige run did not finish in {timeout} s:\n{err[-5000:]}")
    return Run(proc.returncode, err, out, run_dir)
