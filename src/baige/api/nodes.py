"""Nodes and pools: the machines accelerators live in, and how they are grouped.

A node holds accelerators of one type (as every production node does); its topology path
(outermost domain first, e.g. ``zone-a/block-2/rack-07``) is what lets the scheduler keep a
gang's collective traffic inside one NVLink/rack/block domain.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import Field, field_validator, model_validator

from baige.api.common import AcceleratorType, Labels, Name, SpecModel, Text
from baige.api.quantities import CpuMilli, MemoryMiB

__all__ = ["AcceleratorGroup", "Health", "NodeSpec", "NodeStatus", "PoolSpec"]

MAX_DEVICES_PER_NODE = 64


class Health(StrEnum):
    """What the scheduler may do with a node: place work, leave it be, or avoid it."""

    READY = "ready"
    CORDONED = "cordoned"  # an operator took it out of scheduling; running work stays
    FAILED = "failed"  # stopped heartbeating or reported a fault; its work is rescheduled


class AcceleratorGroup(SpecModel):
    """The accelerators in one node: their catalog type and how many."""

    type: AcceleratorType
    count: int = Field(ge=1, le=MAX_DEVICES_PER_NODE)


class NodeSpec(SpecModel):
    """A machine as registered by an operator or discovered by a node agent."""

    kind: Literal["Node"] = "Node"
    name: Name
    accelerators: AcceleratorGroup | None = None
    cpu: CpuMilli = 0
    memory: MemoryMiB = 0
    labels: Labels
    topology: tuple[Name, ...] = Field(default=(), max_length=16)
    pool: Name = "default"
    cordoned: bool = False

    @field_validator("topology", mode="before")
    @classmethod
    def _split_path(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part for part in value.split("/") if part)
        return value

    @model_validator(mode="after")
    def _topology_is_a_path(self) -> NodeSpec:
        if len(set(self.topology)) != len(self.topology):
            raise ValueError(f"topology {'/'.join(self.topology)!r} repeats a domain name")
        return self


class NodeStatus(SpecModel):
    """What the control plane observed about a node."""

    health: Health = Health.READY
    reason: str = ""
    last_heartbeat: datetime | None = None


class PoolSpec(SpecModel):
    """A named group of nodes (for example ``training`` and ``inference``) that workloads and
    queues may be pinned to."""

    kind: Literal["Pool"] = "Pool"
    name: Name
    description: Text = ""
