"""Real processes for the checkpoint tests: each test gets its own folder in /dev/shm,
persisters are real detached processes, trainers are subprocesses killed with SIGKILL, and
multi-rank runs use torch.distributed over gloo on 127.0.0.1.

Whatever a test does, its persisters are killed and its shared memory removed afterwards;
``no_leak`` additionally fails a test that closed everything but left something behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
SHM = Path("/dev/shm")


def persister_pids(root: Path) -> list[int]:
    """Live persister processes whose runtime folder is under ``root``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"baige.ckpt.persister" in cmd and any(str(root).encode() in c for c in cmd):
            pids.append(int(entry.name))
    return pids


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for pid in pids:  # reap our own children; others are reaped by init
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


@pytest.fixture
def shm_root() -> Iterator[Path]:
    """A private shared-memory root for this test's checkpointers."""
    root = SHM / f"baige-test-{uuid.uuid4().hex[:12]}"
    root.mkdir()
    try:
        yield root
    finally:
        kill_all(persister_pids(root))
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def no_leak(shm_root: Path) -> Iterator[Callable[[], None]]:
    """Call the returned function at the end of a test whose checkpointers were all closed:
    it waits briefly for persisters to exit, then fails if any process or shm file is left."""

    def check() -> None:
        deadline = time.monotonic() + 10
        while (persister_pids(shm_root) or any(shm_root.iterdir())) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert persister_pids(shm_root) == [], "persister processes left running"
        assert sorted(p.name for p in shm_root.rglob("*")) == [], "shared memory left behind"

    yield check


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def worker_cmd(scenario: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "tests.integration.ckpt.workers", scenario, *args]


def env_for(rank: int = 0, world: int = 1, port: int = 0) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "src"), env.get("PYTHONPATH", "")])
    env.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        OMP_NUM_THREADS="1",
    )
    return env


def start(scenario: str, *args: str, rank: int = 0, world: int = 1, port: int = 0):
    return subprocess.Popen(
        worker_cmd(scenario, *args),
        cwd=REPO,
        env=env_for(rank, world, port),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def run_ranks(scenario: str, world: int, *args: str, timeout: float = 120) -> list[int]:
    """Run ``world`` ranks of a scenario to the end; return their exit codes (a rank killed
    by SIGKILL reports -9). Fails with the ranks' output if one hangs."""
    port = free_port()
    procs = [start(scenario, *args, rank=r, world=world, port=port) for r in range(world)]
    deadline = time.monotonic() + timeout
    outputs = []
    for p in procs:
        try:
            out, _ = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail(
                f"{scenario} ranks hung:\n" + "\n".join(str(q.communicate()[0]) for q in procs)
            )
        outputs.append(out.decode(errors="replace"))
    codes = [p.returncode for p in procs]
    if any(c not in (0, -signal.SIGKILL) for c in codes):
        pytest.fail(
            f"{scenario} failed with {codes}:\n" + "\n---\n".join(o[-3000:] for o in outputs)
        )
    return codes


def wait_for(predicate: Callable[[], object], timeout: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what or predicate}")
        time.sleep(0.01)
