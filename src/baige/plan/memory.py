"""Memory per card: weights, gradients, optimizer states and activations, for many strategies.

The search prunes by memory before it spends any time estimating speed, because most of the
space (small TP and PP for a large model) does not fit at all. Formulas follow Megatron's
mixed-precision layout and Korthikanti et al., "Reducing Activation Recomputation in Large
Transformer Models" (MLSys 2023), generalised to grouped-query attention, SwiGLU and experts.
All sizes are bytes; every function takes columns of a :class:`Candidates` and returns
columns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from baige.plan.candidates import Candidates, FloatArray, IntArray
from baige.plan.cluster import ChipGroup
from baige.plan.model import ModelSpec
from baige.plan.software import Software
from baige.plan.strategy import Recompute

__all__ = [
    "BYTES_PER_PARAM_REPLICATED",
    "FSDP_BYTES_PER_PARAM",
    "MemoryBreakdown",
    "activation_bytes_per_layer",
    "inflight_microbatches",
    "layer_params_per_card",
    "state_bytes_per_param",
    "usable_bytes",
]

FSDP_BYTES_PER_PARAM = 16.0
"""FP32 weights (4), FP32 gradients (4) and Adam's two moments (8), all sharded by FSDP."""

BYTES_PER_PARAM_REPLICATED = 18.0
"""BF16 weights (2) + FP32 gradient buffer (4) + FP32 master weights and Adam's two moments
(12): Megatron's mixed-precision layout without a distributed optimizer."""


def state_bytes_per_param(dist_opt: IntArray, shards: npt.ArrayLike) -> FloatArray:
    """Bytes of weights + gradients + optimizer state per parameter held on a card.

    The distributed optimizer (ZeRO-1) shards the 12 bytes of FP32 master weights and Adam
    moments over the ``shards`` data-parallel ranks that hold the same parameter; weights and
    gradient buffers stay whole: 6 + 12/shards.
    """
    sharded = 6.0 + 12.0 / np.maximum(np.asarray(shards, dtype=np.float64), 1.0)
    return np.where(dist_opt > 0, sharded, BYTES_PER_PARAM_REPLICATED)


def layer_params_per_card(model: ModelSpec, c: Candidates) -> tuple[FloatArray, FloatArray]:
    """(dense, expert) parameters of one transformer layer held on a card.

    Tensor parallelism splits attention and FFN matrices ``tp`` ways; routed experts are also
    spread over ``ep`` ranks. For an MoE model every layer is sized as an MoE layer (the few
    dense leading layers are smaller), which errs towards using more memory.
    """
    tp = c.tp.astype(np.float64)
    if not model.is_moe:
        return model.dense_layer_params / tp, np.zeros_like(tp)
    shared = model.attention_params + model.shared_experts * model.expert_params
    dense = (shared + model.hidden * model.experts) / tp
    experts = model.experts * model.expert_params / (tp * c.ep)
    return dense, experts


def activation_bytes_per_layer(
    model: ModelSpec, sw: Software, c: Candidates, recompute: IntArray | None = None
) -> FloatArray:
    """Activations one layer keeps for backward, per micro-batch, on one card.

    Per token (Korthikanti's 34·h + 5·a·s, generalised): 10·h replicated across tensor ranks
    unless sequence parallelism splits it (layer-norm inputs 4h, QKV and FFN inputs 4h, dropout
    masks 2h); 4·q_dim + 4·kv_dim for Q, K, V and the output projection's input; 4·f (GELU) or
    6·f (SwiGLU) for the FFN, per expert a token visits; and 5·heads·s for the softmax output,
    its dropout mask and result, which flash attention never materialises and selective
    recomputation drops. Full recomputation keeps only the layer input (2·h) of the layers it
    covers; when it covers only some of a stage's layers (``c.rl``), the result is the
    per-layer average over the stage.
    """
    rc = c.rc if recompute is None else recompute
    tp = c.tp.astype(np.float64)
    tokens = c.mb * (model.seq_len / c.cp)
    h = model.hidden
    mlp_per_width = 6.0 if model.gated_mlp else 4.0
    if model.is_moe:
        visits = model.top_k + model.shared_experts
        mlp = visits * (2.0 * h + mlp_per_width * model.expert_ffn_hidden)
    else:
        mlp = mlp_per_width * model.ffn_hidden
    split = 4.0 * model.q_dim + 4.0 * model.kv_dim + mlp
    scores = 0.0 if sw.flash_attention else 5.0 * model.heads * model.seq_len
    replicated = 10.0 * h
    rep_div = tp if sw.sequence_parallel else 1.0
    kept_scores = np.where(rc == int(Recompute.SELECTIVE), 0.0, scores)
    full_layer = tokens * (replicated / rep_div + (split + kept_scores) / tp)
    layer_input = tokens * 2.0 * h / rep_div
    share = (
        c.recompute_fraction if recompute is None else np.where(rc == int(Recompute.FULL), 1.0, 0.0)
    )
    mixed = share * layer_input + (1.0 - share) * full_layer
    return np.where(rc == int(Recompute.FULL), mixed, full_layer)


