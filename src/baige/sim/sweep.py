"""Sweeps: one scenario run over a grid of settings, and what checkpointing theory predicts.

"What reaches 99.5% effective training time?" has two answers that should agree: the
simulator's, which replays the whole cluster (queueing, preemption, failures landing on jobs
of every size, the start-up cost of short jobs), and the closed-form one of Young (1974) and
Daly (2006) for one job: with a checkpoint stall ``δ`` every ``τ`` seconds of work, a
restart cost ``R`` and a mean time between failures ``M`` of the job's nodes, the share of
time lost is about ``δ/τ + (τ/2 + R)/M``, smallest at ``τ* = √(2δM)``. A sweep prints both,
so a number from the simulator can be checked against the formula and a setting from the
formula checked against the cluster.

Axes name any scenario field by its dotted path (``training.checkpoint.interval``) with
comma-separated values (``1m,5m,10m``); every combination is validated like the scenario
file itself, so a bad value is an error naming the ``--set`` it came from.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from baige.api.loader import SpecError, SpecProblem
from baige.api.yaml_errors import field_path
from baige.sim.recovery import checkpoint_stall, recovery_for
from baige.sim.run import restart_costs, run_scenario
from baige.sim.scenario import LoadedScenario, Mode, Scenario

__all__ = [
    "Axis",
    "SweepPoint",
    "YoungDaly",
    "largest_job",
    "parse_axis",
    "run_sweep",
    "scenario_with",
    "young_daly",
]

MAX_POINTS = 256  # a sweep is for a few settings, not a search


@dataclass(frozen=True, slots=True)
class Axis:
    """One swept field: its dotted path and the values (as written) it takes."""

    path: tuple[str, ...]
    values: tuple[str, ...]

    @property
    def name(self) -> str:
        return ".".join(self.path)


@dataclass(frozen=True, slots=True)
class YoungDaly:
    """The closed-form optimum for one job of ``nodes`` nodes."""

    nodes: int
    mtbf_s: float  # mean time between failures of the job's nodes together
    stall_s: float
    restart_s: float
    optimal_interval_s: float  # √(2δM)
    ettr_at_optimum: float
    ettr_at_interval: float | None  # at the scenario's own interval, when it checkpoints
    interval_s: float = 0.0  # the scenario's own interval (0: it never checkpoints)


@dataclass(frozen=True, slots=True)
class SweepPoint:
    settings: dict[str, str]
    summary: dict[str, Any]
    theory: YoungDaly | None


def parse_axis(text: str) -> Axis:
    """``a.b.c=v1,v2`` → an Axis; a :class:`SpecError` naming the argument otherwise."""
    path, sep, values = text.partition("=")
    parts = tuple(p for p in path.strip().split(".") if p)
    items = tuple(v.strip() for v in values.split(",") if v.strip())
    if not sep or not parts or not items:
        raise SpecError(
            [SpecProblem("--set", None, path.strip(), f"expected FIELD=V1,V2,… not {text!r}")]
        )
    return Axis(parts, items)


def _value(text: str) -> object:
    """A value as YAML would read it (so ``5m`` stays a duration, ``true`` a bool)."""
    import yaml  # noqa: PLC0415

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def scenario_with(loaded: LoadedScenario, settings: dict[tuple[str, ...], str]) -> LoadedScenario:
    """The scenario with each dotted field set, validated as a whole."""
    data = copy.deepcopy(loaded.scenario.model_dump(mode="json"))
    for path, text in settings.items():
        target: Any = data
        for key in path[:-1]:
            if not isinstance(target, dict) or key not in target:
                raise loaded.error((), f"--set {'.'.join(path)}: no field {key!r} there")
            if target[key] is None:
                target[key] = {}
            target = target[key]
        if not isinstance(target, dict):
            raise loaded.error((), f"--set {'.'.join(path)}: {path[-2]!r} is not a section")
        target[path[-1]] = _value(text)
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as err:
        problems = []
        for item in err.errors():
            where = field_path(tuple(item.get("loc", ())))
            given = ", ".join(f"{'.'.join(p)}={v}" for p, v in settings.items())
            problems.append(SpecProblem("--set", None, where, f"{item['msg']} (with {given})"))
        raise SpecError(problems) from None
    return LoadedScenario(scenario, loaded.source, loaded.node)


def young_daly(loaded: LoadedScenario, nodes: int) -> YoungDaly | None:
    """Young/Daly for one job of ``nodes`` nodes under the scenario's failure rate, stall and
    restart cost (detection + rescheduling + initialization + checkpoint load, measured when
    the scenario names a measured model); None when the scenario has no failures or does not
    checkpoint."""
    scenario = loaded.scenario
    rate = scenario.faults.node_failures_per_1000_node_days / 1000 / 86400  # per node-second
    stall = checkpoint_stall(loaded)
    if rate <= 0 or nodes <= 0 or stall <= 0:
        return None
    flaky = scenario.faults.flaky_nodes
    rate *= (1 - flaky) + flaky * scenario.faults.flaky_factor  # the mean node's rate
    mtbf = 1 / (rate * nodes)
    recovery = recovery_for(loaded)
    if recovery is not None:  # through a spare if there are any, restoring from the buddy
        cost = recovery.failure_cost()
    else:
        restart = restart_costs(loaded)
        cost = restart.detection + restart.restart
    optimum = math.sqrt(2 * stall * mtbf)

    def ettr(interval: float) -> float:
        waste = stall / interval + (interval / 2 + cost) / mtbf
        return max(0.0, 1 - waste)

    interval = scenario.training.checkpoint_interval
    return YoungDaly(
        nodes=nodes,
        mtbf_s=mtbf,
        stall_s=stall,
        restart_s=cost,
        optimal_interval_s=optimum,
        ettr_at_optimum=ettr(optimum),
        ettr_at_interval=ettr(interval) if interval > 0 else None,
        interval_s=interval,
    )


def run_sweep(
    loaded: LoadedScenario,
    axes: Sequence[Axis],
    *,
    job_nodes: int | None = None,
    progress: Callable[[int, int, dict[str, str]], None] | None = None,
) -> list[SweepPoint]:
    """Run every combination of ``axes`` (in order, the last axis varying fastest)."""
    if loaded.scenario.mode is not Mode.TIMELINE:
        raise loaded.error(("mode",), "a sweep runs timeline scenarios")
    combos = list(itertools.product(*(axis.values for axis in axes)))
    if len(combos) > MAX_POINTS:
        raise SpecError(
            [SpecProblem("--set", None, "", f"{len(combos)} combinations; at most {MAX_POINTS}")]
        )
    nodes = job_nodes or largest_job(loaded.scenario)[1]
    points = []
    for index, combo in enumerate(combos):
        settings = {axis.path: value for axis, value in zip(axes, combo, strict=True)}
        shown = {".".join(p): v for p, v in settings.items()}
        if progress is not None:
            progress(index, len(combos), shown)
        variant = scenario_with(loaded, settings)
        summary = run_scenario(variant).summary
        points.append(SweepPoint(shown, summary, young_daly(variant, nodes)))
    if progress is not None:
        progress(len(combos), len(combos), {})
    return points


def largest_job(scenario: Scenario) -> tuple[str | None, int]:
    """The synthetic class whose jobs can be the largest (the jobs the 99.5% target is
    about) and their nodes; with no synthetic classes, (None, every node of the cluster)."""
    devices = max((g.devices for g in scenario.cluster.node_groups or ()), default=8) or 8
    synthetic = scenario.workloads.synthetic
    best: tuple[str | None, int] = (None, 0)
    if synthetic is not None:
        for job_class in synthetic.classes:
            nodes = math.ceil(max(job_class.replicas) * job_class.gpus / devices)
            if nodes > best[1]:
                best = (job_class.name, nodes)
    if best[1]:
        return best
    return None, sum(g.count for g in scenario.cluster.node_groups or ()) or 1
