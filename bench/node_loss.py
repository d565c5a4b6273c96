"""Benchmark: a whole node lost → the job training again on a spare, a hot spare (waiting in
the rendezvous before the loss) against a cold one (started after it).

Two ``baige run`` agents on this machine are the two nodes of a job (one rank each, c10d
rendezvous, ``--node-timeout 3``, each its own shared memory and checkpoint directory, each
holding the other's snapshots in its buddy server). Node B is frozen once it has logged step
``--kill-at``, its last save is waited for at its buddy A, then every process of B is killed
and its memory and disk deleted (as ``tests/integration/runtime/test_node_loss.py`` does).

- **hot**: the spare agent was started after the two had formed their rendezvous; the
  rendezvous is full (``--nnodes 2``), so it waits on torch's redundancy list with its
  forkserver already warm, and is admitted when B's keep-alive lapses.
- **cold**: the spare agent is started right after the kill.

Per run it prints, from the kill: A's detection of its crashed collective, the spare's
workers starting (the new rendezvous round), the spare's restore from A's memory (the buddy)
and its first step. Rounds alternate hot and cold; medians over ``--rounds`` of each.

    python bench/node_loss.py [--rounds 5] [--steps 60] [--kill-at 28]
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# the emulated node of tests/integration/runtime/test_node_loss.py (needs the test extras)
from tests.integration.runtime.harness import (  # noqa: E402  (after the path)
    EXAMPLE,
    EmulatedNode,
    buddy_holds,
    free_port,
)

SAVE_EVERY = 8


def one_run(hot: bool, args: argparse.Namespace, work: Path) -> dict[str, float]:
    run_id = f"node-loss-{uuid.uuid4().hex[:6]}"
    shm = Path("/dev/shm") / f"baige-bench-{run_id}"
    shm.mkdir()
    secret = work / "job.secret"
    secret.write_text(secrets.token_hex(32))
    secret.chmod(0o600)
    rdzv, port_a, port_b, port_c = (free_port() for _ in range(4))
    train = ["--steps", str(args.steps), "--save-every", str(SAVE_EVERY), "--log-every", "1",
             "--linger", "60"]  # fmt: skip

    def node(name: str, bind: int, buddy: int, *extra: str) -> EmulatedNode:
        return EmulatedNode(work, shm, name, [
            "--nnodes", "2", "--nproc-per-node", "1", "--rdzv-endpoint", f"127.0.0.1:{rdzv}",
            "--run-id", run_id, "--max-restarts", "3", "--node-timeout", "3",
            "--peer-secret-file", str(secret), "--peer-bind", f"127.0.0.1:{bind}",
            "--peer-buddy", f"127.0.0.1:{buddy}", *extra,
            "--", sys.executable, str(EXAMPLE), *train,
        ])  # fmt: skip

    spare_args = ("spare", port_c, port_a, "--peer-fetch-from", f"127.0.0.1:{port_a}")
    a = node("node-a", port_a, port_b)
    time.sleep(1.0)
    b = node("node-b", port_b, port_a)
    spare: EmulatedNode | None = None
    try:
        deadline = time.monotonic() + 180
        while b.logged_step() < 2:  # the two have formed the job
            if time.monotonic() > deadline or b.proc.poll() is not None:
                raise RuntimeError(f"node B did not start:\n{b.out.read_text()[-2000:]}")
            time.sleep(0.05)
        if hot:
            spare = node(*spare_args)  # waits in the rendezvous's redundancy list
        while b.logged_step() < args.kill_at:
            if time.monotonic() > deadline or b.proc.poll() is not None:
                raise RuntimeError(f"node B stopped early:\n{b.out.read_text()[-2000:]}")
            time.sleep(0.02)
        os.killpg(b.proc.pid, signal.SIGSTOP)
        last_save = max(s for s in range(b.logged_step()) if (s + 1) % SAVE_EVERY == 0)
        while buddy_holds(f"127.0.0.1:{port_a}", secret, 1, run_id) < last_save:
            if time.monotonic() > deadline:
                raise RuntimeError(f"step {last_save} never reached the buddy")
            time.sleep(0.05)
        killed = time.time()
        b.kill_whole_node()
        if not hot:
            spare = node(*spare_args)
        assert spare is not None
        for n in (a, spare):
            try:
                code = n.proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise RuntimeError(f"{n.run_dir.name} did not finish:\n"
                                   f"{n.out.read_text()[-2000:]}") from None  # fmt: skip
            if code != 0:
                raise RuntimeError(f"{n.run_dir.name} exited {code}:\n{n.out.read_text()[-2000:]}")
    finally:
        for n in (a, b, spare):
            if n is not None and n.proc.poll() is None:
                n.stop()
        shutil.rmtree(shm, ignore_errors=True)
    detected = [e["ts"] for e in a.events("fault_detected") if e["ts"] > killed]
    started = [e["ts"] for e in spare.events("workers_started")]
    restored = spare.events("restored")
    if not restored or restored[0].get("source") != "buddy":
        raise RuntimeError(f"the spare did not restore from the buddy: {restored}")
    return {
        "detect_s": (min(detected) - killed) if detected else float("nan"),
        "spare_workers_s": started[-1] - killed,
        "restored_s": float(restored[0]["ts"]) - killed,
        "restore_s": float(restored[0]["ts"]) - started[-1],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5, help="runs of each kind (hot, cold)")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--kill-at", type=int, default=28)
    args = p.parse_args()
    if args.rounds < 1 or not 10 <= args.kill_at < args.steps - 10:
        p.error("--rounds >= 1 and 10 <= --kill-at < --steps - 10")
    results: dict[str, list[dict[str, float]]] = {"hot": [], "cold": []}
    for index in range(args.rounds):
        for kind in ("hot", "cold") if index % 2 == 0 else ("cold", "hot"):
            with tempfile.TemporaryDirectory(prefix="baige-node-loss-") as work:
                got = one_run(kind == "hot", args, Path(work))
            results[kind].append(got)
            print(f"round {index + 1} {kind:>4}: detected {got['detect_s']:.2f} s, spare's "
                  f"workers {got['spare_workers_s']:.2f} s, restored from the buddy "
                  f"{got['restored_s']:.2f} s after the kill (restore {got['restore_s']:.2f} s)",
                  flush=True)  # fmt: skip
    print("\nmedians (seconds from the kill)")
    for kind, runs in results.items():
        every = ", ".join(f"{r['restored_s']:.1f}" for r in runs)
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(f"  {kind:>4} spare: detected {med['detect_s']:.2f}, spare's workers started "
              f"{med['spare_workers_s']:.2f}, restored {med['restored_s']:.2f} "
              f"(restore itself {med['restore_s']:.2f}); all: "
              f"{every}")  # fmt: skip


if __name__ == "__main__":
    main()
