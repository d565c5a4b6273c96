"""Mixed chips, pipeline-wise: each pipeline runs through stages on different chip types.

Every data-parallel replica is the same pipeline: ``s_g = count_g / (tp·R)`` consecutive
stages on each chip group g (R replicas), in an order the search chooses. Fast chips get more
layers, slow or small-memory chips fewer, so that the slowest stage is as fast as possible
(:func:`baige.plan.split.balanced_split`). Only pipeline sends cross from one chip type to
another — one boundary per type change — so no collective ever spans two vendors' fabrics;
gradients are reduced among the R copies of each stage, on that stage's own chips. This is
the scheme of HexiScale/FlashFlex-style planners, restricted to one tensor degree for all
stages, no context or expert parallelism and no interleaving, which keeps the space small.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from baige.plan.candidates import Candidates, FloatArray
from baige.plan.cluster import ChipGroup, Cluster
from baige.plan.cost import collective_time, layer_time, stage_extras
from baige.plan.estimate import pipeline_time
from baige.plan.memory import (
    activation_bytes_per_layer,
    layer_params_per_card,
    state_bytes_per_param,
    usable_bytes,
)
from baige.plan.model import ModelSpec
from baige.plan.search import MAX_MICRO_BATCH, divisors
from baige.plan.software import Software
from baige.plan.split import balanced_split
from baige.plan.strategy import Recompute

__all__ = ["PipelinePlan", "StagePlan", "search_pipelines"]


@dataclass(frozen=True, slots=True)
class StagePlan:
    """One run of consecutive stages on one chip type, as reported to users."""

    chip: str
    stages: int
    layers: tuple[int, ...]
    memory_gb: float
    usable_gb: float
    seconds_per_micro_batch: float


@dataclass(frozen=True, slots=True)
class PipelinePlan:
    """A mixed pipeline: ``replicas`` copies of ``stages`` on chip types in order."""

    tp: int
    replicas: int
    micro_batch: int
    micro_batches: int
    recompute: Recompute
    distributed_optimizer: bool
    stages: tuple[StagePlan, ...]
    iteration_s: float
    bubble_s: float
    dp_s: float

    def describe(self) -> str:
        runs = " → ".join(f"{s.chip}×{s.stages}" for s in self.stages)
        opt = " dist-opt" if self.distributed_optimizer else ""
        return (
            f"pipeline {runs}; TP{self.tp}, {self.replicas} replicas, mb{self.micro_batch} "
            f"rc={self.recompute.label}{opt}"
        )


@dataclass(frozen=True, slots=True)
class _TypeColumns:
    """Per-candidate figures for stages on one chip group: seconds per layer, LM-head
    seconds, parameters and state bytes per layer, activation bytes per layer per
    micro-batch, and one layer's working activations under full recomputation."""

    tau: FloatArray
    head: FloatArray
    params: FloatArray
    states: FloatArray
    act: FloatArray
    working: FloatArray

    @staticmethod
    def of(model: ModelSpec, group: ChipGroup, sw: Software, cols: Candidates) -> _TypeColumns:
        dense, experts = layer_params_per_card(model, cols)
        params = dense + experts
        full_activations = activation_bytes_per_layer(model, sw, cols, np.zeros_like(cols.rc))
        return _TypeColumns(
            tau=layer_time(model, group, sw, cols).total,
            head=stage_extras(model, group, sw, cols).head,
            params=params,
            states=params * state_bytes_per_param(cols.dist_opt, cols.dp),
            act=activation_bytes_per_layer(model, sw, cols),
            working=np.where(cols.rc == int(Recompute.FULL), full_activations, 0.0),
        )


