"""Parts of the cost model, each against a measurement or a closed form: one layer's time
(Korthikanti Table 4), the roofline, attention kernels per chip family, interleaving with
uneven stages, FSDP memory, and custom software profiles."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from baige.api.loader import SpecError
from baige.plan import (
    MEGATRON_2022,
    MEGATRON_CORE,
    TORCHTITAN_FSDP2,
    Candidates,
    ModelSpec,
    Recompute,
    Strategy,
    estimate,
    get_preset,
    parse_software,
    resolve_group,
)
from baige.plan.cost import layer_time, linear_time
from baige.plan.efficiency import FAMILIES, family_of

DATA = Path(__file__).resolve().parents[3] / "data" / "published"

GPT_22B = ModelSpec(name="gpt-22b", layers=48, hidden=6144, ffn_hidden=4 * 6144, heads=64,
                    kv_heads=64, vocab=51200, seq_len=2048, gated_mlp=False,
                    tied_embeddings=True)  # fmt: skip


def _table4() -> list[dict[str, str]]:
    with (DATA / "korthikanti-2022-table4.csv").open(encoding="utf-8") as handle:
        return list(csv.DictReader(line for line in handle if not line.startswith("#")))


@pytest.mark.parametrize("row", _table4(), ids=lambda r: r["experiment"])
def test_one_layer_matches_korthikanti_table4(row: dict[str, str]) -> None:
    """A single 22B layer (TP8, micro-batch 4) within 10% of the measured forward+backward
    time for every combination of sequence parallelism and recomputation."""
    sw = dataclasses.replace(MEGATRON_2022, sequence_parallel=row["sequence_parallel"] == "yes")
    rc = int(Recompute[row["recompute"].upper()])
    c = Candidates.build(tp=8, pp=1, dp=1, cp=1, ep=1, mb=4, m=1, v=1, rc=rc, dist_opt=0,
                         first=48, last=48)  # fmt: skip
    group = resolve_group("a100-80g", 8, 200)
    predicted_ms = float(layer_time(GPT_22B, group, sw, c).total[0]) * 1e3
    assert predicted_ms == pytest.approx(float(row["combined_ms"]), rel=0.10)


def test_roofline_slows_skinny_gemms_only() -> None:
    """Many tokens: compute-bound, time = FLOPs / (efficiency × peak). Few tokens: the weights
    must still be streamed, so the time stops falling with the token count."""
    model = get_preset("llama3-70b")
    group = resolve_group("h100", 8, 400)
    tp = np.array([8.0])
    flops_rate = group.flops_per_s * group.efficiency
    per_token = 2.0 * (model.attention_params + 3 * model.hidden * model.ffn_hidden) / 8
    big = float(linear_time(model, group, MEGATRON_CORE, np.array([8192.0]), tp)[0])
    assert big == pytest.approx(8192 * per_token / flops_rate, rel=0.02)
    small = float(linear_time(model, group, MEGATRON_CORE, np.array([16.0]), tp)[0])
    assert small > 5 * 16 * per_token / flops_rate


def test_chip_families_have_their_own_attention_efficiency() -> None:
    assert family_of("a100-80g") == "ampere" and family_of("h100") == "hopper"
    assert resolve_group("h100", 8, 400).attention_efficiency == FAMILIES["hopper"].attention
    assert resolve_group("a100-80g", 8, 200).attention_efficiency == FAMILIES["ampere"].attention
    assert FAMILIES["hopper"].attention < FAMILIES["ampere"].attention  # FA2 on H100: 35%


def test_a_chip_without_a_family_says_what_it_assumed() -> None:
    group = resolve_group("ascend-910b", 8, 200, scale_up_gbs=392)
    assert any("GEMM efficiency" in a for a in group.assumptions)


def test_uneven_stages_can_be_interleaved() -> None:
    """Llama 3 405B: 126 layers on 16 stages (8 each, 6 on the last) with 8 chunks per stage;
    interleaving cuts the bubble about v-fold."""
    model = get_preset("llama3-405b")
    group = resolve_group("h100", 8192, 400)
    base = Strategy(tp=8, pp=16, dp=64, recompute=Recompute.FULL, distributed_optimizer=True,
                    last_stage_layers=6)  # fmt: skip
    plain = estimate(model, group, MEGATRON_CORE, base, 2048)
    interleaved = estimate(model, group, MEGATRON_CORE, dataclasses.replace(base, interleave=8),
                           2048)  # fmt: skip
    bubble = dict(plain.breakdown)["pipeline bubble"]
    bubble_v = dict(interleaved.breakdown)["pipeline bubble"]
    assert bubble_v < bubble / 5
    assert interleaved.iteration_s < plain.iteration_s
    assert "v8 last6" in interleaved.strategy.describe()


def test_fsdp_shards_every_state() -> None:
    """FSDP2: 16 bytes per parameter over the ranks, plus one gathered layer; the
    replicated layout needs 18 bytes per parameter on every rank."""
    model = get_preset("llama3-8b")
    group = resolve_group("a100-80g", 64, 400)
    s = Strategy(tp=1, pp=1, dp=64, micro_batch=1, recompute=Recompute.FULL)
    sharded = estimate(model, group, TORCHTITAN_FSDP2, s, 64)
    assert sharded.states_gb * 1e9 < model.params * 16 / 64 + 10 * model.dense_layer_params
    replicated = estimate(model, group, dataclasses.replace(TORCHTITAN_FSDP2, fsdp=False), s, 64)
    assert replicated.states_gb == pytest.approx(model.params * 18 / 1e9, rel=0.01)


def test_custom_software_profile_from_yaml() -> None:
    sw = parse_software(
        "kind: Software\nname: ours\nbase: megatron-core\ntp_overlap: 0.8\n"
        "source: our cluster, 2025\n"
    )
    assert sw.name == "ours" and sw.tp_overlap == 0.8 and sw.flash_attention
    assert sw.source == "our cluster, 2025"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kind: Software\nname: x\ntp_overlap: 2\n", "tp_overlap"),
        ("kind: Software\nname: x\nbase: deepspeed\n", "unknown software profile"),
        ("kind: Software\nname: x\nfsdp: true\ndistributed_optimizer: true\n", "fsdp"),
        ("kind: Software\nname: x\ntp_overlapp: 0.5\n", "tp_overlapp"),
    ],
)
def test_bad_software_profile_says_why(text: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_software(text, "sw.yaml")


def test_free_search_keeps_context_parallelism_small_for_8k_on_405b() -> None:
    """No published 8K run of a 405B model uses CP beyond 2 (Llama 3: CP1; NeMo: CP2)."""
    from baige.plan import search  # noqa: PLC0415

    best = search(get_preset("llama3-405b"), resolve_group("h100", 16384, 400), MEGATRON_CORE,
                  2048, top_k=1).best  # fmt: skip
    assert best.strategy.cp <= 2


def test_partial_full_recomputation_sits_between_none_and_full() -> None:
    """Recomputing half of each stage's layers costs half the extra forward and keeps half
    the activations (Megatron's block method)."""
    model = get_preset("llama3-70b")
    group = resolve_group("h100", 64, 400)
    base = Strategy(tp=8, pp=8, dp=1, recompute=Recompute.FULL, distributed_optimizer=False)
    full = estimate(model, group, MEGATRON_CORE, base, 64)
    half = estimate(model, group, MEGATRON_CORE, dataclasses.replace(base, recompute_layers=5),
                    64)  # fmt: skip
    none = estimate(model, group, MEGATRON_CORE,
                    dataclasses.replace(base, recompute=Recompute.NONE), 64)  # fmt: skip
    assert none.iteration_s < half.iteration_s < full.iteration_s
    assert full.activations_gb < half.activations_gb < none.activations_gb
    extra = dict(full.breakdown)["recomputation"]
    assert dict(half.breakdown)["recomputation"] == pytest.approx(extra / 2, rel=1e-6)
    assert half.strategy.describe().endswith("rc=full:5")
