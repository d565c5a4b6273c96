"""Running ``baige run`` as a user does: ``python -m baige.runtime``, a real process with real
workers, and finding every process a run started (to prove none outlives its test); an
emulated node (an agent with its own shared memory and disk) that can be lost whole, used by
``test_node_loss.py`` and ``bench/node_loss.py``."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from baige.ckpt.checkpointer import DEFAULT_SHM_ROOT
from baige.ckpt.peer_client import PeerClient
from baige.ckpt.peer_protocol import PeerError, read_secret
from baige.ckpt.shm import runtime_dir
from baige.runtime.events import read_events

__all__ = [
    "EXAMPLE",
    "TOY",
    "EmulatedNode",
    "Run",
    "buddy_holds",
    "free_port",
    "kill_replica",
    "listeners",
    "lose_node_storage",
    "processes_of",
    "ranks_held",
    "reference_loss",
    "restore_sources",
    "run_baige",
    "spared_job",
]

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


def reference_loss(run_dir: Path, train: list[str]) -> str:
    """The final loss (hex) of the example trainer run with ``train`` on 2 ranks with
    nothing lost: what a run that lost a node must end with, bit for bit."""
    out = run_dir.with_suffix(".json")
    reference = run_baige(
        run_dir,
        ["--nproc-per-node", "2", "--", sys.executable, str(EXAMPLE), *train, "--out", str(out)],
    )
    assert reference.returncode == 0, reference.stderr[-3000:]
    return str(json.loads(out.read_text())["loss_hex"])


def spared_job(tmp_path: Path, train: list[str], home: Path, extra: str = "") -> str:
    """A TrainingJob of two replicas and a spare, each running `baige run` with the example
    trainer and its node's own checkpoint directory (``--ckpt-dir …/$(BAIGE_NODE)``);
    ``home`` is their BAIGE_HOME (where their events are), ``extra`` more spec lines."""
    command = [
        sys.executable, "-m", "baige.runtime", "--nproc-per-node", "1", "--node-timeout", "3",
        "--monitor-interval", "0.1", "--progress-every", "0.5", "--",
        sys.executable, str(EXAMPLE), *train, "--ckpt-dir", f"{tmp_path / 'ckpt'}/$(BAIGE_NODE)",
    ]  # fmt: skip
    return f"""\
kind: TrainingJob
name: spared
queue: default
replicas: 2
spares: 1
accelerators: {{count: 1, types: [h100]}}
command: {json.dumps(command)}
env: {{BAIGE_HOME: "{home}"}}
{extra}"""


def restore_sources(events: Path) -> list[object]:
    """The sources of every ``restored`` event in a `baige run` events file."""
    return [e.get("source") for e in read_events(events) if e.get("event") == "restored"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def buddy_holds(address: str, secret: Path, rank: int, run_id: str) -> int:
    """The newest step the buddy at ``address`` holds for ``rank`` of ``run_id`` (-1: none)."""
    client = PeerClient(address, read_secret(secret), timeout_s=2.0)
    try:
        held = client.list(run_id, rank)
    except PeerError:
        return -1
    return max((int(item["step"]) for item in held), default=-1)


class EmulatedNode:
    """One emulated node: a ``baige run`` agent with its own run dir and shared memory."""

    def __init__(self, tmp: Path, shm: Path, name: str, args: list[str]) -> None:
        self.run_dir = tmp / name
        self.shm = shm / name
        self.shm.mkdir()
        self.out = tmp / f"{name}.out"
        env = {k: v for k, v in os.environ.items() if not k.startswith("BAIGE_")}
        env.update(BAIGE_CKPT_SHM_DIR=str(self.shm), BAIGE_NODE=name)
        cmd = [sys.executable, "-m", "baige.runtime", "--run-dir", str(self.run_dir), *args]
        with self.out.open("w") as out:
            self.proc = subprocess.Popen(
                cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def logged_step(self) -> int:
        steps = [int(m[1]) for m in re.finditer(r"step=(\d+) loss=", self.out.read_text())]
        return max(steps, default=-1)

    def stop(self) -> None:
        """Every process that belongs to the node, killed."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        for pid in processes_of(self.run_dir) + processes_of(self.shm):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait()

    def kill_whole_node(self) -> None:
        """Every process that belongs to the node, then its memory and its local disk."""
        self.stop()
        shutil.rmtree(self.shm)
        shutil.rmtree(self.run_dir / "ckpt")

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            pytest.fail(f"{self.run_dir.name} did not finish:\n{self.out.read_text()[-4000:]}")

    def events(self, name: str) -> list[dict[str, Any]]:
        path = self.run_dir / "events.jsonl"
        return [e for e in read_events(path) if e["event"] == name] if path.exists() else []


# ---------------------------------------------------------------- replicas of a platform


def kill_replica(replica: str) -> None:
    """Every process of a platform's replica: those carrying its id in their environment
    (the checkpoint persister leaves the replica's process group on purpose)."""
    marker = f"BAIGE_REPLICA_ID={replica}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                os.kill(int(entry.name), signal.SIGKILL)


def lose_node_storage(ckpt_dir: Path) -> None:
    """What a lost node takes with it of a checkpoint directory: its shared memory, then
    the directory itself (the node's local disk)."""
    shutil.rmtree(runtime_dir(DEFAULT_SHM_ROOT, ckpt_dir), ignore_errors=True)
    shutil.rmtree(ckpt_dir)


def ranks_held(addresses: list[str], secret: Path, job: str) -> set[int]:
    """The ranks of ``job`` that some buddy server at ``addresses`` holds a snapshot of."""
    held: set[int] = set()
    for address in addresses:
        with contextlib.suppress(PeerError):
            held |= {int(i["rank"]) for i in PeerClient(address, read_secret(secret)).list(job)}
    return held


def listeners(port: int) -> set[int]:
    """Pids holding a socket that listens on ``port`` (the rendezvous store's host)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                inodes.add(fields[9])
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    pids.add(int(entry.name))
        except OSError:
            continue
    return pids
