"""Benchmark: what placing one gang across chip types buys on a mixed cluster.

Runs the simulator scenario ``examples/sim/mixed-chips.yaml`` (128 H100 + 64 Ascend 910B
cards, multi-node training jobs accepting both types) twice per seed, with the same jobs and
the same seed: once with every job's ``mix: allowed`` (a gang may be split into a sub-gang
per type when no single type has room) and once with ``mix: never`` (homogeneous placement
only). Rounds are interleaved (allowed, never, allowed, never …); the figures are per-seed
ratios and their medians, not absolute times.

The simulator paces a job by its replica count, not by its chips' speeds: a spanning job
here runs as fast as a one-type one (in a real run, ``baige.train.hetero`` splits the batch
by speed so the slower chips do not hold the faster ones back; see bench/mixed_training.py).

    python bench/mixed_placement.py [--seeds 3] [--jobs 250] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from baige.sim.run import run_scenario
from baige.sim.scenario import LoadedScenario, load_scenario

SCENARIO = Path(__file__).resolve().parent.parent / "examples" / "sim" / "mixed-chips.yaml"
FIGURES = (
    ("allocation_rate", "allocation"),
    ("queue_wait_mean_s", "mean queue wait (s)"),
    ("queue_wait_p50_s", "p50 queue wait (s)"),
    ("jobs_completed", "jobs completed"),
)


def variant(loaded: LoadedScenario, mix: str, seed: int, jobs: int) -> LoadedScenario:
    """The scenario with every synthetic class's ``mix`` set, and the seed and job count."""
    scenario = loaded.scenario
    synthetic = scenario.workloads.synthetic
    assert synthetic is not None, "the mixed-chips scenario has synthetic jobs"
    classes = [cls.model_copy(update={"mix": mix}) for cls in synthetic.classes]
    synthetic = synthetic.model_copy(update={"classes": classes, "jobs": jobs})
    workloads = scenario.workloads.model_copy(update={"synthetic": synthetic})
    changed = scenario.model_copy(update={"workloads": workloads, "seed": seed})
    return LoadedScenario(changed, loaded.source, loaded.node)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=250)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    loaded = load_scenario(SCENARIO)
    rows: list[dict[str, Any]] = []
    for seed in range(args.seeds):
        out: dict[str, Any] = {"seed": seed}
        for mix in ("allowed", "never"):
            summary = run_scenario(variant(loaded, mix, seed, args.jobs)).summary
            out[mix] = {key: summary[key] for key, _ in FIGURES}
        rows.append(out)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{SCENARIO.name}: {args.jobs} jobs, {args.seeds} seeds, mix allowed vs never")
    for key, label in FIGURES:
        per_seed = [(r["allowed"][key], r["never"][key]) for r in rows]
        ratios = [a / n if n else float("nan") for a, n in per_seed]
        shown = ", ".join(f"{a:.3g} vs {n:.3g}" for a, n in per_seed)
        print(
            f"  {label:22s} per seed (allowed vs never): {shown}; "
            f"median ratio {statistics.median(ratios):.3f}"
        )


if __name__ == "__main__":
    main()
