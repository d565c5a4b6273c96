"""Benchmark: how long ``baige plan`` takes to search, at three scales.

* Llama 3 8B on 64 H100 (8 nodes), global batch 512 × 8,192 tokens;
* Llama 3 405B on 16,384 H100, global batch 2,048 × 8,192 tokens (Llama 3's 16M tokens);
* Llama 3 70B on 2,048 H100 + 4,096 A100 + 4,096 Ascend 910B (examples/plan/mixed-10k.yaml),
  global batch 2,048 × 8,192 tokens — both mixing schemes, plus each chip type alone for the
  mixed-chip loss.

Prints the median (and min/max) wall time of several runs and the plan found. Target (issue
"`baige plan`"): at most 60 s each on a 2-core machine. Never a timed assertion in tests.

    python bench/plan_search.py [--repeat 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from baige.plan import (
    MEGATRON_CORE,
    Cluster,
    get_preset,
    load_cluster,
    plan,
    resolve_group,
)
from baige.plan.planner import PlanReport

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "plan"


def _single(chip: str, cards: int) -> Cluster:
    return Cluster(f"{cards} {chip}", (resolve_group(chip, cards, 400),))


def cases() -> list[tuple[str, Callable[[], PlanReport]]]:
    mixed = load_cluster(EXAMPLES / "mixed-10k.yaml")
    h100_64 = _single("h100", 64)
    h100_16k = _single("h100", 16384)
    return [
        (
            "llama3-8b on 64 H100",
            lambda: plan(get_preset("llama3-8b"), h100_64, MEGATRON_CORE, 512),
        ),
        (
            "llama3-405b on 16,384 H100",
            lambda: plan(get_preset("llama3-405b"), h100_16k, MEGATRON_CORE, 2048),
        ),
        (
            "llama3-70b on 2,048 H100 + 4,096 A100 + 4,096 Ascend 910B",
            lambda: plan(get_preset("llama3-70b"), mixed, MEGATRON_CORE, 2048),
        ),
    ]


def _summary(report: PlanReport) -> dict[str, object]:
    if report.single is not None:
        best = report.single.best
        return {
            "plan": best.strategy.describe(),
            "tokens_per_s": best.tokens_per_s,
            "mfu": best.mfu,
            "searched": report.single.considered,
            "fit_in_memory": report.single.fitting,
        }
    assert report.mixed is not None
    mixed = report.mixed
    return {
        "plan": mixed.best.describe(),
        "tokens_per_s": mixed.best.tokens_per_s,
        "mfu": mixed.best.mfu,
        "sum_of_parts_tokens_per_s": mixed.sum_of_parts_tokens_per_s,
        "mixed_loss": mixed.mixed_loss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per case")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    results = []
    for name, run in cases():
        run()  # warm-up: imports, numpy's first calls
        times = []
        report = None
        for _ in range(args.repeat):
            start = time.perf_counter()
            report = run()
            times.append(time.perf_counter() - start)
        assert report is not None
        results.append(
            {
                "case": name,
                "median_s": statistics.median(times),
                "min_s": min(times),
                "max_s": max(times),
                "runs": args.repeat,
                **_summary(report),
            }
        )
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for r in results:
        print(
            f"{r['case']}: median {r['median_s']:.3f} s "
            f"(min {r['min_s']:.3f}, max {r['max_s']:.3f}, {r['runs']} runs)"
        )
        print(f"    best: {r['plan']}")
        line = f"    {float(str(r['tokens_per_s'])) / 1e6:.2f} M tokens/s, MFU {r['mfu']:.1%}"
        if "mixed_loss" in r:
            line += f", mixed-chip loss {r['mixed_loss']:.1%}"
        print(line)


if __name__ == "__main__":
    main()
