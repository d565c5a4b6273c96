"""One node's part of a pre-flight check, run by its probe as a child process (torch is
imported here, never in the probe): a compute check, then an all-reduce with the other nodes
over gloo. Prints one JSON line.

    python -m baige.diag.preflight_worker --rank R --world N --store HOST:PORT --mb 256

The compute check counts matrix-multiply FLOPs per second of this process's CPU time, not
wall time, so nodes sharing a machine (the tests) or a busy host do not look slow for the
wrong reason. ``--slow-compute F`` is a rehearsal knob (``baige diagnose --serve
--slow-compute F``): the node really does F times the work per counted FLOP, so it really is
F times slower — as a throttled or degraded card would be.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import timedelta


def _compute(seconds: float, slow: float) -> float:
    import torch  # noqa: PLC0415

    torch.set_num_threads(1)
    n = 256
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    flops = 0.0
    start = time.process_time()
    repeat = max(1, round(slow))
    while time.process_time() - start < seconds:
        for _ in range(repeat):
            a = torch.tanh(a @ b)
        flops += 2.0 * n**3
    return flops / (time.process_time() - start)


def _allreduce(rank: int, world: int, store: str, mb: float, rounds: int) -> dict[str, float]:
    import torch  # noqa: PLC0415
    import torch.distributed as dist  # noqa: PLC0415
    from torch.distributed import TCPStore  # type: ignore[attr-defined]  # noqa: PLC0415

    host, _, port = store.rpartition(":")
    tcp = TCPStore(host, int(port), world_size=world, is_master=False,
                        timeout=timedelta(seconds=60))  # fmt: skip
    dist.init_process_group("gloo", store=tcp, rank=rank, world_size=world,
                            timeout=timedelta(seconds=120))  # fmt: skip
    try:
        tensor = torch.ones(max(1, int(mb * 2**20 / 4)), dtype=torch.float32)
        dist.all_reduce(tensor)  # warm-up: connections, buffers
        times = []
        for _ in range(rounds):
            dist.barrier()
            start = time.perf_counter()
            dist.all_reduce(tensor)
            times.append(time.perf_counter() - start)
        size = tensor.numel() * 4
        best = min(times)
        return {
            "allreduce_s": best,
            "allreduce_bytes": float(size),
            # the ring all-reduce's "bus bandwidth": what each link carried per second
            "bus_bandwidth": 2 * (world - 1) / world * size / best if best > 0 else 0.0,
        }
    finally:
        dist.destroy_process_group()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rank", type=int, required=True)
    p.add_argument("--world", type=int, required=True)
    p.add_argument("--store", required=True)
    p.add_argument("--mb", type=float, default=256.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--compute-s", type=float, default=1.0)
    p.add_argument("--slow-compute", type=float, default=1.0)
    args = p.parse_args()
    try:
        out: dict[str, float | str] = {"flops": _compute(args.compute_s, args.slow_compute)}
        out.update(_allreduce(args.rank, args.world, args.store, args.mb, args.rounds))
    except Exception as err:  # one line for the coordinator, naming what failed
        print(json.dumps({"error": f"{err.__class__.__name__}: {err}"[:500]}))
        sys.exit(1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
