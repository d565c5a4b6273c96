"""``baige sim demo``: synthetic arrivals (12 simulated hours by default) on 1,024
accelerators of three types, no files needed.

128 nodes of 8 (H100, A100 80 GB, Ascend 910B) in a zone/block/rack topology, two
organisations of two teams plus a serving queue, and ``jobs`` arrivals from
:func:`~baige.sim.synthetic.make_workloads` (about a third inference services, the rest
training jobs of one card to eight nodes, run times lognormal around 40 minutes).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from baige.sched.model import Kind
from baige.sim.build import Built, Service, TrainingJob, rng_for
from baige.sim.engine import Engine, EngineConfig, FaultModel, RestartCosts
from baige.sim.policies import get_policy
from baige.sim.progress import Checkpointing
from baige.sim.summary import summarize
from baige.sim.synthetic import LEVELS, ClusterShape, make_nodes, make_queues, make_workloads

__all__ = ["DEMO_SHAPE", "demo_built", "run_demo"]

DEMO_SHAPE = ClusterShape(
    groups=(("h100", 64), ("a100-80g", 48), ("ascend-910b", 16)),
    nodes_per_rack=8,
    racks_per_block=4,
    blocks_per_zone=2,
)


def demo_built(jobs: int, horizon: float, seed: int, shape: ClusterShape = DEMO_SHAPE) -> Built:
    rng = rng_for(seed, "demo")
    queues = make_queues(shape, orgs=2, teams=2)
    training: list[TrainingJob] = []
    services: list[Service] = []
    clock = 0.0
    rate = jobs / (horizon * 0.8)
    for workload in make_workloads(jobs, shape, queues, seed=seed):
        clock += rng.expovariate(rate)
        runtime = min(rng.lognormvariate(math.log(2400), 1.0), 3 * 86400.0)
        if workload.duration_estimate is not None:
            runtime = min(runtime, workload.duration_estimate * 0.9)
        if workload.kind is Kind.INFERENCE:
            template = replace(workload, created_at=clock, replicas=1, min_replicas=1)
            replicas = max(1, workload.replicas)
            services.append(
                Service(workload.id, template, clock, clock + runtime, replicas, replicas)
            )
        else:
            training.append(
                TrainingJob(
                    replace(workload, created_at=clock), runtime * workload.replicas, "demo"
                )
            )
    return Built(make_nodes(shape), queues, training, services, LEVELS)


def run_demo(
    profile: str,
    *,
    jobs: int,
    hours: float,
    seed: int,
    progress: Callable[[float], None] | None = None,
) -> dict[str, Any]:
    horizon = hours * 3600
    config = EngineConfig(
        horizon=horizon,
        seed=seed,
        interval=60.0,
        checkpointing=Checkpointing(900.0, 10.0),
        restart=RestartCosts(
            detection=10.0, rescheduling=10.0, initialization=60.0, checkpoint_load=50.0
        ),
        faults=FaultModel(per_1000_node_days=4.0, repair=4 * 3600.0),
    )
    started = time.perf_counter()
    engine = Engine(demo_built(jobs, horizon, seed), get_policy(profile), config)
    engine.run(progress)
    summary = summarize(engine, scenario="demo", wall_seconds=time.perf_counter() - started)
    summary["profile"] = summary["policy"]
    return summary
