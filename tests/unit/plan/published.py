"""Published measurements the cost model is checked against, read from data/published/.

Each table is a list of :class:`Case` s: one measured run, the model, chips, software and
whatever of the strategy the source states. Degrees a source leaves out (Llama 3's
micro-batch, interleaving and recomputation) are searched, with the stated ones fixed.
``error`` is predicted / measured throughput − 1 (positive: the model is too optimistic).
"""

from __future__ import annotations

import csv
import dataclasses
import math
from collections.abc import Callable
from pathlib import Path

from baige.plan import (
    MEGATRON_2021,
    MEGATRON_2022,
    MEGATRON_CORE,
    MEGATRON_DEEPSPEED,
    META_LLAMA3,
    TORCHTITAN_FSDP2,
    Constraints,
    Estimate,
    ModelSpec,
    Recompute,
    Software,
    Strategy,
    estimate,
    get_preset,
    resolve_group,
    search,
)
from baige.plan.efficiency import family_of

DATA = Path(__file__).resolve().parents[3] / "data" / "published"

H100_PEAK_TFLOPS = 989.0
SELENE_NIC_GBPS = 200  # DGX A100: one 200 Gb/s HDR port per GPU
LLAMA3_NIC_GBPS = 400  # Llama 3 paper §3.3.1: 400 Gbps RoCE per GPU
TORCHTITAN_NIC_GBPS = 400  # not stated in torchtitan's docs: assumed (docs/plan.md)


@dataclasses.dataclass(frozen=True)
class Case:
    table: str
    row: str
    chip: str
    gpus: int
    nic_gbps: float
    model: ModelSpec
    software: Software
    batch: int
    measured: float
    metric: str  # "iteration_s", "model_tflops" (per GPU), "hardware_tflops", "tokens_per_gpu"
    strategy: Strategy | None = None
    limits: Constraints | None = None

    def run(self, efficiency: float | None = None) -> Estimate:
        group = resolve_group(self.chip, self.gpus, self.nic_gbps, efficiency=efficiency)
        if self.strategy is not None:
            return estimate(self.model, group, self.software, self.strategy, self.batch)
        return search(
            self.model, group, self.software, self.batch, top_k=1, limits=self.limits
        ).best

    def predicted(self, efficiency: float | None = None) -> float:
        e = self.run(efficiency)
        if self.metric == "iteration_s":
            return e.iteration_s
        if self.metric == "model_tflops":
            return e.mfu * e.peak_flops_per_card / 1e12
        if self.metric == "hardware_tflops":
            return e.hardware_tflops_per_card
        return e.tokens_per_s / e.cards

    def error(self, efficiency: float | None = None) -> float:
        """Predicted / measured throughput − 1."""
        got = self.predicted(efficiency)
        if self.metric == "iteration_s":
            return self.measured / got - 1.0
        return got / self.measured - 1.0


def _rows(name: str) -> list[dict[str, str]]:
    with (DATA / name).open(encoding="utf-8") as handle:
        return list(csv.DictReader(line for line in handle if not line.startswith("#")))


def _gpt(label: str, heads: int, hidden: int, layers: int) -> ModelSpec:
    """Megatron's GPT: GELU MLP of 4h, vocabulary 51200, sequence 2048, tied embeddings."""
    return ModelSpec(name=f"gpt-{label}", layers=layers, hidden=hidden, ffn_hidden=4 * hidden,
                     heads=heads, kv_heads=heads, vocab=51200, seq_len=2048, gated_mlp=False,
                     tied_embeddings=True)  # fmt: skip


