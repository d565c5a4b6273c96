"""A simulation built from the specs users submit to the control plane.

``baige.api`` specs — ``Node``, ``Queue``, ``TrainingJob``, ``InferenceService`` — become the
scheduler's types through :mod:`baige.sched.from_api`, the same functions the controller's
snapshot uses, so a spec means the same thing in both worlds. What the specs cannot say (when
each arrives, how long a job runs, the load on a service, when a node dies) comes as
:class:`Arrival`\\ s and scripted failures. The parity test and ``bench/colocation.py`` run
the same scenario live and here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from baige.api.nodes import NodeSpec
from baige.api.queues import QueueSpec
from baige.api.workloads import InferenceServiceSpec, TrainingJobSpec
from baige.sched.autoscale import MEASURE_WINDOW_S
from baige.sched.from_api import (
    autoscale_policy,
    node_from_spec,
    queue_from_spec,
    workload_from_spec,
)
from baige.sim.build import Built, Service, TrainingJob

__all__ = ["Arrival", "built_from_specs"]


@dataclass(frozen=True, slots=True)
class Arrival:
    """A spec submitted at ``at``.

    A training job runs ``seconds`` at full size (``None``: longer than any horizon); a
    service sees ``qps`` requests per second, a step function of (from time, rate)."""

    at: float
    spec: TrainingJobSpec | InferenceServiceSpec
    seconds: float | None = None
    qps: tuple[tuple[float, float], ...] = ()


def _service(arrival: Arrival, spec: InferenceServiceSpec, window: float) -> Service:
    workload = workload_from_spec(spec, workload_id=spec.name, created_at=arrival.at)
    template = replace(workload, replicas=1, min_replicas=1)
    if spec.autoscale is None:
        return Service(spec.name, template, arrival.at, math.inf, spec.replicas, spec.replicas)
    policy = autoscale_policy(spec.autoscale)
    return Service(
        spec.name,
        template,
        arrival.at,
        math.inf,
        policy.max_replicas,
        policy.min_replicas,
        policy=policy,
        qps=tuple(sorted(arrival.qps)) or ((arrival.at, 0.0),),
        initial=spec.replicas,
        window=window,
    )


def built_from_specs(
    nodes: Sequence[NodeSpec],
    queues: Sequence[QueueSpec],
    arrivals: Sequence[Arrival],
    *,
    failures: Sequence[tuple[float, str]] = (),
    tick: float = 1.0,
    window: float = MEASURE_WINDOW_S,
    levels: tuple[str, ...] = ("block", "rack"),
) -> Built:
    """The simulator's input for these specs; ``tick``: how often the autoscaler acts (the
    controller's pass interval); ``window``: over how long the gateway averages requests per
    second (0: the autoscaler sees the load as it is)."""
    jobs: list[TrainingJob] = []
    services: list[Service] = []
    for arrival in sorted(arrivals, key=lambda a: a.at):
        spec = arrival.spec
        if isinstance(spec, InferenceServiceSpec):
            services.append(_service(arrival, spec, window))
            continue
        workload = workload_from_spec(spec, workload_id=spec.name, created_at=arrival.at)
        seconds = math.inf if arrival.seconds is None else arrival.seconds
        size = spec.replicas if spec.spares else None  # spares stand by, they do not train
        jobs.append(TrainingJob(workload, seconds * spec.replicas, "spec", size))
    return Built(
        nodes=[node_from_spec(n) for n in nodes],
        queues=[queue_from_spec(q) for q in queues],
        jobs=jobs,
        services=services,
        levels=levels,
        tick=tick,
        failures=tuple(failures),
    )
