"""Synthetic clusters and workload mixes, seeded, for benchmarks, demos and what-if runs.

The shapes are chosen to look like production clusters: most jobs are small (one card or a
share of one), a minority are multi-node gangs; inference replicas often take a share of a
card (about 3,000 of the 8,152 tasks in the Alibaba 2023 trace do).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from baige.sched.model import MILLI, Kind, Node, Queue, Quota, Request, Workload

__all__ = ["ClusterShape", "make_nodes", "make_queues", "make_workloads"]


@dataclass(frozen=True, slots=True)
class ClusterShape:
    """Node groups ``(accelerator type, node count)``, ``devices`` per node, and a 4-level
    topology: zone / block / rack / node."""

    groups: tuple[tuple[str, int], ...] = (("h100", 500), ("a100-80g", 450), ("ascend-910b", 300))
    devices: int = 8
    nodes_per_rack: int = 16
    racks_per_block: int = 8
    blocks_per_zone: int = 4

    @property
    def accelerators(self) -> int:
        return sum(count for _, count in self.groups) * self.devices


LEVELS = ("zone", "block", "rack")


def make_nodes(shape: ClusterShape) -> list[Node]:
    nodes: list[Node] = []
    rack_index = 0
    for accel, count in shape.groups:
        for i in range(count):
            rack = rack_index + i // shape.nodes_per_rack
            block = rack // shape.racks_per_block
            zone = block // shape.blocks_per_zone
            nodes.append(
                Node(
                    name=f"{accel}-{i:05d}",
                    accel_type=accel,
                    devices=shape.devices,
                    topology=(f"z{zone}", f"z{zone}-b{block}", f"z{zone}-b{block}-r{rack}"),
                )
            )
        rack_index += -(-count // shape.nodes_per_rack)
    return nodes


def make_queues(shape: ClusterShape, orgs: int = 4, teams: int = 4) -> list[Queue]:
    """``orgs`` organisations of ``teams`` teams plus a serving queue; guarantees split the
    cluster evenly, limits allow borrowing up to half of each type."""
    queues = []
    serving_share = 0.1
    per_org = (1 - serving_share) / orgs
    totals = {accel: count * shape.devices for accel, count in shape.groups}

    def quotas(share: float, limit: float) -> dict[str, Quota]:
        return {
            accel: Quota(int(total * share) * MILLI, int(total * limit) * MILLI)
            for accel, total in totals.items()
        }

    queues.append(Queue("serving", weight=2.0, quotas=quotas(serving_share, 0.3)))
    for o in range(orgs):
        queues.append(Queue(f"org{o}", quotas=quotas(per_org, 0.5)))
        for t in range(teams):
            queues.append(
                Queue(f"org{o}-t{t}", parent=f"org{o}", quotas=quotas(per_org / teams, 0.4))
            )
    return queues


_TRAIN_SHAPES = (  # (cards per replica, replicas, weight): mean about 2.3 cards
    (1, 1, 70),
    (2, 1, 10),
    (4, 1, 6),
    (8, 1, 5),
    (8, 2, 1.5),
    (8, 4, 0.7),
    (8, 8, 0.3),
)


def make_workloads(
    count: int,
    shape: ClusterShape,
    queues: list[Queue],
    *,
    seed: int,
    start: float = 0.0,
    prefix: str = "w",
    inference_share: float = 0.35,
) -> list[Workload]:
    rng = random.Random(seed)
    accels = [accel for accel, _ in shape.groups]
    leaves = [q.name for q in queues if q.parent is not None]
    weights = [w for _, _, w in _TRAIN_SHAPES]
    out = []
    for i in range(count):
        created = start + i * 0.01
        order = accels[:]
        rng.shuffle(order)
        accepted = tuple(order[: rng.choice((1, 1, 2, 3))])
        if rng.random() < inference_share:
            milli = rng.choice((250, 300, 500, 500, 1000))
            out.append(
                Workload(
                    id=f"{prefix}{i}",
                    queue="serving",
                    request=Request(1, milli),
                    accel_types=accepted,
                    replicas=rng.choice((1, 1, 2, 4)),
                    min_replicas=1,
                    kind=Kind.INFERENCE,
                    priority=1000,
                    preemptible=False,
                    created_at=created,
                )
            )
            continue
        devices, replicas, _ = rng.choices(_TRAIN_SHAPES, weights)[0]
        elastic = replicas > 1 and rng.random() < 0.3
        out.append(
            Workload(
                id=f"{prefix}{i}",
                queue=rng.choice(leaves),
                request=Request(devices),
                accel_types=accepted,
                replicas=replicas,
                min_replicas=max(1, replicas // 2) if elastic else None,
                priority=rng.choice((0, 0, 0, 10, 100)),
                created_at=created,
                duration_estimate=rng.choice((None, 3600.0, 4 * 3600.0, 86400.0)),
            )
        )
    return out
