"""The checkpoint benchmarks still run: each in its ``--quick`` smoke mode (a few tens of
MB, one or two rounds), side by side to save time. Their figures are not checked (speed is
never a test), only that every table and ratio is printed from real measurements."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="baige.ckpt needs torch: pip install 'baige[train]'")

BENCH = Path(__file__).resolve().parents[3] / "bench"


def test_ckpt_benchmarks_run_in_quick_mode(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(BENCH.parent / "src")}
    runs = {
        "ckpt_peers": [sys.executable, str(BENCH / "ckpt_peers.py"), "--quick", "--no-dlrover",
                       "--disk", str(tmp_path)],
        "ckpt_save": [sys.executable, str(BENCH / "ckpt_save.py"), "--quick",
                      "--disk", str(tmp_path)],
    }  # fmt: skip
    pipe, merged = subprocess.PIPE, subprocess.STDOUT
    procs = {
        name: subprocess.Popen(cmd, stdout=pipe, stderr=merged, text=True, env=env)
        for name, cmd in runs.items()
    }
    out = {}
    for name, proc in procs.items():
        out[name], _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{name} failed:\n{out[name][-3000:]}"

    peers = out["ckpt_peers"]
    assert "DLRover off" in peers
    for row in ("save, blocking", "durable on disk", "restore from memory, into tensors",
                "restore from disk, cold, into tensors"):  # fmt: skip
        assert re.search(rf"{re.escape(row)}\s+\w+\s+\d+\.\d{{3}}", peers), row
    ratio = re.search(r"memory restore: baige ÷ copy\s+(\d+\.\d+) x .*target <= 2", peers)
    assert ratio is not None and float(ratio.group(1)) > 0, peers
    assert "disk cold: baige ÷ torch.load" in peers
    assert "dlrover" not in peers.split("DLRover off", 1)[1].lower()

    save = out["ckpt_save"]
    for row in ("save() blocking", "memory-copy bound", "persist (save -> on disk)",
                "restore from memory", "restore from disk"):  # fmt: skip
        assert re.search(rf"{re.escape(row)}\s+\d+\.\d{{3}} s", save), row
    assert re.search(r"3 saves: Shmem\s+\d", save)
    assert list(tmp_path.iterdir()) == []  # every run cleans up after itself
