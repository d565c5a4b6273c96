"""Peer-memory checkpoints with real processes: a buddy server process, a trainer's
persister pushing to it, a node loss (shared memory gone), and restores that say where
they came from; a dead or hung buddy costs a bounded wait and falls back to disk."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch", reason="baige.ckpt needs torch: pip install 'baige[train]'")

from baige.ckpt import Checkpointer  # noqa: E402
from baige.ckpt.peer_client import PeerClient, PeerConfig  # noqa: E402

from .conftest import REPO, kill_all, persister_pids, wait_for  # noqa: E402

JOB = "llm-7b-run-3"
SECRET = b"per-job-secret-for-the-peer-tests"


@dataclass
class Buddy:
    proc: subprocess.Popen[bytes]
    address: str
    log: Path

    def client(self, timeout_s: float = 5.0) -> PeerClient:
        return PeerClient(self.address, SECRET, timeout_s=timeout_s)

    def steps(self, rank: int = 0) -> list[int]:
        return [s["step"] for s in self.client().list(JOB, rank)]


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "job.secret"
    path.write_bytes(SECRET)
    path.chmod(0o600)
    return path


@pytest.fixture
def buddy(tmp_path: Path, secret_file: Path) -> Iterator[Buddy]:
    """``python -m baige.ckpt.peer_server`` in its own process, on an ephemeral port."""
    log = tmp_path / "buddy.log"
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "baige.ckpt.peer_server", "--bind", "127.0.0.1:0",
             "--secret-file", str(secret_file), "--max-snapshots", "2", "--max-bytes", "64M"],
            stdout=subprocess.PIPE, stderr=err, env=env, cwd=REPO,
        )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().strip()
        assert line.startswith("listening on "), (line, log.read_text())
        yield Buddy(proc, line.removeprefix("listening on "), log)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGCONT)
        proc.kill()
        proc.wait(timeout=10)


def model_state(seed: int) -> dict[str, Any]:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.GELU(), torch.nn.Linear(128, 8))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(2):
        model(torch.randn(16, 64)).pow(2).mean().backward()
        opt.step()
    return {"model": model.state_dict(), "optim": opt.state_dict(), "data": {"seen": 32 * seed}}


def assert_identical(a: Any, b: Any) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape
        bits = [t.detach().reshape(-1).contiguous().view(torch.uint8) for t in (a, b)]
        assert bits[0].equal(bits[1])  # bit for bit (NaNs and -0.0 included)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            assert_identical(a[k], b[k])
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_identical(x, y)
    else:
        assert a == b


def lose_the_node(ck: Checkpointer, shm_root: Path) -> None:
    """What a node loss does to a rank: its trainer and persister die, its memory is gone."""
    ck.detach()
    kill_all(persister_pids(shm_root))
    for child in shm_root.iterdir():
        shutil.rmtree(child)


def test_restore_on_a_new_node_comes_from_the_buddy_bit_identical(
    tmp_path: Path, shm_root: Path, buddy: Buddy, secret_file: Path
) -> None:
    peer = PeerConfig(JOB, str(secret_file), buddy=buddy.address, timeout_s=5)
    ck = Checkpointer(tmp_path / "ck", shm_dir=shm_root, peer=peer)
    states = {step: model_state(step) for step in (1, 2, 3)}
    for step, state in states.items():
        ck.save(step, state)
        ck.wait()
        wait_for(lambda: step in buddy.steps(), 20, f"step {step} at the buddy")  # noqa: B023
    assert buddy.steps() == [2, 3]  # --max-snapshots 2: the oldest was evicted
    # Same node, memory intact: local memory wins (the same bytes, no network).
    same_node = ck.load()
    assert same_node is not None and (same_node.step, same_node.source) == (3, "memory")

    lose_the_node(ck, shm_root)
    ck = Checkpointer(tmp_path / "ck", shm_dir=shm_root, peer=peer)  # the new node
    restored = ck.load()
    assert restored is not None and (restored.step, restored.source) == (3, "buddy")
    assert_identical(restored.state, states[3])
    # into a template's own tensors, as from local memory
    template = model_state(9)
    weight = template["model"]["0.weight"]
    again = ck.load(template=template)
    assert again is not None and again.source == "buddy"
    assert again.state["model"]["0.weight"] is weight
    assert_identical(again.state, states[3])
    # an older step the buddy still holds
    older = ck.load(step=2)
    assert older is not None and older.source == "buddy"
    assert_identical(older.state, states[2])
    ck.close()

    persister_log = (tmp_path / "ck" / ".baige-logs" / "persister-r00000.log").read_text()
    assert "pushed step 3" in persister_log and "buddy holds" in persister_log
    server_log = buddy.log.read_text()
    assert f"stored {JOB} rank 0 step 3" in server_log and "MiB" in server_log
    stats = buddy.client().stats(JOB)
    assert stats["snapshots"] == 2 and 0 < stats["used_bytes"] <= stats["max_bytes"]


def test_a_dead_or_hung_buddy_costs_a_bounded_wait_then_disk(
    tmp_path: Path, shm_root: Path, buddy: Buddy, secret_file: Path
) -> None:
    peer = PeerConfig(JOB, str(secret_file), buddy=buddy.address, timeout_s=1.0)
    state = model_state(4)
    ck = Checkpointer(tmp_path / "ck", shm_dir=shm_root, peer=peer)
    ck.save(4, state)
    ck.wait()
    wait_for(lambda: 4 in buddy.steps(), 20, "step 4 at the buddy")
    lose_the_node(ck, shm_root)

    os.kill(buddy.proc.pid, signal.SIGSTOP)  # hung: accepts connections, never answers
    ck = Checkpointer(tmp_path / "ck", shm_dir=shm_root, peer=peer)
    started = time.monotonic()
    restored = ck.load()
    assert time.monotonic() - started < 10
    assert restored is not None and (restored.step, restored.source) == (4, "disk")
    assert_identical(restored.state, state)
    ck.close()

    os.kill(buddy.proc.pid, signal.SIGKILL)  # dead: connection refused at once
    buddy.proc.wait(timeout=10)
    assert buddy.client(timeout_s=1).fetch(JOB, 0) is None
    ck = Checkpointer(tmp_path / "ck", shm_dir=shm_root, peer=peer)
    restored = ck.load()
    assert restored is not None and (restored.step, restored.source) == (4, "disk")
    ck.save(5, state)  # saving goes on with the buddy gone; the push fails in the background
    assert ck.wait() == 5
    ck.close()


def test_a_wrong_secret_never_reaches_the_buddy(
    tmp_path: Path, shm_root: Path, buddy: Buddy
) -> None:
    wrong = tmp_path / "wrong.secret"
    wrong.write_bytes(b"some-other-jobs-secret")
    wrong.chmod(0o600)
    peer = PeerConfig(JOB, str(wrong), buddy=buddy.address, timeout_s=2)
    with Checkpointer(tmp_path / "ck", shm_dir=shm_root, peer=peer) as ck:
        ck.save(1, model_state(1))
        ck.wait()
        log = tmp_path / "ck" / ".baige-logs" / "persister-r00000.log"
        wait_for(lambda: "authentication failed" in log.read_text(), 20, "the refusal logged")
    assert buddy.steps() == []
    assert "wrong secret" in buddy.log.read_text()
