"""Invariants every cycle result must satisfy, checked from the outside.

Used by the property tests (random snapshots), by the simulator's conservation checks, and
available to operators (``baige sched verify``) when a decision looks wrong. Returns the
violations as sentences; an empty list means the result is sound.
"""

from __future__ import annotations

from collections import defaultdict

from baige.sched.decisions import Admit, CycleResult, Grow, Preempt, Shrink
from baige.sched.model import MILLI, Health, Node, Snapshot
from baige.sched.profile import Profile
from baige.sched.quota import QuotaLedger

__all__ = ["check_result"]


def check_result(snapshot: Snapshot, result: CycleResult, profile: Profile) -> list[str]:
    """Every broken invariant in ``result`` for ``snapshot`` (empty when all hold)."""
    problems: list[str] = []
    nodes = {n.name: n for n in snapshot.nodes}
    workloads = {w.id: w for w in snapshot.workloads}
    use: dict[tuple[str, int], int] = defaultdict(int)
    placements_of: dict[str, list[tuple[str, tuple[int, ...], int]]] = {}
    accel_of: dict[str, str] = {}
    for workload in snapshot.workloads:
        if workload.assignment is not None:
            accel_of[workload.id] = workload.assignment.accel_type
            placements_of[workload.id] = [
                (p.node, p.devices, p.milli) for p in workload.assignment.placements
            ]
    seen_admit: set[str] = set()
    for decision in result.decisions:
        found = workloads.get(decision.workload)
        if found is None:
            problems.append(f"decision for unknown workload {decision.workload}")
            continue
        workload = found
        if isinstance(decision, Admit):
            if workload.id in placements_of or decision.workload in seen_admit:
                problems.append(f"{workload.id}: admitted while already running")
            seen_admit.add(workload.id)
            if decision.mixed and not workload.mixes:
                problems.append(f"{workload.id}: spread over types without mix")
            if workload.accel_types and decision.accel_type not in workload.accel_types:
                problems.append(f"{workload.id}: placed on {decision.accel_type}, not accepted")
            count = len(decision.placements)
            floor = workload.floor if workload.gang and profile.elastic else workload.replicas
            if not workload.gang:
                floor = 1
            if workload.gang and count < floor:
                problems.append(f"{workload.id}: gang admitted with {count} < {floor} replicas")
            if count > workload.replicas or count == 0:
                problems.append(f"{workload.id}: admitted with {count} replicas")
            accel_of[workload.id] = decision.accel_type
            placements_of[workload.id] = [(p.node, p.devices, p.milli) for p in decision.placements]
            new = decision.placements
        elif isinstance(decision, Grow):
            placements_of.setdefault(workload.id, []).extend(
                (p.node, p.devices, p.milli) for p in decision.add
            )
            new = decision.add
            if len(placements_of[workload.id]) > workload.replicas:
                problems.append(f"{workload.id}: grown beyond {workload.replicas} replicas")
        elif isinstance(decision, Shrink):
            current = placements_of.get(workload.id, [])
            for p in decision.remove:
                item = (p.node, p.devices, p.milli)
                if item in current:
                    current.remove(item)
                else:
                    problems.append(f"{workload.id}: shrink removes a replica it does not have")
            new = ()
        elif isinstance(decision, Preempt):
            if decision.by is not None and not workload.preemptible:
                problems.append(f"{workload.id}: not preemptible but preempted by {decision.by}")
            placements_of.pop(workload.id, None)
            new = ()
        for placement in new:
            node = nodes.get(placement.node)
            if node is None:
                problems.append(f"{workload.id}: placed on unknown node {placement.node}")
                continue
            if node.health is not Health.READY:
                problems.append(f"{workload.id}: placed on {node.health} node {node.name}")
            if workload.mixes:
                if node.accel_type not in workload.accel_types:
                    problems.append(f"{workload.id}: node {node.name} is {node.accel_type}")
            elif node.accel_type != accel_of.get(workload.id):
                problems.append(f"{workload.id}: node {node.name} is {node.accel_type}")
            expected_devices = workload.request.devices
            if len(placement.devices) != expected_devices:
                problems.append(
                    f"{workload.id}: replica on {node.name} has {len(placement.devices)} devices"
                )
    for items in placements_of.values():
        for node_name, devices, milli in items:
            for device in devices:
                use[(node_name, device)] += milli
    for (node_name, device), milli in use.items():
        node = nodes.get(node_name)
        if node is not None and (device >= node.devices or milli > MILLI):
            problems.append(f"node {node_name} device {device} allocated {milli}/{MILLI}")
    pending = {w.id for w in snapshot.workloads if w.assignment is None and w.replicas > 0}
    admitted = {d.workload for d in result.decisions if isinstance(d, Admit)}
    for workload_id in sorted(pending - admitted):
        if workload_id not in result.pending:
            problems.append(f"{workload_id}: left pending without a reason")
    # quota limits hold after the cycle
    capacity: dict[str, int] = defaultdict(int)
    for node in snapshot.nodes:
        if node.schedulable:
            capacity[node.accel_type] += node.devices * MILLI
    ledger = QuotaLedger(snapshot.queues, capacity, borrowing=profile.borrowing)
    before = QuotaLedger(snapshot.queues, capacity, borrowing=profile.borrowing)
    for workload in snapshot.workloads:
        if workload.assignment and before.known(workload.queue):
            for accel, milli in _per_type(
                nodes,
                workload.assignment.accel_type,
                [(p.node, p.devices, p.milli) for p in workload.assignment.placements],
            ).items():
                before.add(workload.queue, accel, milli)
    for workload_id, items in placements_of.items():
        queue = workloads[workload_id].queue
        if ledger.known(queue):
            for accel, milli in _per_type(nodes, accel_of[workload_id], items).items():
                ledger.add(queue, accel, milli)
    for (queue, accel), used in ledger.inner.items():
        if not queue:
            continue
        limit = ledger.limit(queue, accel)
        if limit is not None and used > limit and used > before.inner.get((queue, accel), 0):
            problems.append(f"queue {queue}: uses {used} milli {accel}, over its limit {limit}")
    return problems


def _per_type(
    nodes: dict[str, Node], accel: str, items: list[tuple[str, tuple[int, ...], int]]
) -> dict[str, int]:
    """Milli per accelerator type of a workload's replicas, by the type of each node (a gang
    spanning types is charged to each); a node not in the snapshot counts as ``accel``."""
    held: dict[str, int] = defaultdict(int)
    for name, devices, milli in items:
        node = nodes.get(name)
        held[accel if node is None else node.accel_type] += len(devices) * milli
    return held
