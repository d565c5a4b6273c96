"""The analytic cost model: how long one training iteration takes under a strategy.

Every term is a closed formula over the model's shape, the chip's figures and the strategy,
evaluated over columns of strategies at once (see :mod:`baige.plan.candidates`). Times are
per micro-batch and per card unless said otherwise; docs/plan.md walks through each formula
and the measurements it is checked against. The structure, in one line::

    iteration = (m − 1)·t_max + (Σ t_stage + (v − 1)·t_max)/v  +  exposed DP traffic  +  optimizer

where a stage's time per micro-batch is its layers' time (matrix multiplies at
``efficiency`` × peak, bandwidth-bound kernels at ``memory_efficiency`` × HBM bandwidth,
exposed TP/CP/EP traffic) plus the LM head on the last stage and pipeline sends.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from baige.plan.candidates import Candidates, FloatArray
from baige.plan.cluster import ChipGroup
from baige.plan.memory import layer_params_per_card
from baige.plan.model import ModelSpec
from baige.plan.software import Software
from baige.plan.strategy import Recompute

__all__ = [
    "OPTIMIZER_BYTES_PER_PARAM",
    "LayerTime",
    "StageTime",
    "collective_latency",
    "collective_time",
    "hardware_flops_per_sequence",
    "layer_time",
    "linear_time",
    "stage_extras",
]

OPTIMIZER_BYTES_PER_PARAM = 30.0
"""Adam step traffic per parameter a card updates: read the FP32 gradient, master weight and
two moments (16), write the last three (12) and the BF16 weight (2)."""

_ELEMENTWISE_PASSES_HIDDEN = 12.0
"""Reads and writes of hidden-sized tensors per layer forward by bandwidth-bound kernels: two
layer norms (2 each), two bias-dropout-residual adds (3.5 each: two inputs, output, mask) and
rotary embedding of Q and K (1)."""

_ELEMENTWISE_PASSES_SCORES = 4.5
"""Passes over the s×s attention scores per head when they are materialised: fused
scale-mask-softmax (read, write) and dropout (read, write, a 1-byte mask)."""

_LOGIT_BYTES = 16.0
"""Bytes moved per logit by the loss, forward and backward: BF16 logits written and read,
FP32 softmax and its gradient."""


def collective_latency(
    n: npt.ArrayLike, inside: npt.ArrayLike, steps: float, sw: Software
) -> FloatArray:
    """Latency of one collective among ``n`` cards, after NCCL's own tuning model
    (src/graph/tuning.cc, Ring/Simple): a base per collective plus a hop per step. Inside a
    node the ring takes ``steps``·(n − 1) NVLink hops; across nodes a tree or hierarchical
    algorithm takes about 2·log2(n) network hops. Zero when ``n`` is 1."""
    n_arr = np.asarray(n, dtype=np.float64)
    ring = steps * (n_arr - 1.0) * sw.scale_up_latency_s
    tree = 2.0 * np.log2(np.maximum(n_arr, 1.0)) * sw.collective_latency_s
    hops = np.where(np.asarray(inside, dtype=bool), ring, tree)
    return np.where(n_arr > 1, sw.collective_base_latency_s + hops, 0.0)


def collective_time(
    n: npt.ArrayLike,
    nbytes: npt.ArrayLike,
    bandwidth: npt.ArrayLike,
    steps: float,
    sw: Software,
    inside: npt.ArrayLike = False,
) -> FloatArray:
    """Time of a ring-style collective among ``n`` cards.

    ``steps`` is the bandwidth multiple: 2 for all-reduce (reduce-scatter + all-gather), 1 for
    all-gather, reduce-scatter or all-to-all; each moves (n − 1)/n of the message per step
    over each card's link. ``inside`` says the cards share a node (NVLink latencies, else the
    network's; :func:`collective_latency`). Zero when ``n`` is 1.
    """
    n_arr = np.asarray(n, dtype=np.float64)
    frac = (n_arr - 1.0) / np.maximum(n_arr, 1.0)
    bw = np.asarray(bandwidth, dtype=np.float64) * sw.comm_efficiency
    time = steps * frac * np.asarray(nbytes, dtype=np.float64) / bw
    latency = collective_latency(n_arr, inside, steps, sw)
    return np.where(n_arr > 1, time + latency, 0.0)


def _inside(group: ChipGroup, span: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """Whether blocks of ``span`` consecutive cards tile whole nodes (stay inside one)."""
    return np.asarray(group.cards_per_node % np.maximum(np.asarray(span), 1) == 0)


def _link(group: ChipGroup, span: npt.ArrayLike) -> FloatArray:
    """Per-card bandwidth of a group of ranks lying within ``span`` consecutive cards: the
    scale-up link if such blocks tile whole nodes (``span`` divides the cards per node), the
    network otherwise."""
    return np.where(_inside(group, span), group.intra_bytes_per_s, group.inter_bytes_per_s)


def linear_time(
    model: ModelSpec, group: ChipGroup, sw: Software, tokens: FloatArray, tp: FloatArray
) -> FloatArray:
    """Forward seconds of a layer's four weight GEMMs (QKV, output projection, FFN in, FFN
    out), each at the slower of its compute time (``efficiency`` × peak) and the time to
    stream its BF16 operands and result through HBM (a roofline): skinny multiplies — few
    tokens per card, or a weight split many ways — become bandwidth-bound."""
    h = model.hidden
    f = model.mean_ffn_width
    mem_rate = group.memory_bytes_per_s * sw.memory_efficiency
    flops_rate = group.flops_per_s * group.efficiency
    shapes = (  # (k, n) of each GEMM, per tensor rank; m = tokens
        (h, (model.q_dim + 2.0 * model.kv_dim) / tp),
        (model.q_dim / tp, h),
        (h, (model.mlp_matrices - 1.0) * f / tp),
        (f / tp, h),
    )
    total = np.zeros_like(np.asarray(tokens, dtype=np.float64))
    for k, n in shapes:
        flops = 2.0 * tokens * k * n
        moved = 2.0 * (tokens * k + k * n + tokens * n)
        total = total + np.maximum(flops / flops_rate, moved / mem_rate)
    return total


@dataclass(frozen=True, slots=True)
class LayerTime:
    """Seconds one transformer layer takes per micro-batch on a card, forward + backward
    (+ recomputation), by kind. Exposed communication only (overlap already removed)."""

    gemm: FloatArray
    elementwise: FloatArray
    recompute: FloatArray
    tp: FloatArray
    cp: FloatArray
    ep: FloatArray

    @property
    def total(self) -> FloatArray:
        return self.gemm + self.elementwise + self.recompute + self.tp + self.cp + self.ep


def layer_time(model: ModelSpec, group: ChipGroup, sw: Software, c: Candidates) -> LayerTime:
    """One (average) layer's time per micro-batch.

    * Matrix multiplies: 2 FLOPs per weight per token (QKV, output projection, FFN over the
      active width), each GEMM at the slower of ``efficiency`` × peak and streaming its
      operands (:func:`linear_time`), plus 4·s·q_dim per token for attention scores (halved
      when flash attention skips the causally masked half, and then at the chip's
      ``attention_efficiency``), all split ``tp`` ways; tokens per card are micro_batch·s/cp.
      Backward costs twice the forward.
    * Bandwidth-bound kernels: 12 passes over hidden-sized tensors (replicated across tensor
      ranks unless sequence parallelism splits them), the FFN activation (2 passes GELU,
      3 SwiGLU), MoE token permutation (4·top_k), and 4.5 passes over the s×s scores when
      they are materialised; 2 bytes per element; backward twice the forward.
    * Recomputation: full repeats the whole forward; selective repeats core attention.
    * Tensor parallelism: per pass, 4 collectives of micro_batch·s/cp·h·2 bytes with an
      all-reduce's volume in total (2 all-reduces, or 2 all-gathers + 2 reduce-scatters with
      sequence parallelism) over the scale-up link; passes = forward, backward, and the
      recomputed forward; with sequence parallelism backward gathers the layer-norm outputs
      again (half a pass more).
    * Context parallelism (ring attention): each card receives cp − 1 chunks of K and V
      forward (one hop latency each), and sends as much dK, dV back (2×) backward; after
      each step it merges the partial attention output into the running one (HBM traffic
      that no overlap hides).
    * Expert parallelism: dispatch and combine all-to-alls of top_k copies of each token's
      hidden state, forward and backward (and again when recomputing), on MoE layers only.
    """
    tp = c.tp.astype(np.float64)
    cp = c.cp.astype(np.float64)
    full = c.recompute_fraction  # share of layers recomputed in full (0 … 1)
    selective = c.rc == int(Recompute.SELECTIVE)
    h = model.hidden
    s = model.seq_len
    tokens = c.mb * (s / cp)
    mem_rate = group.memory_bytes_per_s * sw.memory_efficiency
    width = model.mean_ffn_width

    causal = 0.5 if sw.flash_attention else 1.0
    attention = 4.0 * tokens * s * model.q_dim / tp * causal
    # flash attention runs at its own (lower) fraction of peak; unfused score GEMMs are GEMMs
    attention_rate = group.flops_per_s * (
        group.attention_efficiency if sw.flash_attention else group.efficiency
    )
    rep_div = tp if sw.sequence_parallel else 1.0
    moe_share = model.moe_layers / model.layers
    scores = 0.0 if sw.flash_attention else _ELEMENTWISE_PASSES_SCORES * model.heads * s
    elements = (
        _ELEMENTWISE_PASSES_HIDDEN * tokens * h / rep_div
        + model.mlp_matrices * tokens * width / tp
        + moe_share * 4.0 * model.top_k * tokens * h / tp
        + tokens * scores / tp
    )
    fwd_gemm = linear_time(model, group, sw, tokens, tp) + attention / attention_rate
    fwd_elementwise = 2.0 * elements / mem_rate
    core_attention = attention / attention_rate + 2.0 * tokens * scores / tp / mem_rate
    recompute = np.where(
        c.rc == int(Recompute.FULL),
        full * (fwd_gemm + fwd_elementwise),
        np.where(selective, core_attention, 0.0),
    )

    intra = group.intra_bytes_per_s
    # the bandwidth of one all-reduce's volume; the latency of the pass's real collectives:
    # 2 all-reduces, or with sequence parallelism 2 all-gathers and 2 reduce-scatters
    tp_volume = collective_time(c.tp, tokens * h * 2.0, intra, 2.0, sw, inside=True)
    tp_volume = tp_volume - collective_latency(c.tp, True, 2.0, sw)
    tp_latency = (
        4.0 * collective_latency(c.tp, True, 1.0, sw)
        if sw.sequence_parallel
        else 2.0 * collective_latency(c.tp, True, 2.0, sw)
    )
    tp_pass = tp_volume + tp_latency
    # sequence parallelism keeps only each rank's slice of the layer-norm output, so backward
    # all-gathers it again for the weight gradients: half a pass more traffic
    sp_regather = 0.5 if sw.sequence_parallel else 0.0
    tp_time = tp_pass * (2.0 + full + sp_regather) * (1.0 - sw.tp_overlap)

    kv_chunk = 2.0 * tokens * model.kv_dim * 2.0 / tp
    cp_span = c.tp * c.cp
    cp_hop = np.where(_inside(group, cp_span), sw.scale_up_latency_s, sw.collective_latency_s)
    # each of the cp − 1 ring steps is a send/receive of one chunk, with its hop latency
    cp_step = kv_chunk / (_link(group, cp_span) * sw.comm_efficiency) + cp_hop
    cp_pass = (cp - 1.0) * cp_step
    # and merges its partial attention output into the running one (rescale by the new
    # log-sum-exp: read both, write one, 2 bytes per element), which no overlap hides
    cp_merge = (cp - 1.0) * 3.0 * tokens * model.q_dim / tp * 2.0 / mem_rate
    cp_time = np.where(c.cp > 1, (cp_pass * (1.0 - sw.cp_overlap) + cp_merge) * (3.0 + full), 0.0)

    a2a_bytes = tokens / rep_div * model.top_k * h * 2.0
    ep_span = c.tp * c.cp * c.ep
    ep_link = _link(group, ep_span)
    ep_pair = 2.0 * collective_time(
        c.ep, a2a_bytes, ep_link, 1.0, sw, inside=_inside(group, ep_span)
    )
    ep_time = ep_pair * (2.0 + full) * moe_share * (1.0 - sw.ep_overlap)

    return LayerTime(
        gemm=3.0 * fwd_gemm,
        elementwise=3.0 * fwd_elementwise,
        recompute=recompute,
        tp=tp_time,
        cp=cp_time,
        ep=ep_time,
    )


@dataclass(frozen=True, slots=True)
class StageTime:
    """Per-micro-batch extras of a stage: the LM head (last stage only) and pipeline sends."""

    head: FloatArray
    p2p: FloatArray


def stage_extras(
    model: ModelSpec,
    group: ChipGroup,
    sw: Software,
    c: Candidates,
    p2p_bandwidth: npt.ArrayLike | None = None,
) -> StageTime:
    """The LM head and the pipeline send/receive, per micro-batch.

    * LM head: 2·h·vocab FLOPs per token forward, split ``tp`` ways (vocabulary-parallel),
      three passes (never recomputed), plus 16 bytes per logit for the loss.
    * Pipeline: each micro-batch's activations (tokens·h·2 bytes, split ``tp`` ways by
      Megatron's scatter/gather where the software has it) go to the next stage forward and
      their gradient comes back
      backward: two transfers per micro-batch per stage, ``v`` times with interleaving.
      Adjacent stages share a node only if a whole stage (tp·cp·dp cards) fits in one.
    """
    tp = c.tp.astype(np.float64)
    tokens = c.mb * (model.seq_len / c.cp)
    flops_rate = group.flops_per_s * group.efficiency
    mem_rate = group.memory_bytes_per_s * sw.memory_efficiency
    logits = tokens * model.vocab / tp
    head = 3.0 * 2.0 * logits * model.hidden / flops_rate + _LOGIT_BYTES * logits / mem_rate
    message = tokens * model.hidden * 2.0 / (tp if sw.pipeline_scatter_gather else 1.0)
    stage_span = c.tp * c.cp * c.dp
    bw = _link(group, stage_span) if p2p_bandwidth is None else p2p_bandwidth
    inside = _inside(group, stage_span) if p2p_bandwidth is None else False
    hop = np.where(inside, sw.scale_up_latency_s, sw.collective_latency_s)
    transfer = message / (np.asarray(bw, dtype=np.float64) * sw.comm_efficiency)
    transfer = transfer + hop
    p2p = np.where(c.pp > 1, 2.0 * transfer * c.v, 0.0) * (1.0 - sw.pp_overlap)
    return StageTime(head=head, p2p=p2p)


def dp_time(
    model: ModelSpec, group: ChipGroup, sw: Software, c: Candidates
) -> tuple[FloatArray, FloatArray]:
    """(gradient-sync seconds, optimizer-step seconds) per iteration, for the fullest stage.

    Gradients of the parameters a card holds are all-reduced among the dp·cp cards holding
    the same ones (expert weights among dp·cp/ep); with the distributed optimizer that becomes
    a reduce-scatter of gradients plus an all-gather of BF16 weights. The DP group is spread
    tp·cp cards apart, so it stays in a node only if tp·cp·dp cards fit in one. The optimizer
    step streams 30 bytes per parameter the card updates (all of them, or its 1/(dp·cp) shard).
    """
    tp = c.tp.astype(np.float64)
    dense, experts = layer_params_per_card(model, c)
    emb = model.embedding_params / tp
    out = model.output_params / tp
    staged = np.maximum(c.first * dense + emb, c.last * dense + out)
    dense_total = np.where(c.pp == 1, c.last * dense + emb + out, staged)
    expert_total = np.maximum(c.first, c.last) * experts
    n = c.dp * c.cp
    n_expert = np.maximum(n // c.ep, 1)
    dp_span = c.tp * c.cp * c.dp
    link = _link(group, dp_span)
    near = _inside(group, dp_span)
    grad = float(sw.grad_reduce_bytes)
    dist = c.dist_opt > 0

    def sync(count: npt.NDArray[np.int64], params: FloatArray) -> FloatArray:
        all_reduce = collective_time(count, params * grad, link, 2.0, sw, near)
        sharded = collective_time(count, params * grad, link, 1.0, sw, near) + collective_time(
            count, params * 2.0, link, 1.0, sw, near
        )
        return np.where(dist, sharded, all_reduce)

    if sw.fsdp:
        # ZeRO-3: every micro-batch all-gathers the BF16 weights forward and again backward
        # and reduce-scatters the gradients (PyTorch FSDP2 without gradient-sync skipping)
        def gathered(count: npt.NDArray[np.int64], params: FloatArray) -> FloatArray:
            gathers = 2.0 * collective_time(count, params * 2.0, link, 1.0, sw, near)
            return c.m * (gathers + collective_time(count, params * grad, link, 1.0, sw, near))

        sync_time = gathered(n, dense_total) + gathered(n_expert, expert_total)
        dist = np.ones_like(dist)
    else:
        sync_time = sync(n, dense_total) + sync(n_expert, expert_total)
    owned = np.where(dist, dense_total / n + expert_total / n_expert, dense_total + expert_total)
    optimizer = (
        owned * OPTIMIZER_BYTES_PER_PARAM / (group.memory_bytes_per_s * sw.memory_efficiency)
    )
    return sync_time, optimizer


def hardware_flops_per_sequence(
    model: ModelSpec, rc: npt.ArrayLike, full_share: npt.ArrayLike = 1.0
) -> FloatArray:
    """FLOPs actually executed per sequence: the model's, plus recomputation (full: one more
    forward of the ``full_share`` of layers it covers; selective: core attention again).
    Counted as Megatron counts them, so that full recomputation on GPT reproduces the paper's
    96·B·s·l·h²·(1 + s/6h + V/16lh)."""
    s = model.seq_len
    layer_linear = 2.0 * s * (model.attention_params + model.mlp_matrices * model.hidden
                              * model.mean_ffn_width)  # fmt: skip
    attention = 4.0 * s * s * model.q_dim
    rc_arr = np.asarray(rc)
    extra = np.where(
        rc_arr == int(Recompute.FULL),
        np.asarray(full_share) * model.layers * (layer_linear + attention),
        np.where(rc_arr == int(Recompute.SELECTIVE), model.layers * attention, 0.0),
    )
    return model.model_flops_per_sequence() + extra