def sc21() -> list[Case]:
    cases = []
    for r in _rows("megatron-sc21-table1.csv"):
        gpus, tp, pp = int(r["gpus"]), int(r["tensor_parallel"]), int(r["pipeline_parallel"])
        model = _gpt(r["params_billion"] + "b", int(r["attention_heads"]),
                     int(r["hidden_size"]), int(r["layers"]))  # fmt: skip
        strategy = Strategy(tp=tp, pp=pp, dp=gpus // (tp * pp), recompute=Recompute.FULL)
        cases.append(Case("megatron-sc21", r["params_billion"] + "B", "a100-80g", gpus,
                          SELENE_NIC_GBPS, model, MEGATRON_2021, int(r["global_batch_size"]),
                          float(r["achieved_tflops_per_gpu"]), "hardware_tflops", strategy))  # fmt: skip
    return cases


def korthikanti() -> list[Case]:
    cases = []
    for r in _rows("korthikanti-2022-table5.csv"):
        model = _gpt(r["params_label"].lower(), int(r["attention_heads"]),
                     int(r["hidden_size"]), int(r["layers"]))  # fmt: skip
        sp = r["sequence_parallel"] == "yes"
        sw = MEGATRON_2022 if sp else dataclasses.replace(MEGATRON_2022, sequence_parallel=False)
        strategy = Strategy(
            tp=int(r["tensor_parallel"]),
            pp=int(r["pipeline_parallel"]),
            dp=1,
            micro_batch=int(r["micro_batch_size"]),
            interleave=int(r["interleave"]),
            recompute=Recompute[r["recompute"].upper()],
        )
        cases.append(Case("korthikanti-2022", r["row"], "a100-80g", int(r["gpus"]),
                          SELENE_NIC_GBPS, model, sw, int(r["global_batch_size"]),
                          float(r["iteration_s"]), "iteration_s", strategy))  # fmt: skip
    return cases


def llama3() -> list[Case]:
    cases = []
    base = get_preset("llama3-405b")
    for r in _rows("llama3-2024-table4.csv"):
        model = dataclasses.replace(base, seq_len=int(r["seq_len"]))
        limits = Constraints(tp=int(r["tensor_parallel"]), pp=int(r["pipeline_parallel"]),
                             cp=int(r["context_parallel"]))  # fmt: skip
        cases.append(Case("llama3-2024", r["row"], "h100", int(r["gpus"]), LLAMA3_NIC_GBPS,
                          model, META_LLAMA3, int(r["global_batch_size"]),
                          float(r["tflops_per_gpu"]), "model_tflops", limits=limits))  # fmt: skip
    return cases


def megatron_readme() -> list[Case]:
    cases = []
    base = get_preset("gpt3-175b")
    for r in _rows("megatron-readme-2024-h100.csv"):
        model = dataclasses.replace(base, vocab=int(r["vocab"]), seq_len=int(r["seq_len"]))
        cases.append(Case("megatron-readme-2024", r["row"], "h100", int(r["gpus"]),
                          LLAMA3_NIC_GBPS, model, MEGATRON_CORE, int(r["global_batch_size"]),
                          float(r["mfu"]) * H100_PEAK_TFLOPS, "model_tflops",
                          limits=Constraints()))  # fmt: skip
    return cases


def torchtitan() -> list[Case]:
    cases = []
    for r in _rows("torchtitan-2024-a100.csv"):
        model = ModelSpec(name=r["model"], layers=int(r["layers"]), hidden=int(r["hidden"]),
                          ffn_hidden=int(r["ffn_hidden"]), heads=int(r["heads"]),
                          kv_heads=int(r["kv_heads"]), vocab=int(r["vocab"]),
                          seq_len=int(r["seq_len"]))  # fmt: skip
        gpus, local = int(r["gpus"]), int(r["local_batch"])
        strategy = Strategy(tp=1, pp=1, dp=gpus, micro_batch=local,
                            recompute=Recompute[r["recompute"].upper()])  # fmt: skip
        cases.append(Case("torchtitan-2024", r["row"], "a100-80g", gpus, TORCHTITAN_NIC_GBPS,
                          model, TORCHTITAN_FSDP2, gpus * local,
                          float(r["tokens_per_s_per_gpu"]), "tokens_per_gpu", strategy))  # fmt: skip
    return cases


def mtnlg() -> list[Case]:
    """MT-NLG 530B on 2,240–3,360 A100 at a fixed batch: TP, PP and DP stated, full
    recomputation, DeepSpeed's plain 1F1B pipeline; the micro-batch is searched."""
    cases = []
    model = dataclasses.replace(_gpt("530b", 128, 20480, 105), name="mt-nlg-530b")
    for r in _rows("mtnlg-2022-scaling.csv"):
        limits = Constraints(tp=int(r["tensor_parallel"]), pp=int(r["pipeline_parallel"]),
                             dp=int(r["data_parallel"]), recompute=Recompute.FULL,
                             interleave=1, recompute_layers=None)  # fmt: skip
        cases.append(Case("mtnlg-2022", r["row"], "a100-80g", int(r["gpus"]), SELENE_NIC_GBPS,
                          model, MEGATRON_DEEPSPEED, int(r["global_batch_size"]),
                          float(r["iteration_s"]), "iteration_s", limits=limits))  # fmt: skip
    return cases


def bloom() -> list[Case]:
    """BLOOM 176B on 384 A100 (Megatron-DeepSpeed, 2022): every degree stated."""
    cases = []
    for r in _rows("bloom-2022-176b.csv"):
        model = ModelSpec(name="bloom-176b", layers=int(r["layers"]), hidden=int(r["hidden"]),
                          ffn_hidden=4 * int(r["hidden"]), heads=int(r["heads"]),
                          kv_heads=int(r["heads"]), vocab=int(r["vocab"]),
                          seq_len=int(r["seq_len"]), gated_mlp=False,
                          tied_embeddings=True)  # fmt: skip
        strategy = Strategy(tp=int(r["tensor_parallel"]), pp=int(r["pipeline_parallel"]),
                            dp=int(r["data_parallel"]), micro_batch=int(r["micro_batch"]),
                            recompute=Recompute.FULL, distributed_optimizer=True,
                            last_stage_layers=int(r["last_stage_layers"]))  # fmt: skip
        cases.append(Case("bloom-2022", r["row"], "a100-80g", int(r["gpus"]),
                          float(r["nic_gbps"]), model, MEGATRON_DEEPSPEED,
                          int(r["global_batch_size"]), float(r["iteration_s"]), "iteration_s",
                          strategy))  # fmt: skip
    return cases


TABLES: dict[str, Callable[[], list[Case]]] = {
    "megatron-sc21": sc21,
    "korthikanti-2022": korthikanti,
    "llama3-2024": llama3,
    "megatron-readme-2024": megatron_readme,
    "torchtitan-2024": torchtitan,
}
"""Tables the GEMM efficiencies are fitted over (and checked against)."""

UNFITTED: dict[str, Callable[[], list[Case]]] = {
    "mtnlg-2022": mtnlg,
    "bloom-2022": bloom,
}
"""Tables only predicted, never fitted over: their software is not one the profiles
describe well enough (docs/plan.md says why for each), so letting them into the fit would
move every other row; they check what the model can say about them (scaling shape)."""


def fit_families(cases: list[Case], tolerance: float = 2e-4) -> dict[str, float]:
    """One GEMM efficiency per chip family, each fitted on that family's rows; a family
    without rows takes the mean of the others."""
    by_family: dict[str, list[Case]] = {}
    for c in cases:
        by_family.setdefault(family_of(c.chip) or "ampere", []).append(c)
    fitted = {f: fit_efficiency(rows, tolerance) for f, rows in by_family.items()}
    stand_in = sum(fitted.values()) / len(fitted)
    return {f: fitted.get(f, stand_in) for f in ("ampere", "hopper")}


def family_error(case: Case, efficiencies: dict[str, float]) -> float:
    return case.error(efficiencies[family_of(case.chip) or "ampere"])


def fit_efficiency(cases: list[Case], tolerance: float = 2e-4) -> float:
    """The GEMM efficiency at which the mean log error over ``cases`` is zero (bisection:
    every prediction rises with efficiency)."""

    def mean_log(e: float) -> float:
        return sum(math.log1p(c.error(e)) for c in cases) / len(cases)

    low, high = 0.3, 1.0
    while high - low > tolerance:
        mid = (low + high) / 2
        if mean_log(mid) < 0:
            low = mid
        else:
            high = mid
    return (low + high) / 2
