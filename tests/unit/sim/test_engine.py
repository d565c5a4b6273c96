"""The simulator's conservation checks, determinism, and that Baige beats FIFO on a contended mix.

Each run checks every scheduler pass from the outside (``verify``): ``check_result`` on the
cycle's decisions, no device above its capacity, and the engine's allocation equal to the
scheduler's.
"""

from __future__ import annotations

import math

import pytest

from baige.sim.engine import CRASHED, DONE, PENDING, RUNNING, Engine
from baige.sim.run import RunOutput, run_scenario
from tests.unit.sim.helpers import SMALL, small

REQUIRED_KEYS = {
    "accelerators",
    "simulated_seconds",
    "wall_seconds",
    "events",
    "jobs_submitted",
    "jobs_completed",
    "allocation_rate",
    "utilization",
    "ettr",
    "lost_work_fraction",
    "queue_wait_p50_s",
    "queue_wait_p99_s",
    "jct_mean_s",
    "preemptions",
    "inference_demand_met",
    "per_queue",
    "per_type",
}


@pytest.fixture(scope="module")
def runs() -> dict[str, RunOutput]:
    loaded = small()
    return {p: run_scenario(loaded, policy=p, verify=True) for p in ("baige", "fifo")}


@pytest.mark.parametrize("policy", ["baige", "fifo"])
def test_every_pass_is_sound(runs: dict[str, RunOutput], policy: str) -> None:
    engine = runs[policy].engine
    assert engine.cycles > 100
    assert engine.violations == []


@pytest.mark.parametrize("policy", ["baige", "fifo"])
def test_jobs_end_in_exactly_one_state(runs: dict[str, RunOutput], policy: str) -> None:
    engine = runs[policy].engine
    summary = runs[policy].summary
    states = {job.state for job in engine.jobs.values()}
    assert states <= {PENDING, RUNNING, CRASHED, DONE}
    done = [j for j in engine.jobs.values() if j.state == DONE]
    assert len(done) == summary["jobs_completed"]
    for job in done:  # a completed job did all its work, started before it ended
        assert job.done == pytest.approx(job.spec.work, rel=1e-9)
        assert job.spec.submit <= job.first_start <= job.end
    for job in engine.jobs.values():
        if job.state != DONE:
            assert math.isnan(job.end) and job.done <= job.spec.work + 1e-6
    still = sum(1 for j in engine.jobs.values() if j.state != DONE and j.spec.submit < 12 * 3600)
    assert summary["jobs_completed"] + still == summary["jobs_submitted"]


@pytest.mark.parametrize("policy", ["baige", "fifo"])
def test_lost_work_is_the_sum_of_losses(runs: dict[str, RunOutput], policy: str) -> None:
    engine = runs[policy].engine
    assert engine.node_failures > 3
    assert any(loss.cause == "failure" for loss in engine.losses)
    per_job: dict[str, float] = {}
    for loss in engine.losses:
        assert loss.work > 0
        per_job[loss.job] = per_job.get(loss.job, 0.0) + loss.work
    for job in engine.jobs.values():
        assert job.lost == pytest.approx(per_job.get(job.spec.workload.id, 0.0))
        # every bit of progress was either kept or lost
        assert job.progress == pytest.approx(job.done + job.lost, abs=1e-6)
    total = sum(loss.work for loss in engine.losses)
    assert runs[policy].summary["lost_work_replica_seconds"] == pytest.approx(total)


@pytest.mark.parametrize("policy", ["baige", "fifo"])
def test_figures_are_sane(runs: dict[str, RunOutput], policy: str) -> None:
    summary = runs[policy].summary
    assert set(summary) >= REQUIRED_KEYS
    for key in (
        "allocation_rate",
        "utilization",
        "ettr",
        "lost_work_fraction",
        "inference_demand_met",
    ):
        assert 0.0 <= summary[key] <= 1.0, key
    assert summary["utilization"] <= summary["allocation_rate"] + 1e-9
    assert summary["ettr"] > 0.3 and summary["utilization"] > 0.2
    assert summary["queue_wait_p50_s"] <= summary["queue_wait_p99_s"]
    assert summary["jobs_submitted"] == 400
    assert set(summary["per_queue"]) == {"serving", "research", "product"}
    assert set(summary["per_type"]) == {"h100", "a100-80g"}
    shares = sum(q["allocation_rate"] for q in summary["per_queue"].values())
    assert shares == pytest.approx(summary["allocation_rate"])


@pytest.mark.parametrize("policy", ["baige", "fifo"])
def test_ettr_is_kept_progress_over_wall_time(runs: dict[str, RunOutput], policy: str) -> None:
    engine = runs[policy].engine
    horizon = engine.config.horizon
    productive = wall = 0.0
    for job in engine.jobs.values():
        if job.started:
            end = job.end if job.state == DONE else horizon
            assert 0 <= job.productive <= end - job.first_start + 1e-6
            productive += job.productive
            wall += end - job.first_start
            if job.state == DONE and not job.lost:  # kept progress is the work, at its size
                assert job.productive >= job.spec.work / job.spec.workload.replicas - 1e-6
    assert runs[policy].summary["ettr"] == pytest.approx(productive / wall)


def test_allocation_never_exceeds_capacity(runs: dict[str, RunOutput]) -> None:
    for output in runs.values():
        engine: Engine = output.engine
        capacity = sum(n.devices * 1000 for n in engine.built.nodes)
        assert max(engine.bins["allocated_training"].means()) <= capacity
        for level in (engine.total.allocated, *(g.allocated for g in engine.by_type.values())):
            assert level.value >= -1e-6
        assert engine.total.allocated.area <= engine.total.available.area + 1e-6


def test_same_seed_same_summary(runs: dict[str, RunOutput]) -> None:
    again = run_scenario(small(), policy="baige").summary
    first = dict(runs["baige"].summary)
    for key in ("wall_seconds", "scheduler_seconds"):
        first.pop(key)
        again.pop(key)
    assert first == again


def test_another_seed_another_run() -> None:
    other = run_scenario(small(SMALL.replace("seed: 3", "seed: 4"))).summary
    assert other["jobs_submitted"] == 400 and other["events"] != 0


def test_baige_uses_the_cluster_better_than_fifo(runs: dict[str, RunOutput]) -> None:
    baige, fifo = runs["baige"].summary, runs["fifo"].summary
    assert baige["allocation_rate"] > fifo["allocation_rate"]
    assert baige["queue_wait_p50_s"] < fifo["queue_wait_p50_s"]
    assert baige["jobs_completed"] > fifo["jobs_completed"]


def test_inference_follows_demand(runs: dict[str, RunOutput]) -> None:
    engine = runs["baige"].engine
    assert runs["baige"].summary["inference_replicas_started"] > 10
    for name, state in engine.services.items():
        assert state.demand_time > 0
        assert state.wanted == state.needed  # the autoscaler follows the demand at once
        # one workload of N replicas per service, as in the live control plane
        sizes = [w.replicas for w in engine.scheduler.snapshot().workloads if w.id == name]
        assert sizes == ([state.wanted] if state.wanted else [])


def test_flaky_nodes_get_cordoned(runs: dict[str, RunOutput]) -> None:
    engine = runs["baige"].engine
    for node in engine.cordoned:
        assert len(engine.failures[node]) >= 2
