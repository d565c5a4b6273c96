"""The cost and memory formulas against their closed forms in the literature."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from baige.plan import (
    MEGATRON_2021,
    MEGATRON_CORE,
    Candidates,
    ModelSpec,
    Recompute,
    Software,
    Strategy,
    calibrate_efficiency,
    estimate,
    get_preset,
    resolve_group,
)
from baige.plan.cost import collective_time
from baige.plan.estimate import pipeline_time
from baige.plan.memory import activation_bytes_per_layer, state_bytes_per_param

GPT_22B = ModelSpec(
    name="gpt-22b", layers=48, hidden=6144, ffn_hidden=24576, heads=64, kv_heads=64,
    vocab=51200, seq_len=2048, gated_mlp=False, tied_embeddings=True,
)  # fmt: skip
H100_64 = resolve_group("h100", 64, 400)


def _columns(tp: int, rc: Recompute, mb: int = 1) -> Candidates:
    return Candidates.build(
        tp=tp, pp=1, dp=1, cp=1, ep=1, mb=mb, m=1, v=1, rc=int(rc), dist_opt=0, first=1, last=1
    )


@pytest.mark.parametrize(
    ("sequence_parallel", "rc", "tp"),
    [
        (False, Recompute.NONE, 1),
        (False, Recompute.NONE, 8),
        (True, Recompute.NONE, 8),
        (True, Recompute.SELECTIVE, 4),
        (False, Recompute.FULL, 8),
        (True, Recompute.FULL, 8),
    ],
)
def test_activation_memory_matches_korthikanti(
    sequence_parallel: bool, rc: Recompute, tp: int
) -> None:
    """Korthikanti et al. 2022, Table 2: s·b·h·(10 + 24/t + 5as/ht) with tensor parallelism,
    s·b·h/t·(34 + 5as/h) adding sequence parallelism, 34·s·b·h/t with selective
    recomputation, and 2·s·b·h (/t with SP) with full recomputation."""
    sw = dataclasses.replace(MEGATRON_2021, sequence_parallel=sequence_parallel)
    m = GPT_22B
    s, b, h, a, t = m.seq_len, 2, m.hidden, m.heads, tp
    sbh = s * b * h
    scores = 5 * a * s / h
    if rc == Recompute.FULL:
        expected = 2 * sbh / (t if sequence_parallel else 1)
    elif rc == Recompute.SELECTIVE:
        expected = 34 * sbh / t
    elif sequence_parallel:
        expected = sbh / t * (34 + scores)
    else:
        expected = sbh * (10 + 24 / t + scores / t)
    got = activation_bytes_per_layer(m, sw, _columns(tp, rc, mb=b))
    assert float(got[0]) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(
    ("dist_opt", "shards", "expected"),
    [(0, 1, 18.0), (0, 64, 18.0), (1, 1, 18.0), (1, 4, 9.0), (1, 64, 6.1875)],
)
def test_bytes_per_parameter(dist_opt: int, shards: int, expected: float) -> None:
    got = state_bytes_per_param(np.array([dist_opt]), np.array([shards]))
    assert float(got[0]) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("m", "p", "v", "expected_bubble"),
    [(8, 1, 1, 0.0), (8, 4, 1, 3.0), (16, 4, 2, 1.5), (64, 8, 4, 1.75)],
)
def test_pipeline_bubble_is_the_textbook_one(
    m: int, p: int, v: int, expected_bubble: float
) -> None:
    """For p equal stages of t seconds: (m + (p − 1)/v)·t (Narayanan et al. 2021)."""
    t = 0.25
    got = pipeline_time(
        np.array([m], float), np.array([t]), np.array([p * t]), np.array([v], float)
    )
    assert float(got[0]) == pytest.approx((m + expected_bubble) * t)


@pytest.mark.parametrize(("n", "steps"), [(1, 2.0), (2, 2.0), (8, 2.0), (64, 1.0)])
def test_collective_time(n: int, steps: float) -> None:
    sw = dataclasses.replace(MEGATRON_CORE, collective_latency_s=0.0, scale_up_latency_s=0.0,
                             collective_base_latency_s=0.0)  # fmt: skip
    nbytes, bandwidth = 1e9, 100e9
    got = float(collective_time(n, nbytes, bandwidth, steps, sw))
    expected = steps * (n - 1) / n * nbytes / (bandwidth * sw.comm_efficiency)
    assert got == pytest.approx(expected)


@pytest.mark.parametrize(
    ("model_name", "software"),
    [
        ("llama3-8b", MEGATRON_2021),
        ("llama3-8b", MEGATRON_CORE),
        ("mixtral-8x7b", MEGATRON_CORE),
    ],
)
def test_more_recomputation_trades_time_for_memory(model_name: str, software: Software) -> None:
    """Each step up in recomputation costs time; it saves memory, except that selective
    recomputation saves nothing once flash attention stops storing the scores at all."""
    model = get_preset(model_name)
    results = [
        estimate(model, H100_64, software, Strategy(tp=8, pp=1, dp=8, recompute=rc), 64)
        for rc in Recompute
    ]
    none, selective, full = (r.memory_gb for r in results)
    if software.flash_attention:
        assert none == pytest.approx(selective) and selective > full
    else:
        assert none > selective > full
    times = [r.iteration_s for r in results]
    assert times == sorted(times) and times[0] < times[2]


@pytest.mark.parametrize("tp", [1, 2, 4, 8])
def test_tensor_parallelism_divides_weights(tp: int) -> None:
    model = get_preset("llama3-8b")
    one = estimate(model, H100_64, MEGATRON_CORE, Strategy(tp=1, pp=1, dp=64), 64)
    split = estimate(model, H100_64, MEGATRON_CORE, Strategy(tp=tp, pp=1, dp=64 // tp), 64)
    assert split.states_gb == pytest.approx(one.states_gb / tp, rel=1e-9)


def test_flash_attention_and_overlap_make_modern_software_faster() -> None:
    model = get_preset("llama3-70b")
    strategy = Strategy(tp=8, pp=4, dp=2, micro_batch=1, recompute=Recompute.SELECTIVE)
    old = estimate(model, H100_64, MEGATRON_2021, strategy, 64)
    new = estimate(model, H100_64, MEGATRON_CORE, strategy, 64)
    assert new.iteration_s < old.iteration_s
    assert new.activations_gb < old.activations_gb


def test_breakdown_adds_up_to_the_iteration() -> None:
    model = get_preset("mixtral-8x7b")
    strategy = Strategy(tp=2, pp=2, dp=16, ep=4, micro_batch=1, interleave=2)
    result = estimate(model, H100_64, MEGATRON_CORE, strategy, 256)
    assert sum(seconds for _, seconds in result.breakdown) == pytest.approx(result.iteration_s)
    assert all(seconds >= 0 for _, seconds in result.breakdown)
    assert dict(result.breakdown)["EP comm"] > 0


@pytest.mark.parametrize("efficiency", [0.35, 0.5, 0.8])
def test_calibration_recovers_the_efficiency_behind_a_measurement(efficiency: float) -> None:
    model = get_preset("llama3-8b")
    strategy = Strategy(tp=2, pp=2, dp=16, recompute=Recompute.SELECTIVE)
    truth = resolve_group("h100", 64, 400, efficiency=efficiency)
    measured = estimate(model, truth, MEGATRON_CORE, strategy, 128).hardware_tflops_per_card
    got = calibrate_efficiency(model, H100_64, MEGATRON_CORE, strategy, 128, measured)
    assert got == pytest.approx(efficiency, abs=1e-4)


def test_calibration_refuses_an_unreachable_measurement() -> None:
    model = get_preset("llama3-8b")
    with pytest.raises(ValueError, match="out of reach"):
        calibrate_efficiency(model, H100_64, MEGATRON_CORE, Strategy(tp=8, pp=1, dp=8), 64, 2000.0)
