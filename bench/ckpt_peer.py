"""Benchmark: what peer-memory checkpoints cost, on this machine, over loopback.

1. Throughput: a snapshot (a tensor image and a small structure shard, as a slot holds)
   pushed to a buddy server in another process (``python -m baige.ckpt.peer_server``) and
   fetched back, per size (default 256 MB and 1 GB): the median of ``--repeat`` rounds
   after a warm-up round. A push counts from connect to the buddy's verified commit
   (handshake, HMAC-SHA256 on every frame on both sides, CRC-32 per shard on the server);
   a fetch from connect to the last byte received, CRC-checked.

2. Step slowdown: a toy training loop (an MLP on one torch thread) timed in interleaved
   rounds with and without pushes running in the background, reported as the median of
   per-round ratios (step time with ÷ without), so drift on a shared machine cancels out.
   Two ways of pushing: from another process, as the persister does (the realistic case:
   the trainer only loses CPU to it), and from a ``PeerPusher`` thread inside the trainer
   (``push()`` is also timed: it must never block). Pushes run back to back, which is the
   worst case: real checkpoints are minutes apart.

Over loopback both ends of the transfer, and the buddy's work, run on this machine, so
both figures are pessimistic for two machines joined by a fast network. No timed
assertion lives in tests; this is where the numbers come from.

    python bench/ckpt_peer.py [--sizes-mb 256 1024] [--repeat 5] [--rounds 6]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch

from baige.ckpt.checksum import CRC32_IMPL, crc32
from baige.ckpt.peer_client import PeerClient, PeerPusher
from baige.ckpt.peer_protocol import ShardSpec, Snapshot, SnapshotMeta

SRC = Path(__file__).resolve().parents[1] / "src"
MB = 1e6
SECRET = b"benchmark-secret-0123456789"
JOB = "bench"


def make_snapshot(nbytes: int, step: int = 1) -> Snapshot:
    """``nbytes`` of random tensor bytes and a 64 KiB structure shard."""
    image = torch.randint(0, 256, (nbytes,), dtype=torch.uint8).numpy().data
    pkl = os.urandom(64 << 10)
    meta = SnapshotMeta(
        JOB, 0, step, step, 1, "root",
        (ShardSpec("image", len(image), crc32(image)), ShardSpec("pkl", len(pkl), crc32(pkl))),
    )  # fmt: skip
    return Snapshot(meta, (image, pkl))


class Server:
    """A buddy server process holding one snapshot per rank."""

    def __init__(self, secret_file: Path, max_bytes: int) -> None:
        env = dict(os.environ, PYTHONPATH=str(SRC))
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "baige.ckpt.peer_server", "--bind", "127.0.0.1:0",
             "--secret-file", str(secret_file), "--max-snapshots", "1",
             "--max-bytes", str(max_bytes)],
            stdout=subprocess.PIPE, stderr=self.log, env=env,
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode().strip()
        if not line.startswith("listening on "):
            self.log.seek(0)
            raise RuntimeError(f"buddy did not start: {line} {self.log.read().decode()[-2000:]}")
        self.address = line.removeprefix("listening on ")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def throughput(address: str, size_mb: float, repeat: int) -> dict[str, float]:
    snap = make_snapshot(int(size_mb * MB))
    client = PeerClient(address, SECRET, timeout_s=120)
    total = snap.meta.total
    push, fetch = [], []
    for i in range(repeat + 1):  # round 0 is the warm-up
        t0 = time.perf_counter()
        client.push(snap)
        t1 = time.perf_counter()
        got = client.fetch(JOB, 0)
        t2 = time.perf_counter()
        assert got is not None and got.meta == snap.meta
        del got
        if i:
            push.append(t1 - t0)
            fetch.append(t2 - t1)
    return {
        "bytes": total,
        "push_s": statistics.median(push),
        "fetch_s": statistics.median(fetch),
        "push_min_s": min(push),
        "push_max_s": max(push),
    }


# ---------------------------------------------------------------------- step slowdown


def toy_model() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(512, 1024), torch.nn.GELU(), torch.nn.Linear(1024, 512)
    )
    return model, torch.optim.AdamW(model.parameters(), lr=1e-4)


def run_steps(
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    seconds: float,
    on_step: Callable[[int], None] | None = None,
) -> list[float]:
    x = torch.randn(64, 512)
    times = []
    end = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        model(x).pow(2).mean().backward()
        opt.step()
        if on_step is not None:
            on_step(i)
        times.append(time.perf_counter() - t0)
        i += 1
    return times


def push_loop_main(address: str, size_mb: float) -> None:
    """``--push-loop``: a separate process (like the persister) that pushes back to back
    while its stdin says ``go`` and idles after ``stop``."""
    snap = make_snapshot(int(size_mb * MB))
    client = PeerClient(address, SECRET, timeout_s=120)
    active = threading.Event()

    def control() -> None:
        for line in sys.stdin:
            (active.set if line.strip() == "go" else active.clear)()
        os._exit(0)

    threading.Thread(target=control, daemon=True).start()
    print("ready", flush=True)
    while True:
        active.wait()
        client.push(snap)


def slowdown(address: str, size_mb: float, rounds: int, seconds: float) -> dict[str, object]:
    torch.set_num_threads(1)
    model, opt = toy_model()
    run_steps(model, opt, 1.0)  # warm-up
    env = dict(os.environ, PYTHONPATH=str(SRC), OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        [sys.executable, __file__, "--push-loop", address, str(size_mb)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    snap = make_snapshot(int(size_mb * MB), step=2)
    pusher = PeerPusher(PeerClient(address, SECRET, timeout_s=120), queue=1)
    blocked: list[float] = []

    def push_in_thread(i: int) -> None:
        if i % 5 == 0:
            t0 = time.perf_counter()
            pusher.push(snap)
            blocked.append(time.perf_counter() - t0)

    ratios: dict[str, list[float]] = {"process": [], "thread": []}
    base_ms: list[float] = []
    for r in range(rounds):
        order = ["none", "process", "thread"]
        order = order[r % 3 :] + order[: r % 3]  # rotate, so no mode always runs first
        medians: dict[str, float] = {}
        for mode in order:
            if mode == "process":
                proc.stdin.write("go\n")
                proc.stdin.flush()
                time.sleep(0.2)  # let the first push get under way
                medians[mode] = statistics.median(run_steps(model, opt, seconds))
                proc.stdin.write("stop\n")
                proc.stdin.flush()
            elif mode == "thread":
                medians[mode] = statistics.median(run_steps(model, opt, seconds, push_in_thread))
            else:
                medians[mode] = statistics.median(run_steps(model, opt, seconds))
            time.sleep(0.5 if mode != "none" else 0.0)
            if mode != "none":
                pusher.flush(60)  # the in-flight push ends outside the timed part
                time.sleep(0.3)
        base_ms.append(medians["none"] * 1e3)
        for mode in ("process", "thread"):
            ratios[mode].append(medians[mode] / medians["none"])
    proc.stdin.close()
    proc.wait(timeout=60)
    pusher.close(60)
    return {
        "base_ms": statistics.median(base_ms),
        "ratios": ratios,
        "pushed_in_thread": pusher.stats.pushed,
        "dropped_in_thread": pusher.stats.dropped,
        "push_call_max_ms": max(blocked) * 1e3 if blocked else 0.0,
        "push_call_median_us": statistics.median(blocked) * 1e6 if blocked else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes-mb", type=float, nargs="+", default=[256, 1024])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=6, help="interleaved slowdown rounds")
    parser.add_argument("--seconds", type=float, default=2.0, help="per mode per round")
    parser.add_argument("--slowdown-mb", type=float, default=256, help="snapshot pushed")
    parser.add_argument("--push-loop", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("baige.ckpt.peer").setLevel(logging.ERROR)  # drops are expected here
    if args.push_loop:
        push_loop_main(args.push_loop[0], float(args.push_loop[1]))
        return
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, CRC-32 by {CRC32_IMPL}, {os.cpu_count()} CPUs, loopback")
    with tempfile.TemporaryDirectory() as tmp:
        secret_file = Path(tmp) / "secret"
        secret_file.write_bytes(SECRET)
        secret_file.chmod(0o600)
        biggest = max([*args.sizes_mb, args.slowdown_mb]) * MB
        server = Server(secret_file, int(3.2 * biggest))
        try:
            print(
                f"\nPush to / fetch from a buddy process (median of {args.repeat} after a warm-up)"
            )
            for size in args.sizes_mb:
                r = throughput(server.address, size, args.repeat)
                lo, hi = r["push_min_s"], r["push_max_s"]
                print(
                    f"  {r['bytes'] / MB:7.0f} MB  push {r['push_s']:6.2f} s "
                    f"{r['bytes'] / r['push_s'] / MB:7.0f} MB/s (rounds {lo:.2f}-{hi:.2f} s)   "
                    f"fetch {r['fetch_s']:6.2f} s {r['bytes'] / r['fetch_s'] / MB:7.0f} MB/s"
                )
            s = slowdown(server.address, args.slowdown_mb, args.rounds, args.seconds)
        finally:
            server.close()
    print(
        f"\nToy training step ({s['base_ms']:.1f} ms median, 1 torch thread) while "
        f"{args.slowdown_mb:g} MB snapshots are pushed back to back; {args.rounds} "
        "interleaved rounds, per-round ratio of median step times (with / without):"
    )
    ratios = s["ratios"]
    assert isinstance(ratios, dict)
    for mode, label in (("process", "pusher in another process (as the persister)"),
                        ("thread", "PeerPusher thread in the trainer")):  # fmt: skip
        values = ratios[mode]
        print(
            f"  {label:<46} median {statistics.median(values):5.2f} x   "
            f"rounds {' '.join(f'{v:.2f}' for v in values)}"
        )
    print(
        f"  push() call in the trainer: median {s['push_call_median_us']:.0f} us, "
        f"max {s['push_call_max_ms']:.2f} ms ({s['pushed_in_thread']} pushed, "
        f"{s['dropped_in_thread']} dropped from the queue while the buddy was busy)"
    )


if __name__ == "__main__":
    main()
