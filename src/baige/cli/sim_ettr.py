"""``baige sim ettr``: effective training time over checkpoint interval, stall, restart cost
and spares, with the Young/Daly optimum beside every run.

    baige sim ettr examples/sim/ettr-10k.yaml --interval 1m,2m,5m --stall 0.1s,1s \\
        --spares 0,32 --out out/ettr

A thin front on ``baige sim sweep`` (same engine, same ``--set`` axes) that names the knobs
the 99.5% target turns on, and prints for each run the ETTR of the scenario's largest jobs,
the work lost, how failures were recovered (spare swaps, restores from a buddy or disk), and
Young/Daly's figures for one such job: ETTR at the run's interval, the optimum interval
τ* = √(2δM) and the ETTR there, and where the closed form says the time goes (stall δ/τ,
lost work τ/2M, restarts R/M). ``--out DIR`` writes ``ettr.json`` and ``ettr.png``
(matplotlib, already a dependency for the simulator's timelines).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["ettr", "waste"]

_AXES = {  # option -> the scenario field it sweeps
    "model": "training.recovery.model",
    "spares": "training.recovery.spares",
    "peer": "training.recovery.peer",
    "restart": "training.recovery.restart",
    "interval": "training.checkpoint.interval",
    "every_steps": "training.checkpoint.every_steps",
    "stall": "training.checkpoint.stall",
}


def waste(theory: dict[str, Any], interval: float | None) -> dict[str, float] | None:
    """Young/Daly's share of time lost to each cause at ``interval``: checkpoint stalls
    (δ/τ), work redone after a failure (τ/2 per failure, /M) and restarts (R/M)."""
    if not interval or interval <= 0:
        return None
    mtbf = theory["mtbf_s"]
    return {
        "stall": theory["stall_s"] / interval,
        "lost_work": interval / 2 / mtbf,
        "restart": theory["restart_s"] / mtbf,
    }


def ettr(
    scenario: Annotated[Path, typer.Argument(help="A timeline scenario (kind: Simulation).")],
    interval: Annotated[
        str | None, typer.Option(help="Checkpoint intervals, e.g. 1m,2m,5m.")
    ] = None,
    every_steps: Annotated[
        str | None, typer.Option(help="Saves every N steps of training.step_time, e.g. 1,10.")
    ] = None,
    stall: Annotated[str | None, typer.Option(help="Stall per save, e.g. 0.1s,1s.")] = None,
    restart: Annotated[
        str | None,
        typer.Option(help="Restart cost replacing the recovery model's (e.g. 5s,60s)."),
    ] = None,
    spares: Annotated[str | None, typer.Option(help="Hot spare nodes per type, e.g. 0,32.")] = None,
    peer: Annotated[
        str | None, typer.Option(help="Buddy-memory replicas: true, false or true,false.")
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Recovery model files (relative to the scenario).")
    ] = None,
    setting: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", help="More axes: FIELD=V1,V2,… (any scenario field)."),
    ] = None,
    job_nodes: Annotated[
        int | None, typer.Option(min=1, help="Nodes of the job Young/Daly is worked out for.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write ettr.json and ettr.png here.")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Override the scenario's seed.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """ETTR of a scenario over checkpoint interval, stall, restart cost, spares and recovery
    model, beside the Young/Daly optimum interval √(2·stall·MTBF)."""
    from baige.cli.output import console, print_json, print_table  # noqa: PLC0415
    from baige.cli.sim import _bad_input, _load  # noqa: PLC0415
    from baige.cli.sim_sweep import _duration, _result, _run_with_progress  # noqa: PLC0415
    from baige.sim.sweep import Axis, largest_job, parse_axis  # noqa: PLC0415

    given = {  # in this order: the first axis given is the plot's x axis
        "interval": interval,
        "every_steps": every_steps,
        "stall": stall,
        "restart": restart,
        "spares": spares,
        "peer": peer,
        "model": model,
    }
    with _bad_input(json_output):
        axes: list[Axis] = [parse_axis(f"{_AXES[k]}={v}") for k, v in given.items() if v]
        axes += [parse_axis(text) for text in setting or ()]
        loaded = _load(scenario, seed)
        points = _run_with_progress(loaded, axes, job_nodes, "ettr", json_output)
    largest = largest_job(loaded.scenario)[0]
    results = []
    for point in points:
        result = _result(point)
        row = (result["per_class"].get(largest) or {}) if largest else {}
        result["ettr_largest"] = row.get("ettr", result["ettr"])
        result["largest_class"] = largest
        result["recovery"] = point.summary.get("recovery")
        theory = result["young_daly"]
        result["young_daly_waste"] = None if theory is None else waste(theory, theory["interval_s"])
        results.append(result)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "ettr.json").write_text(json.dumps(results, indent=2, default=str))
        plot(out / "ettr.png", results, [a.name for a in axes], loaded.scenario.name)
    if json_output:
        print_json(results)
        return
    columns = [
        *(a.path[-1] for a in axes),
        "ETTR",
        "lost",
        "swaps",
        "restores",
        "Y/D",
        "Y/D stall/redo/restart",
        "τ*",
        "Y/D at τ*",
    ]
    rows = []
    for point, result in zip(points, results, strict=True):
        theory = result["young_daly"]
        parts = result["young_daly_waste"]
        recovery = result["recovery"] or {}
        restores = recovery.get("restores_after_failure") or {}
        rows.append(
            [
                *point.settings.values(),
                f"{result['ettr_largest']:.2%}",
                f"{result['lost_work_fraction'] or 0:.3%}",
                str(recovery.get("spare_swaps", "–")),
                " ".join(f"{k.split('_')[0]}:{v}" for k, v in restores.items()) or "–",
                f"{theory['ettr_at_interval']:.2%}"
                if theory and theory["ettr_at_interval"] is not None
                else "–",
                "/".join(f"{v:.2%}" for v in parts.values()) if parts else "–",
                _duration(theory["optimal_interval_s"]) if theory else "–",
                f"{theory['ettr_at_optimum']:.2%}" if theory else "–",
            ]
        )
    first = points[0].theory if points else None
    about = (
        f"; Young/Daly (Y/D) for one job of {first.nodes} nodes, MTBF {_duration(first.mtbf_s)}"
        if first
        else ""
    )
    what = f"ETTR of {largest}" if largest else "ETTR"
    print_table(f"{loaded.scenario.name}: {len(points)} runs, {what}{about}", columns, rows,
                keep_whole=("ETTR", "lost", "Y/D", "τ*", "Y/D at τ*"))  # fmt: skip
    if out is not None:
        console.print(f"wrote {out / 'ettr.json'}, {out / 'ettr.png'}", highlight=False)


def plot(path: Path, results: list[dict[str, Any]], axes: list[str], title: str) -> None:
    """Simulated ETTR (markers, solid) and Young/Daly's at the same settings (dashed)
    against the first axis, one colour per combination of the others, and the 99.5% line."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    figure, axis = plt.subplots(figsize=(8, 4.5))
    first = axes[0] if axes else ""
    lines: dict[str, list[tuple[str, float, float | None]]] = {}
    for result in results:
        settings = result["settings"]
        label = ", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in settings.items()
                          if k != first) or "simulated"  # fmt: skip
        theory = result["young_daly"] or {}
        lines.setdefault(label, []).append(
            (settings.get(first, ""), result["ettr_largest"], theory.get("ettr_at_interval"))
        )
    for index, (label, values) in enumerate(lines.items()):
        colour = f"C{index % 10}"
        xs = [x for x, _, _ in values]
        axis.plot(xs, [100 * e for _, e, _ in values], marker="o", color=colour, label=label)
        theory_points = [(x, t) for x, _, t in values if t is not None]
        if theory_points:
            axis.plot([x for x, _ in theory_points], [100 * t for _, t in theory_points],
                      linestyle="--", color=colour, alpha=0.6)  # fmt: skip
    axis.axhline(99.5, color="#999", linestyle=":", linewidth=1, label="99.5% target")
    axis.set_xlabel(first.rsplit(".", 1)[-1] or "run")
    axis.set_ylabel("ETTR (%)  — dashed: Young/Daly")
    axis.set_title(title)
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
