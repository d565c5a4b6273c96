"""What a run leaves behind: ``summary.json``, ``timeline.csv`` and ``timeline.png``, or for
inflation mode ``inflation.json`` and ``inflation.png``; and the rows of the tables the CLI
prints. Plots use matplotlib's Agg backend (no display needed), imported only here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from baige.sim.engine import Engine
from baige.sim.inflation import InflationResult

__all__ = [
    "comparison_rows",
    "inflation_rows",
    "timeline_rows",
    "write_inflation",
    "write_timeline",
]


def _write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def timeline_rows(engine: Engine) -> tuple[list[str], list[list[float]]]:
    """Per timeline bin: start hour, available share of the cluster, and the allocated and
    useful shares of the available capacity by workload kind."""
    bins = engine.bins
    capacity = sum(n.devices for n in engine.built.nodes) * 1000
    available = bins["available"].means()
    columns = [
        "hour",
        "available",
        "allocated_training",
        "allocated_inference",
        "useful_training",
        "useful_inference",
    ]
    rows: list[list[float]] = []
    width = bins["available"].width
    series = [bins[name].means() for name in columns[2:]]
    for index, avail in enumerate(available):
        base = avail if avail > 0 else 1.0
        rows.append([index * width / 3600, avail / capacity, *(s[index] / base for s in series)])
    return columns, rows


def write_timeline(out: Path, summary: dict[str, Any], engine: Engine) -> list[Path]:
    """Write ``summary.json``, ``timeline.csv`` and ``timeline.png`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "summary.json", out / "timeline.csv"]
    _write_json(written[0], summary)
    columns, rows = timeline_rows(engine)
    lines = [",".join(columns)] + [",".join(f"{v:.6g}" for v in row) for row in rows]
    written[1].write_text("\n".join(lines) + "\n", encoding="utf-8")
    png = out / "timeline.png"
    _plot_timeline(png, summary, rows)
    written.append(png)
    return written


def _plot_timeline(path: Path, summary: dict[str, Any], rows: list[list[float]]) -> None:
    import matplotlib  # noqa: PLC0415 - heavy; only when writing a plot

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    hours = [r[0] for r in rows]
    days = max(hours, default=0) > 72
    x = [h / 24 for h in hours] if days else hours
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(11, 6.5), sharex=True)
    top.stackplot(
        x,
        [100 * r[2] for r in rows],
        [100 * r[3] for r in rows],
        labels=["training", "inference"],
        colors=["#4c72b0", "#dd8452"],
        alpha=0.85,
    )
    top.plot(x, [100 * r[1] for r in rows], color="black", lw=0.8, label="available (% of all)")
    top.set_ylabel("allocated, % of available")
    top.set_ylim(0, 105)
    top.legend(loc="lower left", fontsize=8)
    top.set_title(
        f"{summary['scenario']} under {summary['policy']}: allocation "
        f"{summary['allocation_rate']:.1%}, utilization {summary['utilization']:.1%}, "
        f"ETTR {summary['ettr']:.2%}"
    )
    bottom.stackplot(
        x,
        [100 * r[4] for r in rows],
        [100 * r[5] for r in rows],
        labels=["training (kept progress)", "inference (up to demand)"],
        colors=["#4c72b0", "#dd8452"],
        alpha=0.85,
    )
    bottom.set_ylabel("useful, % of available")
    bottom.set_ylim(0, 105)
    bottom.set_xlabel("day" if days else "hour")
    bottom.legend(loc="lower left", fontsize=8)
    for axis in (top, bottom):
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _fmt_duration(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} d"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds:,.0f} s"


_ROWS: tuple[tuple[str, str, str], ...] = (
    ("accelerators", "accelerators", "int"),
    ("simulated", "simulated_seconds", "duration"),
    ("jobs submitted", "jobs_submitted", "int"),
    ("jobs completed", "jobs_completed", "int"),
    ("allocation rate", "allocation_rate", "pct1"),
    ("utilization", "utilization", "pct1"),
    ("ETTR", "ettr", "pct2"),
    ("work lost", "lost_work_fraction", "pct2"),
    ("queue wait p50", "queue_wait_p50_s", "duration"),
    ("queue wait p99", "queue_wait_p99_s", "duration"),
    ("JCT mean", "jct_mean_s", "duration"),
    ("preemptions", "preemptions", "int"),
    ("inference demand met", "inference_demand_met", "pct1"),
    ("node failures", "node_failures", "int"),
    ("scheduler passes", "scheduler_passes", "int"),
    ("events", "events", "int"),
    ("wall time", "wall_seconds", "wall"),
)


def _cell(value: Any, how: str) -> str:
    if how == "int":
        return f"{int(value):,}"
    if how == "pct1":
        return f"{value:.1%}"
    if how == "pct2":
        return f"{value:.2%}"
    if how == "wall":
        return f"{value:.1f} s"
    return _fmt_duration(float(value))


def comparison_rows(summaries: Sequence[dict[str, Any]]) -> list[list[str]]:
    """The CLI table: one row per figure, one column per run."""
    return [[label, *(_cell(s[key], how) for s in summaries)] for label, key, how in _ROWS]


def inflation_rows(result: InflationResult) -> tuple[list[str], list[list[str]]]:
    columns = ["policy"]
    for percent in result.report_at:
        columns.append(f"unalloc. @{percent:g}%")
    for percent in result.report_at:
        columns.append(f"frag. @{percent:g}%")
    columns.append("failed tasks")
    rows = []
    for policy, row in result.table().items():
        cells = [policy]
        cells += [f"{row[f'unallocated_at_{p:g}']:.2%}" for p in result.report_at]
        cells += [f"{row[f'fragmented_at_{p:g}']:.2%}" for p in result.report_at]
        cells.append(f"{row['failed_tasks']:.0f}")
        rows.append(cells)
    return columns, rows


def inflation_summary(result: InflationResult, scenario: str, wall: float) -> dict[str, Any]:
    return {
        "scenario": scenario,
        "mode": "inflation",
        "gpus": result.capacity_gpus,
        "tasks_in_trace": result.tasks_in_trace,
        "cpu_only_tasks_in_trace": result.cpu_only_tasks,
        "wall_seconds": wall,
        "policies": result.table(),
        "curves": [
            {
                "policy": c.policy,
                "seed": c.seed,
                "tasks": c.tasks,
                "failed": c.failed,
                "arrived_percent": c.arrived,
                "unallocated": c.unallocated,
                "fragmented": c.fragmented,
            }
            for c in result.curves
        ],
    }


def write_inflation(out: Path, summary: dict[str, Any], result: InflationResult) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "summary.json"
    _write_json(path, summary)
    png = out / "inflation.png"
    _plot_inflation(png, result)
    return [path, png]


def _plot_inflation(path: Path, result: InflationResult) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    figure, axis = plt.subplots(figsize=(9, 4.5))
    for policy in dict.fromkeys(c.policy for c in result.curves):
        curves = [c for c in result.curves if c.policy == policy]
        points = min(len(c.arrived) for c in curves)
        x = curves[0].arrived[:points]
        y = [100 * sum(c.unallocated[i] for c in curves) / len(curves) for i in range(points)]
        axis.plot(x, y, label=policy, lw=1.6)
    top = max(c.arrived[-1] for c in result.curves)
    axis.plot([0, 100], [100, 0], ls=":", color="grey", label="ideal")
    axis.set_xlim(70, top)
    axis.set_ylim(0, 30)
    axis.set_xlabel("arrived workload, % of GPU capacity")
    axis.set_ylabel("unallocated GPUs, %")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, ncol=2)
    axis.set_title(f"Inflation on {result.capacity_gpus:,} GPUs (mean of seeds)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
