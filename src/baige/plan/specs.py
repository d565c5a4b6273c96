"""The documents ``baige plan`` reads: a ``Model``, a ``Cluster`` and (optionally) a
``Software`` profile, as users write them.

Like every spec in Baige they reject unknown fields (a typo such as ``nic_gbs`` must not
silently fall back to a default) and are immutable once read. They turn into the planner's
frozen dataclasses through :meth:`ModelFile.to_model` and :meth:`ClusterFile.to_cluster`.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from pydantic import Field, field_validator, model_validator

from baige.api.common import AcceleratorType, SpecModel
from baige.plan.cluster import ChipGroup, Cluster, resolve_group
from baige.plan.model import ModelSpec
from baige.plan.software import Software, get_software

__all__ = ["ClusterFile", "GroupFile", "MoEFile", "ModelFile", "SoftwareFile"]


class MoEFile(SpecModel):
    """Mixture-of-experts settings; absent for a dense model."""

    experts: int = Field(ge=2)
    top_k: int = Field(ge=1)
    expert_ffn_hidden: int = Field(ge=1)
    shared_experts: int = Field(default=0, ge=0)
    dense_layers: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _top_k_within_experts(self) -> MoEFile:
        if self.top_k > self.experts:
            raise ValueError(f"top_k ({self.top_k}) exceeds experts ({self.experts})")
        return self


class ModelFile(SpecModel):
    """A decoder-only transformer (see :class:`baige.plan.model.ModelSpec` for the fields)."""

    kind: Literal["Model"]
    name: str = Field(min_length=1)
    layers: int = Field(ge=1)
    hidden: int = Field(ge=1)
    ffn_hidden: int = Field(ge=1)
    heads: int = Field(ge=1)
    kv_heads: int | None = Field(default=None, ge=1)
    head_dim: int | None = Field(default=None, ge=1)
    vocab: int = Field(ge=1)
    seq_len: int = Field(ge=1)
    gated_mlp: bool = True
    tied_embeddings: bool = False
    moe: MoEFile | None = None

    @model_validator(mode="after")
    def _shape(self) -> ModelFile:
        if self.head_dim is None and self.hidden % self.heads:
            raise ValueError(
                f"hidden ({self.hidden}) is not divisible by heads ({self.heads}); "
                "give head_dim explicitly"
            )
        kv = self.heads if self.kv_heads is None else self.kv_heads
        if self.heads % kv:
            raise ValueError(f"heads ({self.heads}) must be a multiple of kv_heads ({kv})")
        if self.moe is not None and self.moe.dense_layers >= self.layers:
            raise ValueError("moe.dense_layers must leave at least one MoE layer")
        return self

    def to_model(self) -> ModelSpec:
        moe = self.moe
        return ModelSpec(
            name=self.name,
            layers=self.layers,
            hidden=self.hidden,
            ffn_hidden=self.ffn_hidden,
            heads=self.heads,
            kv_heads=self.heads if self.kv_heads is None else self.kv_heads,
            head_dim=0 if self.head_dim is None else self.head_dim,
            vocab=self.vocab,
            seq_len=self.seq_len,
            gated_mlp=self.gated_mlp,
            tied_embeddings=self.tied_embeddings,
            experts=0 if moe is None else moe.experts,
            top_k=0 if moe is None else moe.top_k,
            expert_ffn_hidden=0 if moe is None else moe.expert_ffn_hidden,
            shared_experts=0 if moe is None else moe.shared_experts,
            dense_layers=0 if moe is None else moe.dense_layers,
        )


class GroupFile(SpecModel):
    """``count`` cards of one type. Figures left out come from the accelerator catalog;
    ``nic_gbps`` (network per card, Gb/s, as NICs are sold) has no catalog figure."""

    chip: AcceleratorType
    count: int = Field(ge=1, le=1_000_000)
    cards_per_node: int = Field(default=8, ge=1, le=64)
    nic_gbps: float = Field(gt=0)
    peak_tflops: float | None = Field(default=None, gt=0)
    efficiency: float | None = Field(default=None, gt=0, le=1)
    memory_gb: float | None = Field(default=None, gt=0)
    memory_bandwidth_tbs: float | None = Field(default=None, gt=0)
    scale_up_gbs: float | None = Field(default=None, gt=0)

    def to_group(self) -> ChipGroup:
        """Raises :class:`baige.plan.cluster.MissingFigureError` naming the field to set."""
        return resolve_group(
            self.chip,
            self.count,
            self.nic_gbps,
            self.cards_per_node,
            peak_tflops=self.peak_tflops,
            efficiency=self.efficiency,
            memory_gb=self.memory_gb,
            memory_bandwidth_tbs=self.memory_bandwidth_tbs,
            scale_up_gbs=self.scale_up_gbs,
        )


class ClusterFile(SpecModel):
    """Groups of cards; two or more groups make a mixed cluster."""

    kind: Literal["Cluster"]
    name: str = Field(min_length=1)
    groups: tuple[GroupFile, ...] = Field(min_length=1)
    between_groups_gbps: float | None = Field(default=None, gt=0)

    @field_validator("groups")
    @classmethod
    def _one_group_per_chip(cls, groups: tuple[GroupFile, ...]) -> tuple[GroupFile, ...]:
        chips = [g.chip for g in groups]
        twice = sorted({c for c in chips if chips.count(c) > 1})
        if twice:
            raise ValueError(f"{', '.join(twice)} appears in two groups; merge them into one")
        return groups

    def to_cluster(self, groups: tuple[ChipGroup, ...]) -> Cluster:
        return Cluster(self.name, groups, self.between_groups_gbps)


class SoftwareFile(SpecModel):
    """A custom software profile (see :class:`baige.plan.software.Software` for the fields):
    start from ``base`` (a named profile) and change what your framework does differently."""

    kind: Literal["Software"]
    name: str = Field(min_length=1)
    base: str = "megatron-core"
    source: str | None = None
    flash_attention: bool | None = None
    sequence_parallel: bool | None = None
    distributed_optimizer: bool | None = None
    context_parallel: bool | None = None
    fsdp: bool | None = None
    grad_reduce_bytes: int | None = Field(default=None, ge=1, le=4)
    pipeline_scatter_gather: bool | None = None
    dp_overlap: float | None = Field(default=None, ge=0, le=1)
    tp_overlap: float | None = Field(default=None, ge=0, le=1)
    cp_overlap: float | None = Field(default=None, ge=0, le=1)
    ep_overlap: float | None = Field(default=None, ge=0, le=1)
    pp_overlap: float | None = Field(default=None, ge=0, le=1)
    memory_efficiency: float | None = Field(default=None, gt=0, le=1)
    comm_efficiency: float | None = Field(default=None, gt=0, le=1)
    collective_latency_s: float | None = Field(default=None, ge=0)
    scale_up_latency_s: float | None = Field(default=None, ge=0)
    collective_base_latency_s: float | None = Field(default=None, ge=0)
    usable_memory_fraction: float | None = Field(default=None, gt=0, le=1)
    memory_reserve_gb: float | None = Field(default=None, ge=0)

    @field_validator("base")
    @classmethod
    def _known_base(cls, base: str) -> str:
        try:
            get_software(base)
        except LookupError as err:  # a field error naming the known profiles
            raise ValueError(str(err)) from None
        return base

    def to_software(self) -> Software:
        changes = {
            key: value
            for key, value in self.model_dump(exclude={"kind", "base"}).items()
            if value is not None
        }
        return dataclasses.replace(get_software(self.base), **changes)
