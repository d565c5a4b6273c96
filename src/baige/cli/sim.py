"""``baige sim``: replay workloads on a simulated cluster with the real scheduler.

``run`` and ``compare`` read scenario files (``examples/sim/``, ``docs/sim.md``); ``demo``
needs none. Bad input — a typo in a scenario, a missing trace file, a malformed CSV row, an
unknown policy — ends with a message naming the file, line and field and exit code 2, never
a traceback; ``--json`` prints ``{"error": …, "status": null, "problems": […]}`` instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from baige.api.loader import SpecError
from baige.cli.output import console, fail, print_json, print_table, say
from baige.sched import ProfileError

app = typer.Typer(help="Simulate a cluster on a simulated clock with the real scheduler.")

EXIT_BAD_INPUT = 2


def _fail(
    message: str, json_output: bool, problems: list[dict[str, object]] | None = None
) -> NoReturn:
    fail(message, json_output, problems=problems, code=EXIT_BAD_INPUT)


@contextmanager
def _bad_input(json_output: bool) -> Iterator[None]:
    try:
        yield
    except SpecError as err:
        _fail(str(err), json_output, err.as_dicts())
    except ProfileError as err:
        _fail(str(err), json_output)
    except OSError as err:  # the output folder cannot be written
        _fail(f"{err.filename or ''}: {err.strerror or err}", json_output)


@contextmanager
def _progress(label: str, quiet: bool, total: float) -> Iterator[Callable[[float, str], None]]:
    """A progress bar over simulated time (or inflation share); nothing when ``quiet``."""
    if quiet:
        yield lambda done, clock: None
        return
    with Progress(
        TextColumn(f"[bold]{escape(label)}"),
        BarColumn(),
        TextColumn("{task.fields[clock]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task: TaskID = bar.add_task(label, total=total, clock="")

        def update(done: float, clock: str) -> None:
            bar.update(task, completed=done, clock=clock)

        yield update


def _clock(seconds: float) -> str:
    return f"day {seconds / 86400:5.1f}" if seconds >= 3 * 86400 else f"t={seconds / 3600:6.1f} h"


def _load(path: Path, seed: int | None) -> Any:
    from baige.sim.scenario import load_scenario  # noqa: PLC0415 - keeps `baige --help` fast

    loaded = load_scenario(path)
    if seed is not None:
        loaded.scenario = loaded.scenario.model_copy(update={"seed": seed})
    return loaded


def _run_timeline(loaded: Any, policy: str | None, quiet: bool, out: Path | None) -> dict[str, Any]:
    from baige.sim.report import write_timeline  # noqa: PLC0415
    from baige.sim.run import run_scenario  # noqa: PLC0415

    scenario = loaded.scenario
    label = f"{scenario.name} · {policy or scenario.policy}"
    with _progress(label, quiet, scenario.duration) as update:
        output = run_scenario(loaded, policy=policy, progress=lambda t: update(t, _clock(t)))
    summary: dict[str, Any] = output.summary
    if out is not None:
        summary["outputs"] = [str(p) for p in write_timeline(out, summary, output.engine)]
    return summary


def _run_inflation(
    loaded: Any, policies: list[str] | None, quiet: bool, out: Path | None, json_output: bool
) -> None:
    from baige.sim.report import inflation_rows, inflation_summary, write_inflation  # noqa: PLC0415
    from baige.sim.run import run_inflation_scenario  # noqa: PLC0415

    scenario = loaded.scenario
    started = time.perf_counter()
    with _progress(scenario.name, quiet, 1.0) as update:
        result = run_inflation_scenario(
            loaded, policies=policies, progress=lambda what, share: update(share, what)
        )
    summary = inflation_summary(result, scenario.name, time.perf_counter() - started)
    if out is not None:
        summary["outputs"] = [str(p) for p in write_inflation(out, summary, result)]
    if json_output:
        print_json(summary)
        return
    columns, rows = inflation_rows(result)
    print_table(
        f"{scenario.name}: {result.capacity_gpus:,} GPUs, {result.tasks_in_trace:,} tasks "
        f"({result.cpu_only_tasks:,} CPU-only) shuffled, then drawn with replacement; mean "
        f"of {len({c.seed for c in result.curves})} seed(s)",
        columns,
        rows,
    )
    if out is not None:
        say(f"wrote {', '.join(summary['outputs'])}")


@app.command()
def run(
    scenario: Annotated[Path, typer.Argument(help="A scenario file (kind: Simulation).")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write summary.json and plots here.")
    ] = None,
    policy: Annotated[
        str | None, typer.Option("--policy", "-p", help="Run under this policy instead.")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Override the scenario's seed.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Run a scenario: a timeline (summary table, summary.json, timeline.png) or the
    inflation experiment (unallocated GPUs per policy, inflation.png)."""
    with _bad_input(json_output):
        from baige.sim.scenario import Mode  # noqa: PLC0415

        loaded = _load(scenario, seed)
        if loaded.scenario.mode is Mode.INFLATION:
            _run_inflation(loaded, [policy] if policy else None, json_output, out, json_output)
            return
        summary = _run_timeline(loaded, policy, json_output, out)
    if json_output:
        print_json(summary)
        return
    _print_comparison([summary])
    if out is not None:
        say(f"wrote {', '.join(summary['outputs'])}")