def inflight_microbatches(c: Candidates) -> FloatArray:
    """Micro-batches whose activations the first pipeline stage holds at its peak.

    1F1B: the first stage has ``pp`` forward passes in flight before its first backward
    (fewer if the batch has fewer micro-batches). Interleaving with ``v`` chunks adds
    (pp − 1)/(pp·v) of that (Narayanan et al. 2021, §2.2.2).
    """
    base = np.minimum(c.pp, c.m).astype(np.float64)
    extra = np.where(c.v > 1, (c.pp - 1) / (c.pp * c.v), 0.0)
    return base * (1.0 + extra)


def usable_bytes(group: ChipGroup, sw: Software) -> float:
    """What a card leaves for training: allocator fragmentation and a fixed reserve for the
    runtime context and communication buffers come off the top."""
    return group.memory_bytes * sw.usable_memory_fraction - sw.memory_reserve_gb * 1e9


@dataclass(frozen=True, slots=True)
class MemoryBreakdown:
    """Peak bytes per card on the fullest stage, by kind, for many strategies."""

    states: FloatArray
    activations: FloatArray

    @property
    def total(self) -> FloatArray:
        return self.states + self.activations

    @staticmethod
    def of(model: ModelSpec, sw: Software, c: Candidates) -> MemoryBreakdown:
        """The worse of the first stage (most micro-batches in flight, the embedding) and the
        last (the LM head and its logits, one micro-batch in flight)."""
        tp = c.tp.astype(np.float64)
        dense, experts = layer_params_per_card(model, c)
        dp_shards = c.dp * c.cp
        expert_shards = np.maximum(dp_shards // c.ep, 1)
        if sw.fsdp:
            # FP32 weights, FP32 gradients and Adam's moments all sharded: 16 bytes / shards;
            # one layer's BF16 weights gathered (two with prefetch) and its FP32 gradients
            dense_b = FSDP_BYTES_PER_PARAM / dp_shards
            expert_b = FSDP_BYTES_PER_PARAM / expert_shards
            gathered = (dense + experts) * (2.0 * 2.0 + 4.0)
        else:
            dense_b = state_bytes_per_param(c.dist_opt, dp_shards)
            expert_b = state_bytes_per_param(c.dist_opt, expert_shards)
            gathered = np.zeros_like(dense)
        per_layer_states = dense * dense_b + experts * expert_b
        emb = model.embedding_params / tp * dense_b
        out = model.output_params / tp * dense_b
        single = c.pp == 1
        first_states = c.first * per_layer_states + emb + np.where(single, out, 0.0) + gathered
        last_states = c.last * per_layer_states + np.where(single, emb, 0.0) + out + gathered

        act = activation_bytes_per_layer(model, sw, c)
        tokens = c.mb * (model.seq_len / c.cp)
        working = np.where(
            c.rc == int(Recompute.FULL),
            activation_bytes_per_layer(model, sw, c, np.zeros_like(c.rc)),
            0.0,
        )
        logits = tokens * model.vocab / tp * 6.0  # BF16 logits + FP32 softmax for the loss
        first_act = c.first * act * inflight_microbatches(c) + working
        first_act = first_act + np.where(single, logits, 0.0)
        last_act = c.last * act + working + logits
        first_total = first_states + first_act
        last_total = last_states + last_act
        use_first = first_total >= last_total
        return MemoryBreakdown(
            states=np.where(use_first, first_states, last_states),
            activations=np.where(use_first, first_act, last_act),
        )
