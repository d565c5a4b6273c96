"""Benchmark: one scheduling cycle at 10,000 accelerators.

Snapshot: 1,250 nodes × 8 cards of 3 types in a 4-level topology (zone/block/rack/node),
5,000 running workloads (placed by the scheduler itself, so placements are realistic) and
2,000 pending ones. Prints median and p99 cycle time and decisions/placements per second.
Targets (issue "Foundation and the scheduling library"): p99 ≤ 100 ms, ≥ 1,000 placements/s.

Three garbage-collector settings are measured. With Python's defaults ("default"), a full
collection (it walks every object the process holds, the snapshot included) lands in about
one cycle in five and adds 20–100 ms. "paused" is what the controller does: the collector is
paused during the cycle and the cycle's young garbage collected right after it, inside the
timing. "frozen" moves the snapshot out of the collector's sight with ``gc.freeze()``.

    python bench/sched_cycle.py [--seeds 5] [--repeat 5] [--json]
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from dataclasses import replace

from baige.sched import BAIGE, FIFO, Admit, Profile, Snapshot, apply_decisions, run_cycle
from baige.sim.synthetic import LEVELS, ClusterShape, make_nodes, make_queues, make_workloads


def build_snapshot(seed: int, running: int = 5000, pending: int = 2000) -> Snapshot:
    shape = ClusterShape()
    nodes = make_nodes(shape)
    queues = make_queues(shape)
    # admit a stream of work in batches until `running` workloads hold capacity
    candidates = make_workloads(running * 3, shape, queues, seed=seed, prefix="r")
    snapshot = Snapshot(tuple(nodes), tuple(queues), (), LEVELS)
    admitted = 0
    cursor = 0
    now = 0.0
    while admitted < running and cursor < len(candidates):
        batch = candidates[cursor : cursor + 1000]
        cursor += len(batch)
        snapshot = replace(snapshot, workloads=snapshot.workloads + tuple(batch))
        result = run_cycle(snapshot, now, BAIGE)
        snapshot = apply_decisions(snapshot, result)
        keep = [w for w in snapshot.workloads if w.assignment is not None][:running]
        admitted = len(keep)
        snapshot = replace(snapshot, workloads=tuple(keep))
        now += 60.0
    new = make_workloads(pending, shape, queues, seed=seed + 10_000, start=now, prefix="p")
    return replace(snapshot, workloads=snapshot.workloads + tuple(new))


def measure(
    snapshot: Snapshot, profile: Profile, repeat: int, mode: str
) -> tuple[list[float], int, int]:
    gc.collect()
    if mode == "frozen":
        gc.freeze()
    times = []
    decisions = placements = 0
    for _ in range(repeat):
        start = time.perf_counter()
        if mode == "paused":  # what the controller does: no collection inside the pass,
            gc.disable()  # the young garbage collected right after it (and timed)
            result = run_cycle(snapshot, 1e6, profile)
            gc.collect(1)
            gc.enable()
        else:
            result = run_cycle(snapshot, 1e6, profile)
        times.append(time.perf_counter() - start)
        decisions = len(result.decisions)
        placements = sum(len(d.placements) for d in result.decisions if isinstance(d, Admit))
    if mode == "frozen":
        gc.unfreeze()
    return times, decisions, placements


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report: dict[str, dict[str, float]] = {}
    snapshots = [build_snapshot(seed) for seed in range(args.seeds)]
    snapshot = snapshots[-1]
    running = sum(1 for w in snapshot.workloads if w.assignment is not None)
    pending = len(snapshot.workloads) - running
    modes = ((BAIGE, "paused"), (BAIGE, "frozen"), (BAIGE, "default"), (FIFO, "paused"))
    for profile, mode in modes:
        times: list[float] = []
        decisions = placements = 0
        for snapshot in snapshots:
            t, d, p = measure(snapshot, profile, args.repeat, mode)
            times += t
            decisions += d * len(t)
            placements += p * len(t)
        total = sum(times)
        report[f"{profile.name}, gc {mode}"] = {
            "nodes": len(snapshot.nodes),
            "accelerators": sum(n.devices for n in snapshot.nodes),
            "running": running,
            "pending": pending,
            "cycles": len(times),
            "median_ms": statistics.median(times) * 1000,
            "p99_ms": percentile(times, 0.99) * 1000,
            "decisions_per_cycle": decisions / len(times),
            "decisions_per_s": decisions / total,
            "placements_per_s": placements / total,
        }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for name, row in report.items():
        print(
            f"{name:19s} {row['accelerators']:.0f} accelerators, {row['running']:.0f} running, "
            f"{row['pending']:.0f} pending, {row['cycles']:.0f} cycles: "
            f"median {row['median_ms']:.1f} ms, p99 {row['p99_ms']:.1f} ms, "
            f"{row['decisions_per_cycle']:.0f} decisions/cycle, "
            f"{row['decisions_per_s']:.0f} decisions/s, {row['placements_per_s']:.0f} placements/s"
        )


if __name__ == "__main__":
    main()