def search_pipelines(
    model: ModelSpec, cluster: Cluster, sw: Software, global_batch: int, top_k: int = 3
) -> list[PipelinePlan]:
    """The ``top_k`` fastest mixed pipelines that fit (empty when none does)."""
    plans: list[PipelinePlan] = []
    groups = cluster.groups
    per_node = min(g.cards_per_node for g in groups)
    for tp in divisors(per_node):
        if model.heads % tp or model.kv_heads % tp or any(g.count % tp for g in groups):
            continue
        common = np.gcd.reduce([g.count // tp for g in groups])
        for replicas in divisors(int(common)):
            counts = [g.count // (tp * replicas) for g in groups]
            if global_batch % replicas or not len(groups) <= sum(counts) <= model.layers:
                continue
            for order in itertools.permutations(range(len(groups))):
                plans += _evaluate_order(
                    model, cluster, sw, global_batch, tp, replicas, order, counts, top_k
                )
    plans.sort(key=lambda p: p.iteration_s)
    return plans[:top_k]


def _evaluate_order(
    model: ModelSpec,
    cluster: Cluster,
    sw: Software,
    global_batch: int,
    tp: int,
    replicas: int,
    order: tuple[int, ...],
    counts: list[int],
    top_k: int,
) -> list[PipelinePlan]:
    groups = cluster.groups
    kinds = np.concatenate([np.full(counts[g], g) for g in order])
    stages = len(kinds)
    per_rank = global_batch // replicas
    mbs = divisors(per_rank, MAX_MICRO_BATCH)
    opts = [0, 1] if sw.distributed_optimizer and replicas > 1 else [0]
    combos = np.array(list(itertools.product(mbs, [int(r) for r in Recompute], opts)))
    mb, rc, opt = combos[:, 0], combos[:, 1], combos[:, 2]
    m = per_rank // mb
    cols = Candidates.build(
        tp=tp, pp=stages, dp=replicas, cp=1, ep=1, mb=mb, m=m, v=1, rc=rc, dist_opt=opt,
        first=1, last=1,
    )  # fmt: skip
    per_type = [_TypeColumns.of(model, g, sw, cols) for g in groups]

    def gather(name: str) -> FloatArray:
        table = np.stack([getattr(t, name) for t in per_type], axis=1)  # rows × groups
        return np.asarray(table[:, kinds], dtype=np.float64)  # rows × stages

    tau, head, params, states, act, working = (
        gather(n) for n in ("tau", "head", "params", "states", "act", "working")
    )
    position = np.arange(stages)
    inflight = np.minimum(stages - position[None, :], m[:, None]).astype(np.float64)
    emb_states = model.embedding_params / tp * state_bytes_per_param(opt, replicas)
    out_states = model.output_params / tp * state_bytes_per_param(opt, replicas)
    logits = mb * (model.seq_len * model.vocab / tp * 6.0)
    fixed = working.copy()
    fixed[:, 0] += emb_states
    fixed[:, -1] += out_states + logits
    usable = np.array([usable_bytes(g, sw) for g in groups])[kinds]
    cap = np.floor((usable[None, :] - fixed) / (states + inflight * act)).astype(np.int64)

    message = mb * (model.seq_len * model.hidden * 2.0 / tp)
    link = np.array(
        [
            cluster.between_bytes_per_s(groups[int(a)], groups[int(b)])
            for a, b in itertools.pairwise(kinds)
        ]
    )
    hop = message[:, None] / (link[None, :] * sw.comm_efficiency) + sw.collective_latency_s
    hops = np.zeros((len(combos), stages + 1))
    hops[:, 1:-1] = hop
    p2p = 2.0 * np.maximum(hops[:, :-1], hops[:, 1:]) * (1.0 - sw.pp_overlap)
    extra = p2p.copy()
    extra[:, -1] += head[:, -1]

    split = balanced_split(tau, extra, cap, model.layers)
    times = split.layers * tau + extra
    t_max = np.where(split.feasible, split.t_max, 0.0)  # infeasible rows are dropped below
    pipe = pipeline_time(m.astype(np.float64), t_max, times.sum(axis=1), np.ones(len(combos)))

    stage_params = split.layers * params
    stage_params[:, 0] += model.embedding_params / tp
    stage_params[:, -1] += model.output_params / tp
    dp_times = []
    for g_index, g in enumerate(groups):
        link_g = g.inter_bytes_per_s if tp * replicas > g.cards_per_node else g.intra_bytes_per_s
        params = np.where(kinds[None, :] == g_index, stage_params, 0.0).max(axis=1)
        grad = float(sw.grad_reduce_bytes)
        full = collective_time(replicas, params * grad, link_g, 2.0, sw)
        sharded = collective_time(replicas, params * grad, link_g, 1.0, sw) + collective_time(
            replicas, params * 2.0, link_g, 1.0, sw
        )
        sync = np.where(opt > 0, sharded, full)
        owned = np.where(opt > 0, params / replicas, params)
        optimizer = owned * 30.0 / (g.memory_bytes_per_s * sw.memory_efficiency)
        dp_times.append(sync - np.minimum(sw.dp_overlap * sync, t_max) + optimizer)
    dp = np.max(np.stack(dp_times, axis=1), axis=1)
    total = pipe + dp

    plans = []
    feasible = np.flatnonzero(split.feasible)
    for row in feasible[np.argsort(total[feasible], kind="stable")][:top_k]:
        memory = fixed[row] + split.layers[row] * (states[row] + inflight[row] * act[row])
        runs = []
        start = 0
        for g_index in order:
            end = start + counts[g_index]
            runs.append(
                StagePlan(
                    chip=groups[g_index].chip,
                    stages=counts[g_index],
                    layers=tuple(int(x) for x in split.layers[row, start:end]),
                    memory_gb=float(memory[start:end].max()) / 1e9,
                    usable_gb=float(usable[start]) / 1e9,
                    seconds_per_micro_batch=float(times[row, start:end].max()),
                )
            )
            start = end
        plans.append(
            PipelinePlan(
                tp=tp,
                replicas=replicas,
                micro_batch=int(mb[row]),
                micro_batches=int(m[row]),
                recompute=Recompute(int(rc[row])),
                distributed_optimizer=bool(opt[row]),
                stages=tuple(runs),
                iteration_s=float(total[row]),
                bubble_s=float(pipe[row] - m[row] * t_max[row]),
                dp_s=float(dp[row]),
            )
        )
    return plans
