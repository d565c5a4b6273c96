"""Running a scenario: its policy resolved, the cluster and workloads built, the engine run.

The one entry point the CLI, the benchmarks and the tests use: :func:`run_scenario` for a
timeline, :func:`run_inflation_scenario` for the FGD experiment. Both raise
:class:`~baige.api.loader.SpecError` for bad input (naming file, line and field), never
anything else for anything a user wrote.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from baige.sched import Profile, ProfileError
from baige.sim.build import build
from baige.sim.engine import Engine, EngineConfig, FaultModel, RestartCosts
from baige.sim.inflation import InflationResult, run_inflation
from baige.sim.policies import get_policy
from baige.sim.progress import Checkpointing
from baige.sim.recovery import checkpoint_stall, recovery_for
from baige.sim.scenario import LoadedScenario, Mode, Passes
from baige.sim.summary import summarize

__all__ = [
    "MeasuredRestart",
    "RunOutput",
    "engine_config",
    "resolve_policy",
    "restart_costs",
    "run_inflation_scenario",
    "run_scenario",
]


@dataclass(slots=True)
class RunOutput:
    summary: dict[str, Any]
    engine: Engine


def resolve_policy(loaded: LoadedScenario, name: str | None = None) -> Profile:
    """The scenario's policy (or ``name`` instead), with its ``policy_settings`` applied."""
    scenario = loaded.scenario
    try:
        profile = get_policy(name or scenario.policy)
    except ProfileError as err:
        if name is not None:
            raise loaded.error((), f"--policy: {err}") from None
        raise loaded.error(("policy",), str(err)) from None
    try:
        return (
            profile.with_overrides(scenario.policy_settings)
            if scenario.policy_settings
            else profile
        )
    except (ProfileError, TypeError, ValueError) as err:
        raise loaded.error(("policy_settings",), str(err)) from None


def engine_config(loaded: LoadedScenario, *, verify: bool = False) -> EngineConfig:
    scenario = loaded.scenario
    training = scenario.training
    faults = scenario.faults
    return EngineConfig(
        horizon=scenario.duration,
        seed=scenario.seed,
        interval=scenario.scheduler.interval,
        every_interval=scenario.scheduler.passes is Passes.EVERY_INTERVAL,
        checkpointing=Checkpointing(training.checkpoint_interval, checkpoint_stall(loaded)),
        checkpoint_on_preemption=training.checkpoint.on_preemption,
        restart=restart_costs(loaded),
        recovery=recovery_for(loaded),
        faults=FaultModel(
            faults.node_failures_per_1000_node_days,
            faults.repair,
            faults.flaky_nodes,
            faults.flaky_factor,
            faults.cordon_after,
            faults.cordon_window,
        ),
        timeline_points=scenario.report.timeline_points,
        verify=verify,
    )


class MeasuredRestart(BaseModel):
    """What ``bench/runtime_faults.py --restart-model`` writes: seconds from a fault to its
    detection, and from detection to training again, split as the simulator charges it."""

    model_config = ConfigDict(extra="ignore")

    detection: float = Field(ge=0, le=86400)
    rescheduling: float = Field(default=0.0, ge=0, le=86400)
    initialization: float = Field(ge=0, le=86400)
    checkpoint_load: float = Field(default=0.0, ge=0, le=86400)
    source: str = ""


def restart_costs(loaded: LoadedScenario) -> RestartCosts:
    """The scenario's restart costs, or those of the measured model it names, or those of
    its recovery model (``training.recovery``: a restart from disk after a requeue; the
    engine charges swaps and buddy restores itself)."""
    recovery = recovery_for(loaded)
    if recovery is not None:
        return RestartCosts(
            recovery.detection,
            recovery.reschedule,
            recovery.restart,
            recovery.restore(recovery.after_node_loss),
        )
    restart = loaded.scenario.training.restart
    if restart.measured is None:
        return RestartCosts(
            restart.detection, restart.rescheduling, restart.initialization, restart.checkpoint_load
        )
    where = ("training", "restart", "measured")
    path = loaded.resolve(where, restart.measured)
    try:
        model = MeasuredRestart.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        first = str(err).splitlines()
        reason = first[0] if len(first) < 3 else f"{first[1]}: {first[2].strip()}"
        raise loaded.error(where, f"{restart.measured}: not a restart model ({reason})") from None
    return RestartCosts(
        model.detection, model.rescheduling, model.initialization, model.checkpoint_load
    )


def run_scenario(
    loaded: LoadedScenario,
    *,
    policy: str | None = None,
    progress: Callable[[float], None] | None = None,
    verify: bool = False,
) -> RunOutput:
    """Run a timeline scenario (under ``policy`` instead of its own, if given)."""
    if loaded.scenario.mode is not Mode.TIMELINE:
        raise loaded.error(("mode",), "this is an inflation scenario; run it with run_inflation")
    started = time.perf_counter()
    profile = resolve_policy(loaded, policy)
    built = build(loaded)
    engine = Engine(built, profile, engine_config(loaded, verify=verify))
    engine.run(progress)
    wall = time.perf_counter() - started
    return RunOutput(summarize(engine, scenario=loaded.scenario.name, wall_seconds=wall), engine)


def run_inflation_scenario(
    loaded: LoadedScenario,
    *,
    policies: list[str] | None = None,
    progress: Callable[[str, float], None] | None = None,
) -> InflationResult:
    spec = loaded.scenario.inflation
    if spec is None:
        raise loaded.error(("mode",), "a timeline scenario; run it with run_scenario")
    names = policies or spec.policies
    profiles = []
    for position, name in enumerate(names):
        try:
            profile = get_policy(name)
        except ProfileError as err:
            loc: tuple[str | int, ...] = () if policies else ("inflation", "policies", position)
            raise loaded.error(loc, str(err)) from None
        profiles.append(profile)
    return run_inflation(loaded, profiles, progress)