@app.command()
def compare(
    scenarios: Annotated[list[Path], typer.Argument(help="Scenario files to run side by side.")],
    policy: Annotated[
        list[str] | None,
        typer.Option("--policy", "-p", help="Run each scenario under these policies instead."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write each run's outputs under here.")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Override the scenarios' seed.")] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the summaries as JSON.")
    ] = False,
) -> None:
    """Run scenarios (or one scenario under several policies) and print them side by side:
    ``baige sim compare a.yaml b.yaml`` or ``baige sim compare a.yaml -p fifo -p baige``."""
    summaries: list[dict[str, Any]] = []
    with _bad_input(json_output):
        from baige.sim.scenario import Mode  # noqa: PLC0415

        loaded_all = [_load(path, seed) for path in scenarios]
        for loaded in loaded_all:
            if loaded.scenario.mode is Mode.INFLATION:
                raise loaded.error(
                    ("mode",),
                    "compare runs timelines; `baige sim run` compares "
                    "an inflation scenario's policies",
                )
        for index, loaded in enumerate(loaded_all):
            names: list[str | None] = list(policy) if policy else [None]
            for name in names:
                target = None
                if out is not None:
                    target = (
                        out / f"{index + 1}-{loaded.scenario.name}-{name or loaded.scenario.policy}"
                    )
                summaries.append(_run_timeline(loaded, name, json_output, target))
    if json_output:
        print_json(summaries)
        return
    _print_comparison(summaries)


def _print_comparison(summaries: list[dict[str, Any]]) -> None:
    from baige.sim.report import comparison_rows  # noqa: PLC0415

    names = [s["scenario"] for s in summaries]
    title = names[0] if len(set(names)) == 1 else " vs ".join(dict.fromkeys(names))
    headers = [""] + [
        s["policy"] if len(set(names)) == 1 else f"{s['scenario']} · {s['policy']}"
        for s in summaries
    ]
    print_table(title, headers, comparison_rows(summaries))


@app.command()
def demo(
    profile: Annotated[
        list[str] | None, typer.Option("--profile", "-p", help="Profiles to compare.")
    ] = None,
    jobs: Annotated[
        int,
        typer.Option(
            min=1, help="Workloads arriving over the run (about 2/3 training jobs, 1/3 services)."
        ),
    ] = 6000,
    hours: Annotated[float, typer.Option(min=0.1, help="Simulated hours.")] = 12.0,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same result).")] = 1,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Replay --hours (default 12) of synthetic training and inference arrivals on a
    1,024-accelerator cluster under each profile (default: Baige's own policy against the FIFO
    baseline). Deterministic per --seed, except the wall time."""
    from baige.sim.demo import run_demo  # noqa: PLC0415
    from baige.sim.policies import get_policy  # noqa: PLC0415

    names = profile or ["baige", "fifo"]
    for name in names:
        try:
            get_policy(name)
        except ProfileError as err:
            raise typer.BadParameter(str(err), param_hint="--profile") from None
    summaries = []
    for name in names:
        with _progress(name, json_output, hours * 3600) as update:
            summaries.append(
                run_demo(
                    name, jobs=jobs, hours=hours, seed=seed, progress=lambda t: update(t, _clock(t))
                )
            )
    if json_output:
        print_json(summaries)
        return
    rows = [
        ("accelerators", *(s["accelerators"] for s in summaries)),
        ("inference services", *(s["services"] for s in summaries)),
        ("training jobs submitted", *(s["jobs_submitted"] for s in summaries)),
        ("training jobs completed", *(s["jobs_completed"] for s in summaries)),
        ("allocation rate", *(f"{s['allocation_rate']:.1%}" for s in summaries)),
        ("utilization", *(f"{s['utilization']:.1%}" for s in summaries)),
        ("queue wait p50", *(f"{s['queue_wait_p50_s']:,.0f} s" for s in summaries)),
        ("queue wait p99", *(f"{s['queue_wait_p99_s']:,.0f} s" for s in summaries)),
        ("preemptions", *(s["preemptions"] for s in summaries)),
        ("node failures", *(s["node_failures"] for s in summaries)),
        ("work lost (faults, preemption)", *(f"{s['lost_work_fraction']:.2%}" for s in summaries)),
        ("scheduler passes", *(s["scheduler_passes"] for s in summaries)),
        ("wall time", *(f"{s['wall_seconds']:.1f} s" for s in summaries)),
    ]
    first = summaries[0]
    print_table(
        f"{hours:g} simulated hours, {jobs:,} arrivals ({first['jobs_submitted']:,} training "
        f"jobs, {first['services']:,} services), seed {seed}",
        ["", *(s["profile"] for s in summaries)],
        rows,
    )


from baige.cli.sim_sweep import sweep  # noqa: E402 - a command of its own module

app.command()(sweep)

from baige.cli.sim_ettr import ettr  # noqa: E402 - a command of its own module

app.command()(ettr)
