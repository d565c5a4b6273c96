"""Communication terms added with the published-table checks: NCCL's latencies per link
level, the data-parallel overlap window under interleaving, Megatron's pipeline
scatter/gather (absent under DeepSpeed's engine) and custom profiles that set them."""

from __future__ import annotations

import dataclasses

import pytest

from baige.plan import (
    MEGATRON_2021,
    MEGATRON_CORE,
    MEGATRON_DEEPSPEED,
    Recompute,
    Strategy,
    estimate,
    get_preset,
    parse_software,
    resolve_group,
)
from baige.plan.cost import collective_latency, collective_time


def test_latency_follows_nccls_tuning_model_per_link_level() -> None:
    """NCCL src/graph/tuning.cc (Ring/Simple): 8.4 µs base, 3.4 µs per NVLink hop, 9.6 µs per
    network hop; a ring all-reduce of 8 cards in a node takes 2·7 hops, 64 cards across nodes
    about 2·log2(64) hops."""
    sw = MEGATRON_CORE
    inside = float(collective_latency(8, True, 2.0, sw))
    across = float(collective_latency(64, False, 2.0, sw))
    assert inside == pytest.approx(8.4e-6 + 14 * 3.4e-6)
    assert across == pytest.approx(8.4e-6 + 12 * 9.6e-6)
    assert float(collective_latency(1, True, 2.0, sw)) == 0.0


def test_a_tiny_collective_costs_its_latency_and_a_large_one_its_bandwidth() -> None:
    sw = MEGATRON_CORE
    tiny = float(collective_time(8, 8.0, 450e9, 2.0, sw, inside=True))
    assert tiny == pytest.approx(float(collective_latency(8, True, 2.0, sw)), rel=1e-3)
    large = float(collective_time(8, 1e9, 450e9, 2.0, sw, inside=True))
    latency = float(collective_latency(8, True, 2.0, sw))
    assert large == pytest.approx(2 * 7 / 8 * 1e9 / (450e9 * 0.8) + latency, rel=1e-6)
    assert latency < 0.02 * large


def test_pipeline_without_scatter_gather_sends_tp_times_the_bytes() -> None:
    """DeepSpeed's pipeline engine sends the whole stage output from every tensor rank;
    Megatron-LM sends 1/tp of it (SC'21 §4.1). Everything else in the two profiles is equal."""
    model = get_preset("gpt3-175b")
    group = resolve_group("a100-80g", 512, 200)
    s = Strategy(tp=8, pp=8, dp=8, recompute=Recompute.FULL)
    quiet = {"collective_latency_s": 0.0, "scale_up_latency_s": 0.0}  # bytes only
    megatron = dataclasses.replace(MEGATRON_2021, **quiet)
    deepspeed = dataclasses.replace(MEGATRON_DEEPSPEED, **quiet)
    split = dict(estimate(model, group, megatron, s, 512).breakdown)["PP comm"]
    whole = dict(estimate(model, group, deepspeed, s, 512).breakdown)["PP comm"]
    assert whole == pytest.approx(8 * split, rel=1e-6)


def test_interleaving_hides_data_parallel_traffic_behind_the_bubble() -> None:
    """Megatron launches each chunk's reduce-scatter when its last backward ends, so with v
    chunks all but the last chunk's share hides behind the pipeline drain."""
    model = get_preset("gpt3-175b")
    group = resolve_group("h100", 1024, 400)
    plain = Strategy(tp=8, pp=8, dp=16, distributed_optimizer=True)
    chunks = dataclasses.replace(plain, interleave=4)
    sync_plain = dict(estimate(model, group, MEGATRON_CORE, plain, 256).breakdown)["DP comm"]
    sync_chunks = dict(estimate(model, group, MEGATRON_CORE, chunks, 256).breakdown)["DP comm"]
    assert sync_chunks < sync_plain


def test_custom_profile_sets_latencies_and_pipeline_sends() -> None:
    sw = parse_software(
        "kind: Software\nname: ours\nbase: megatron-2021\npipeline_scatter_gather: false\n"
        "scale_up_latency_s: 2.0e-6\ncollective_base_latency_s: 5.0e-6\n"
    )
    assert not sw.pipeline_scatter_gather
    assert (sw.scale_up_latency_s, sw.collective_base_latency_s) == (2.0e-6, 5.0e-6)
