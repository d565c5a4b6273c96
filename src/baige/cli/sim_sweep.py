"""``baige sim sweep``: one scenario over a grid of settings, with Young/Daly beside it.

    baige sim sweep examples/sim/llm-10k-30d.yaml \\
        --set training.checkpoint.interval=1m,5m,10m --set training.restart.initialization=10s,60s

prints ETTR, utilization and allocation for every combination (overall and for the class
whose jobs are the largest), and for each the closed-form optimum interval and ETTR of one
job of the largest size; ``--out DIR`` writes ``sweep.json`` and ``sweep.png``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from baige.sim.scenario import LoadedScenario
    from baige.sim.sweep import Axis, SweepPoint

__all__ = ["sweep"]


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f}h"
    if seconds >= 120:
        return f"{seconds / 60:.1f}m"
    return f"{seconds:.0f}s"


def _run_with_progress(
    loaded: LoadedScenario, axes: list[Axis], job_nodes: int | None, label: str, json_output: bool
) -> list[SweepPoint]:
    """Every combination of ``axes`` run, with a progress bar naming the one running."""
    from baige.cli.sim import _progress  # noqa: PLC0415
    from baige.sim.sweep import run_sweep  # noqa: PLC0415

    combos = 1
    for axis in axes:
        combos *= len(axis.values)
    with _progress(f"{loaded.scenario.name} {label}", json_output, combos) as update:
        return run_sweep(
            loaded,
            axes,
            job_nodes=job_nodes,
            progress=lambda done, _total, shown: update(
                done, " ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in shown.items())
            ),
        )


def sweep(
    scenario: Annotated[Path, typer.Argument(help="A timeline scenario (kind: Simulation).")],
    setting: Annotated[
        list[str],
        typer.Option(
            "--set",
            "-s",
            help="FIELD=V1,V2,… a dotted scenario field and its values (repeat for more axes).",
        ),
    ],
    job_nodes: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Nodes of the job Young/Daly is worked out for "
            "(default: the largest job the scenario makes).",
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write sweep.json and sweep.png here.")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Override the scenario's seed.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Run a scenario for every combination of ``--set`` values and print ETTR beside
    the Young/Daly optimum (checkpoint interval, stall and restart cost sweeps)."""
    from baige.cli.output import console, print_json, print_table  # noqa: PLC0415
    from baige.cli.sim import _bad_input, _load  # noqa: PLC0415
    from baige.sim.sweep import largest_job, parse_axis  # noqa: PLC0415

    with _bad_input(json_output):
        axes = [parse_axis(text) for text in setting]
        loaded = _load(scenario, seed)
        points = _run_with_progress(loaded, axes, job_nodes, "sweep", json_output)
    results = [_result(p) for p in points]
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "sweep.json").write_text(json.dumps(results, indent=2, default=str))
        _plot(out / "sweep.png", results, [a.name for a in axes])
    if json_output:
        print_json(results)
        return
    largest = largest_job(loaded.scenario)[0]
    columns = [
        *(a.path[-1] for a in axes),
        "ETTR",
        *([f"ETTR {largest}"] if largest else []),
        "util",
        "alloc",
        "Y/D ETTR",
        "Y/D τ*",
        "Y/D best",
    ]
    rows = []
    for point, result in zip(points, results, strict=True):
        theory = result["young_daly"]
        rows.append(
            [
                *point.settings.values(),
                f"{result['ettr']:.2%}",
                *(
                    [f"{result['per_class'].get(largest, {}).get('ettr', 0):.2%}"]
                    if largest
                    else []
                ),
                f"{result['utilization']:.1%}",
                f"{result['allocation_rate']:.1%}",
                f"{theory['ettr_at_interval']:.2%}"
                if theory and theory["ettr_at_interval"] is not None
                else "–",
                _duration(theory["optimal_interval_s"]) if theory else "–",
                f"{theory['ettr_at_optimum']:.2%}" if theory else "–",
            ]
        )
    first = points[0].theory if points else None
    nodes = (
        f"; Y/D: Young/Daly for one job of {first.nodes} nodes (MTBF "
        f"{_duration(first.mtbf_s)}): its ETTR at the swept interval, its optimum τ* and the "
        "ETTR there"
        if first
        else ""
    )
    print_table(f"{loaded.scenario.name}: {len(points)} runs{nodes}", columns, rows,
                keep_whole=columns)  # fmt: skip
    if out is not None:
        console.print(f"wrote {out / 'sweep.json'}, {out / 'sweep.png'}", highlight=False)


def _class_ettr(result: dict[str, Any], name: str) -> str:
    ettr = (result["per_class"].get(name) or {}).get("ettr")
    return "–" if ettr is None else f"{ettr:.2%}"


def _result(point: Any) -> dict[str, Any]:
    summary = point.summary
    theory = point.theory
    return {
        "settings": point.settings,
        "ettr": summary["ettr"],
        "utilization": summary["utilization"],
        "allocation_rate": summary["allocation_rate"],
        "lost_work_fraction": summary.get("lost_work_fraction"),
        "node_failures": summary.get("node_failures"),
        "per_class": {
            name: {"ettr": row.get("ettr"), "jobs_completed": row.get("jobs_completed")}
            for name, row in (summary.get("per_class") or {}).items()
        },
        "young_daly": None
        if theory is None
        else {
            "nodes": theory.nodes,
            "mtbf_s": theory.mtbf_s,
            "stall_s": theory.stall_s,
            "restart_s": theory.restart_s,
            "optimal_interval_s": theory.optimal_interval_s,
            "ettr_at_optimum": theory.ettr_at_optimum,
            "ettr_at_interval": theory.ettr_at_interval,
            "interval_s": theory.interval_s,
        },
    }


def _plot(path: Path, results: list[dict[str, Any]], axes: list[str]) -> None:
    """ETTR against the first axis, one line per combination of the others."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    figure, axis = plt.subplots(figsize=(7, 4))
    lines: dict[str, list[tuple[str, float]]] = {}
    for result in results:
        settings = result["settings"]
        label = ", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in settings.items()
                          if k != axes[0]) or "ETTR"  # fmt: skip
        lines.setdefault(label, []).append((settings[axes[0]], result["ettr"]))
    for label, values in lines.items():
        axis.plot([v for v, _ in values], [100 * e for _, e in values], marker="o", label=label)
    axis.axhline(99.5, color="#999", linestyle="--", linewidth=1, label="99.5% target")
    axis.set_xlabel(axes[0])
    axis.set_ylabel("ETTR (%)")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
