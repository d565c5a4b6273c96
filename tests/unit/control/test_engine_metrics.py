"""Engine metrics as the autoscaler reads them: the fake engine's page (vLLM's names),
SGLang's names, pages that do not parse, and the autoscaler scaling on them."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from baige.api.loader import load_specs
from baige.api.workloads import InferenceServiceSpec
from baige.control.engine_metrics import read_engine_metrics
from baige.control.load_board import LoadBoard
from baige.engines.fake import FakeEngine
from baige.engines.render import ENGINES
from baige.sched.autoscale import AutoscalePolicy, AutoscaleState, LoadSample, recommend
from baige.sched.from_api import autoscale_policy


def test_the_fake_engine_page_reads_as_vllm_would() -> None:
    engine = FakeEngine(model="toy", max_concurrency=8)
    engine.waiting, engine.running = 3, 4
    reading = read_engine_metrics(engine.metrics(), ENGINES["fake"])
    assert reading.waiting == 3 and reading.cache_usage == 0.5
    # the same page read with vLLM's names
    assert read_engine_metrics(engine.metrics(), ENGINES["vllm"]) == reading


def test_sglang_names_and_label_sets_add_up() -> None:
    page = (
        "# TYPE sglang:num_queue_reqs gauge\n"
        'sglang:num_queue_reqs{model_name="a"} 2\n'
        'sglang:num_queue_reqs{model_name="b"} 5\n'
        "# TYPE sglang:token_usage gauge\n"
        'sglang:token_usage{model_name="a"} 0.25\n'
    )
    reading = read_engine_metrics(page, ENGINES["sglang"])
    assert reading.waiting == 7 and reading.cache_usage == 0.25


@pytest.mark.parametrize("page", ["", "not { a metrics page", "vllm:num_requests_waiting x\n"])
def test_a_page_without_the_gauges_measures_nothing(page: str) -> None:
    reading = read_engine_metrics(page, ENGINES["vllm"])
    assert reading.waiting is None and reading.cache_usage is None


def test_queued_requests_and_a_full_cache_scale_a_service_up() -> None:
    policy = AutoscalePolicy(1, 8, target_qps_per_replica=100, target_waiting_per_replica=2,
                             target_cache_usage=0.5)  # fmt: skip
    quiet = LoadSample(qps=1, in_flight=1, ready_replicas=2, waiting=0, cache_usage=0.1)
    waiting = LoadSample(qps=1, in_flight=1, ready_replicas=2, waiting=9, cache_usage=0.1)
    full = LoadSample(qps=1, in_flight=1, ready_replicas=2, waiting=0, cache_usage=0.95)
    assert recommend(policy, AutoscaleState(), 2, quiet, 0).replicas == 2  # held by its window
    up = recommend(policy, AutoscaleState(), 2, waiting, 0)
    assert up.replicas == 5 and "waiting" in up.reason  # ceil(9 / 2)
    up = recommend(policy, AutoscaleState(), 2, full, 0)
    assert up.replicas == 4 and "KV-cache" in up.reason  # ceil(2 x 0.95 / 0.5)


def test_the_board_shows_fresh_engine_figures_only() -> None:
    now = [100.0]
    board = LoadBoard(clock=lambda: now[0])
    board.started("svc")
    board.set_engine("svc", 4.0, 0.7)
    sample = board.sample("svc")
    assert sample is not None and sample.waiting == 4.0 and sample.cache_usage == 0.7
    now[0] += 31
    sample = board.sample("svc")
    assert sample is not None and sample.waiting is None and sample.cache_usage is None


def test_engine_targets_need_an_engine() -> None:
    text = """\
kind: InferenceService
name: s
queue: default
command: [serve]
accelerators: {count: 1, types: [h100]}
autoscale: {max_replicas: 3, target_waiting_per_replica: 4}
"""
    with pytest.raises((ValidationError, ValueError), match="target_waiting_per_replica"):
        load_specs(text)
    (spec,) = load_specs(text.replace("command: [serve]", "engine: {name: vllm, model: m}"))
    assert isinstance(spec, InferenceServiceSpec) and spec.autoscale is not None
    assert autoscale_policy(spec.autoscale).target_waiting_per_replica == 4
