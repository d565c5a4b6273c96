"""A whole node lost mid-run, for real: every process of it killed and its shared memory gone.

Two ``baige run`` agents on this machine are the two nodes of a job (one rank each, a c10d
rendezvous, each with its own shared-memory root as a node has its own RAM and its own
checkpoint directory as a node has its own disk: nothing is read from shared storage). Each holds the other's snapshots in its buddy server
(``--peer-bind`` / ``--peer-buddy``). Node B is killed with SIGKILL — agent, worker,
checkpoint persister — and its shared memory is deleted; a spare agent with empty shared
memory joins the job in its place. Node A's group restarts, the rendezvous admits the spare,
which restores B's rank from A's memory (the buddy) while A restores its own from local
memory, and the run ends with bit for bit the final loss of a run that lost nothing.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.runtime.harness import (
    EXAMPLE,
    EmulatedNode,
    buddy_holds,
    free_port,
    reference_loss,
)

STEPS = 60
SAVE_EVERY = 8
KILL_AT = 28  # node B dies once it has logged this step
TRAIN = ["--steps", str(STEPS), "--save-every", str(SAVE_EVERY), "--log-every", "1",
         "--linger", "60"]  # fmt: skip


@pytest.fixture
def shm_nodes() -> Iterator[Path]:
    root = Path("/dev/shm") / f"baige-node-loss-{uuid.uuid4().hex[:8]}"
    root.mkdir()
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_a_whole_node_lost_mid_run_resumes_from_the_buddys_memory_on_a_spare(
    tmp_path: Path, shm_nodes: Path
) -> None:
    expected = reference_loss(tmp_path / "reference", TRAIN)

    secret = tmp_path / "job.secret"
    secret.write_text(secrets.token_hex(32))
    secret.chmod(0o600)
    out = tmp_path / "final.json"
    rdzv, port_a, port_b, port_c = (free_port() for _ in range(4))

    def node(name: str, bind: int, buddy: int, *extra: str) -> EmulatedNode:
        args = [
            "--nnodes", "2", "--nproc-per-node", "1", "--rdzv-endpoint", f"127.0.0.1:{rdzv}",
            "--run-id", "node-loss", "--max-restarts", "3", "--node-timeout", "3",
            "--peer-secret-file", str(secret), "--peer-bind", f"127.0.0.1:{bind}",
            "--peer-buddy", f"127.0.0.1:{buddy}", *extra,
            "--", sys.executable, str(EXAMPLE), *TRAIN, "--out", str(out),
        ]  # fmt: skip
        return EmulatedNode(tmp_path, shm_nodes, name, args)

    a = node("node-a", port_a, port_b)  # first, so the lower pid: rank 0 in every round
    time.sleep(1.0)
    b = node("node-b", port_b, port_a)
    spare: EmulatedNode | None = None
    try:
        deadline = time.monotonic() + 120
        while b.logged_step() < KILL_AT:
            assert b.proc.poll() is None, b.out.read_text()[-3000:]
            assert time.monotonic() < deadline, b.out.read_text()[-3000:]
            time.sleep(0.05)
        # B freezes, then dies. While it is frozen its persister finishes pushing the last
        # save it made to A: the test is then about restoring, not about a push's timing
        os.killpg(b.proc.pid, signal.SIGSTOP)
        last_save = max(s for s in range(b.logged_step()) if (s + 1) % SAVE_EVERY == 0)
        while buddy_holds(f"127.0.0.1:{port_a}", secret, rank=1, run_id="node-loss") < last_save:
            assert time.monotonic() < deadline, f"step {last_save} never reached the buddy"
            time.sleep(0.1)
        b.kill_whole_node()
        killed_at = time.time()
        # the spare holds the buddy's role for A from now on, and finds B's snapshots at A
        spare = node("spare", port_c, port_a, "--peer-fetch-from", f"127.0.0.1:{port_a}")
        assert a.wait(180) == 0, a.out.read_text()[-4000:]
        assert spare.wait(60) == 0, spare.out.read_text()[-4000:]
    finally:
        for n in (a, b, spare):
            if n is not None and n.proc.poll() is None:
                os.killpg(n.proc.pid, signal.SIGKILL)

    (restored,) = spare.events("restored")
    assert restored["source"] == "buddy", spare.out.read_text()[-3000:]
    assert int(str(restored["step"])) >= KILL_AT - SAVE_EVERY  # the last save before the loss
    a_restored = a.events("restored")
    assert [e["source"] for e in a_restored] == ["memory"]
    assert restored["step"] == a_restored[0]["step"]  # both ranks resumed from one step
    assert float(str(restored["ts"])) > killed_at

    assert json.loads(out.read_text())["loss_hex"] == expected
