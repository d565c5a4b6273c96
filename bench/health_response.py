"""Benchmark: how fast a bad node is taken out, and what a pre-flight costs.

1. **Fatal condition → cordon → job elsewhere.** A real `baige up` (in this process: local
   backend, two fake nodes of 8 cards, the default health policy) runs a one-replica job of
   8 cards. Each round raises XID 79 ("fallen off the bus", fatal) on the job's node through
   the declared fake health source (the file `baige fault inject` writes) and times the node
   being cordoned (detection: the agent's 2 s beat plus a controller pass) and the job's
   replica running on the other node (drain, re-place, launch). Then the fault is cleared
   and an operator uncordons the node, and the next round faults the job's new node.
2. **Pre-flight of 2 and 4 nodes.** The controller's runner for local nodes
   (`baige.control.local_probes`: one probe per node, each node's part a child process that
   imports torch, then a gloo all-reduce and a compute check), 2 and 4 nodes interleaved
   after a warm-up of each, medians of `--rounds`.

Everything is on this machine, so nodes share its CPUs: on separate machines each node's
part runs on its own.

    python bench/health_response.py [--rounds 5] [--preflight-rounds 3] [--mb 256]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from baige.api.loader import load_specs
from baige.api.workloads import TrainingJobSpec
from baige.control.local_probes import LocalProbes
from baige.control.platform import SYSTEM, Platform, PlatformOptions
from baige.control.preflight_gate import PreflightSettings
from baige.hw.discovery import parse_fake
from baige.hw.health import FakeHealth, xid_condition

JOB = """\
kind: TrainingJob
name: on-one-node
queue: default
replicas: 1
accelerators: {count: 8, types: [h100]}
command: [sleep, "3600"]
"""


def _wait(predicate: Callable[[], object], timeout: float) -> float:
    """Seconds until ``predicate()`` is truthy (polled every 20 ms); raises on timeout."""
    start = time.perf_counter()
    while not predicate():
        if time.perf_counter() - start > timeout:
            raise TimeoutError(f"not within {timeout} s")
        time.sleep(0.02)
    return time.perf_counter() - start


def fatal_rounds(rounds: int) -> list[tuple[float, float]]:
    """(seconds to cordon, seconds to the job running elsewhere) per round."""
    out: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory(prefix="baige-health-") as home:
        options = PlatformOptions(
            db_url=f"sqlite:///{home}/b.db",
            home=Path(home),
            accelerators=parse_fake("h100:8"),
            nodes=2,
            interval=0.2,
            preflight=PreflightSettings(min_nodes=0),
        )
        platform = Platform(options)
        platform.start()
        try:
            service = platform.service
            (spec,) = load_specs(JOB)
            assert isinstance(spec, TrainingJobSpec)
            job = service.submit(SYSTEM, spec)[0].id

            def node_of_job() -> str | None:
                view = service.get(SYSTEM, job)
                nodes = [r.node for r in view.running_replicas if r.state == "running"]
                return nodes[0] if len(nodes) == 1 else None

            _wait(node_of_job, 60)
            for index in range(rounds):
                where = node_of_job()
                assert where is not None
                fake = FakeHealth(platform.health_file(where))
                fake.inject(xid_condition(3, 79))
                start = time.perf_counter()
                cordon = _wait(lambda n=where: service.get_node(SYSTEM, n).cordoned, 30)
                moved = _wait(lambda n=where: node_of_job() not in (None, n), 120)
                elapsed = time.perf_counter() - start
                out.append((cordon, elapsed))
                print(f"  round {index + 1}: cordoned in {cordon:.2f} s, job running on "
                      f"another node {elapsed:.2f} s after the fault "
                      f"(+{moved:.2f} s after the cordon)", flush=True)  # fmt: skip
                fake.clear()
                service.set_cordon(SYSTEM, where, False)  # the operator puts it back
                _wait(lambda n=where: not service.get_node(SYSTEM, n).cordoned, 30)
                time.sleep(2.5)  # a clean beat before the next fault
        finally:
            platform.stop()
            for pid_file in Path(home, "runs").glob("*/pid"):  # the job's process
                with contextlib.suppress(OSError, ValueError):
                    os.killpg(int(pid_file.read_text()), signal.SIGKILL)
    return out


def preflight_rounds(rounds: int, mb: float, compute_s: float) -> dict[int, list[float]]:
    settings = PreflightSettings(min_nodes=2, mb=mb, compute_s=compute_s)
    probes = LocalProbes({f"node-{i}": None for i in range(4)})
    probes.start()
    times: dict[int, list[float]] = {2: [], 4: []}
    try:
        for index in range(rounds + 1):  # round 0 is the warm-up
            for size in (2, 4):
                names = [f"node-{i}" for i in range(size)]
                start = time.perf_counter()
                report = probes.run(names, settings)
                took = time.perf_counter() - start
                bus = report.bus_bandwidth or 0.0
                label = "warm-up" if index == 0 else f"round {index}"
                print(f"  {label}: {size} nodes {took:.1f} s (healthy: {report.healthy}, "
                      f"bus bandwidth {bus / 1e9:.2f} GB/s)", flush=True)  # fmt: skip
                if index:
                    times[size].append(took)
    finally:
        probes.stop()
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5, help="fatal-condition rounds")
    p.add_argument("--preflight-rounds", type=int, default=3)
    p.add_argument("--mb", type=float, default=256.0, help="pre-flight all-reduce size")
    p.add_argument("--compute-s", type=float, default=1.0, help="pre-flight compute check")
    args = p.parse_args()
    if args.rounds < 1 or args.preflight_rounds < 1:
        sys.exit("--rounds and --preflight-rounds must be at least 1")
    print(f"fatal condition (XID 79) on the job's node, {args.rounds} rounds:", flush=True)
    fatal = fatal_rounds(args.rounds)
    print(f"pre-flight, {args.mb:g} MB all-reduce, {args.compute_s:g} s compute check:")
    pre = preflight_rounds(args.preflight_rounds, args.mb, args.compute_s)
    print("\nsummary (medians)")
    print(f"  fault -> cordoned:          {statistics.median(c for c, _ in fatal):6.2f} s "
          f"(worst {max(c for c, _ in fatal):.2f}; goal <= 5)")  # fmt: skip
    print(f"  fault -> job running again: {statistics.median(m for _, m in fatal):6.2f} s "
          f"(worst {max(m for _, m in fatal):.2f}; goal <= 60)")  # fmt: skip
    for size, values in pre.items():
        print(f"  pre-flight of {size} nodes:     {statistics.median(values):6.1f} s "
              f"(rounds {', '.join(f'{v:.1f}' for v in values)})")  # fmt: skip


if __name__ == "__main__":
    main()
