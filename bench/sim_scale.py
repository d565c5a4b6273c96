"""Benchmark: the simulator at 10,000 and 100,000 accelerators.

Runs ``examples/sim/llm-10k-30d.yaml`` (30 simulated days of 1,250 nodes x 8 with about
100,000 training jobs, diurnal inference and node failures) and
``examples/sim/llm-100k-7d.yaml`` (a week at ten times the size), each in its own process so
that its peak memory is its own. Prints wall time, CPU time, peak resident memory, events,
scheduler passes and the run's headline figures. The issue's targets — the 10,000-accelerator
month in at most 60 s of wall time and under 2 GB, the 100,000-accelerator run finishing —
are printed beside the figures; nothing is asserted.

    python bench/sim_scale.py [--only 10k|100k] [--json]

Run from the repository root (the scenarios read ``../shared/data/...``).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = {
    "10k": ROOT / "examples" / "sim" / "llm-10k-30d.yaml",
    "100k": ROOT / "examples" / "sim" / "llm-100k-7d.yaml",
}


def child(path: str) -> None:
    """Run one scenario and print its figures as JSON (in a fresh process)."""
    from baige.sim.run import run_scenario  # noqa: PLC0415
    from baige.sim.scenario import load_scenario  # noqa: PLC0415

    loaded = load_scenario(path)
    cpu = time.process_time()
    output = run_scenario(loaded)
    summary = output.summary
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    keys = (
        "accelerators",
        "simulated_seconds",
        "jobs_submitted",
        "jobs_completed",
        "events",
        "scheduler_passes",
        "scheduler_seconds",
        "wall_seconds",
        "allocation_rate",
        "utilization",
        "ettr",
        "inference_demand_met",
        "node_failures",
    )
    figures = {key: summary[key] for key in keys}
    figures["cpu_seconds"] = time.process_time() - cpu
    figures["peak_rss_mib"] = peak_mib
    print(json.dumps(figures))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=sorted(RUNS))
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    report = {}
    for name, path in RUNS.items():
        if args.only and name != args.only:
            continue
        done = subprocess.run(
            [sys.executable, __file__, "--child", str(path)],
            capture_output=True,
            text=True,
            check=False,
            cwd=ROOT,
        )
        if done.returncode != 0:
            print(f"{name}: failed\n{done.stderr}", file=sys.stderr)
            continue
        report[name] = json.loads(done.stdout.strip().splitlines()[-1])
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for name, row in report.items():
        days = row["simulated_seconds"] / 86400
        target = " (target: 60 s wall, 2,048 MiB)" if name == "10k" else " (target: finishes)"
        print(
            f"{name:>4}: {row['accelerators']:,} accelerators, {days:.0f} simulated days, "
            f"{row['jobs_submitted']:,} jobs ({row['jobs_completed']:,} completed), "
            f"{row['events']:,} events, {row['scheduler_passes']:,} passes: "
            f"wall {row['wall_seconds']:.1f} s, CPU {row['cpu_seconds']:.1f} s "
            f"(scheduler {row['scheduler_seconds']:.1f} s), peak {row['peak_rss_mib']:,.0f} MiB"
            f"{target}; allocation {row['allocation_rate']:.1%}, utilization "
            f"{row['utilization']:.1%}, ETTR {row['ettr']:.2%}, inference demand met "
            f"{row['inference_demand_met']:.1%}, {row['node_failures']} node failures"
        )


if __name__ == "__main__":
    main()
