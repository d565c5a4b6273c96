"""The cycle's working copy of free capacity, indexed for fast placement.

A cycle at 10,000 accelerators has a budget of about 50 µs per workload, so free capacity is
kept in aggregates that answer the placement questions directly:

* per accelerator type, nodes bucketed by how many whole cards they have free (best fit for a
  single-node gang is the first non-empty bucket at or above the request);
* per topology domain (cluster, block, rack, …) a histogram of its nodes' free whole cards, so
  "how many replicas of k cards fit in this rack" costs a dozen additions;
* a sorted list of partly used cards, so a fractional replica finds the fullest card it still
  fits on with one bisection.

Every change goes through :meth:`ClusterState.take` and :meth:`ClusterState.give`, which keep
all indexes in step and refuse to over-allocate.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator

from baige.sched.model import MILLI, Node, Placement

__all__ = [
    "SHARE_TAG",
    "ClusterState",
    "Domain",
    "NodeSlot",
    "OverAllocationError",
    "TypeIndex",
    "tag_of",
]


class OverAllocationError(ValueError):
    """A placement asked for more of a device than is free: the snapshot is inconsistent."""


class Domain:
    """A topology domain (level 0 is all nodes of one type) and its free-capacity histogram."""

    __slots__ = (
        "_fits",
        "capacity_milli",
        "children",
        "free_milli",
        "hist",
        "level",
        "name",
        "nodes",
        "parent",
    )

    def __init__(self, level: int, name: str, max_devices: int, parent: Domain | None) -> None:
        self.level = level
        self.name = name
        self.hist = [0] * (max_devices + 1)
        self.nodes: list[NodeSlot] = []
        self.children: list[Domain] = []
        self.parent = parent
        self.free_milli = 0
        self.capacity_milli = 0
        self._fits: dict[int, int] = {}  # k -> fit(k), cleared whenever hist changes

    def fit(self, k: int) -> int:
        """How many replicas of ``k`` whole cards fit on this domain's nodes right now."""
        cached = self._fits.get(k)
        if cached is None:
            hist = self.hist
            cached = sum(hist[a] * (a // k) for a in range(k, len(hist)) if hist[a])
            self._fits[k] = cached
        return cached

    def changed(self) -> None:
        self._fits.clear()

    def max_avail(self) -> int:
        """The most whole cards free on any one node of the domain."""
        hist = self.hist
        for a in range(len(hist) - 1, 0, -1):
            if hist[a]:
                return a
        return 0

    def whole_free(self) -> int:
        return sum(a * c for a, c in enumerate(self.hist))

    def __repr__(self) -> str:
        return f"Domain({self.name!r}, level={self.level})"


SHARE_TAG = -1


def tag_of(devices: int, milli: int) -> int | None:
    """A replica's card shape as the FGD paper tags pods: a share of one card
    (:data:`SHARE_TAG`, whatever its size), ``k`` whole cards, or none for a CPU-only one."""
    if devices == 0:
        return None
    return SHARE_TAG if milli < MILLI else devices


class NodeSlot:
    """One node's free capacity inside a cycle."""

    __slots__ = (
        "cpu_free",
        "domains",
        "free",
        "held",
        "idx",
        "indexed",
        "mem_free",
        "node",
        "tags",
        "whole",
    )

    def __init__(self, idx: int, node: Node) -> None:
        self.idx = idx
        self.node = node
        self.free = [MILLI] * node.devices
        self.whole = node.devices
        self.held = 0
        self.indexed = False  # set once the node is in its type's index
        self.domains: tuple[Domain, ...] = ()
        self.cpu_free = node.cpu_milli
        self.mem_free = node.memory_mib
        # replicas on the node per card shape (``tag_of``): what the GPU-clustering
        # baseline of the FGD paper groups by
        self.tags: dict[int, int] = {}

    def tag(self, devices: int, milli: int, count: int) -> None:
        """Count ``count`` replicas of this shape in (or, negative, out)."""
        key = tag_of(devices, milli)
        if key is None:
            return
        left = self.tags.get(key, 0) + count
        if left > 0:
            self.tags[key] = left
        else:
            self.tags.pop(key, None)

    @property
    def avail(self) -> int:
        """Whole cards free and not held for a reservation."""
        return max(0, self.whole - self.held)

    def whole_devices(self, count: int) -> tuple[int, ...]:
        """``count`` fully free device indices, lowest first (adjacent cards share links)."""
        picked = [d for d, f in enumerate(self.free) if f == MILLI][:count]
        if len(picked) < count:
            raise OverAllocationError(f"node {self.node.name}: {count} whole cards are not free")
        return tuple(picked)

    def __repr__(self) -> str:
        return f"NodeSlot({self.node.name!r}, avail={self.avail}, free={self.free})"


class TypeIndex:
    """All schedulable nodes of one accelerator type, and their aggregates."""

    __slots__ = ("accel_type", "buckets", "generation", "levels", "max_devices", "partial", "root")

    def __init__(self, accel_type: str, max_devices: int, depth: int) -> None:
        self.accel_type = accel_type
        self.max_devices = max_devices
        self.root = Domain(0, "*", max_devices, None)
        self.levels: list[dict[tuple[str, ...], Domain]] = [{} for _ in range(depth)]
        self.buckets: list[dict[int, NodeSlot]] = [{} for _ in range(max_devices + 1)]
        self.partial: list[tuple[int, int, int]] = []  # (free milli, node idx, device)
        self.generation = 0

    def domains_at(self, level: int) -> Iterable[Domain]:
        """Domains at topology ``level`` (1 = outermost); level 0 is the root."""
        return (self.root,) if level == 0 else self.levels[level - 1].values()


class ClusterState:
    """Free capacity of every node, mutable within one cycle."""

    def __init__(self, nodes: Iterable[Node], depth: int) -> None:
        self.slots: list[NodeSlot] = []
        self.by_name: dict[str, NodeSlot] = {}
        self.types: dict[str, TypeIndex] = {}
        self.depth = depth
        max_by_type: dict[str, int] = {}
        node_list = list(nodes)
        for node in node_list:
            if node.schedulable:
                max_by_type[node.accel_type] = max(
                    max_by_type.get(node.accel_type, 0), node.devices
                )
        for accel, max_devices in max_by_type.items():
            self.types[accel] = TypeIndex(accel, max_devices, depth)
        for node in node_list:
            if node.name in self.by_name:
                raise ValueError(f"node {node.name!r} appears twice in the snapshot")
            slot = NodeSlot(len(self.slots), node)
            self.slots.append(slot)
            self.by_name[node.name] = slot
        self._built = False

    def preload(self, placement: Placement, cpu: int = 0, mem: int = 0) -> NodeSlot:
        """Charge a running replica before the indexes are built (much cheaper than
        :meth:`take` for the thousands of replicas a cycle starts from)."""
        if self._built:
            raise RuntimeError("preload() after build_indexes(); use take()")
        slot = self.by_name.get(placement.node)
        if slot is None:
            raise OverAllocationError(f"node {placement.node!r} is not in the snapshot")
        free = slot.free
        milli = placement.milli
        devices = placement.devices
        if len(devices) > 1 and len(set(devices)) != len(devices):
            raise OverAllocationError(f"node {slot.node.name}: a device is listed twice")
        size = len(free)
        for device in devices:
            if not 0 <= device < size or free[device] < milli:
                raise OverAllocationError(
                    f"node {slot.node.name}: device {device} is not free for {milli} milli"
                )
        whole = 0
        for device in devices:
            if free[device] == MILLI:
                whole += 1
            free[device] -= milli
        slot.whole -= whole
        slot.cpu_free -= cpu
        slot.mem_free -= mem
        slot.tag(len(devices), milli, 1)
        return slot

    def build_indexes(self) -> None:
        """Index every schedulable node once its running replicas are preloaded."""
        for slot in self.slots:
            if slot.node.schedulable:
                slot.indexed = True
                self._index(slot)
        for tindex in self.types.values():
            tindex.partial.sort()
        self._built = True

    def _index(self, slot: NodeSlot) -> None:
        tindex = self.types[slot.node.accel_type]
        path: list[Domain] = [tindex.root]
        padded = (*slot.node.topology, *("-",) * self.depth)[: self.depth]
        for level in range(self.depth):
            key = padded[: level + 1]
            domain = tindex.levels[level].get(key)
            if domain is None:
                domain = Domain(level + 1, "/".join(key), tindex.max_devices, path[-1])
                tindex.levels[level][key] = domain
                path[-1].children.append(domain)
            path.append(domain)
        slot.domains = tuple(path)
        for domain in path:
            domain.nodes.append(slot)
            domain.hist[slot.avail] += 1
            domain.free_milli += sum(slot.free)
            domain.capacity_milli += slot.node.devices * MILLI
        tindex.buckets[slot.avail][slot.idx] = slot
        for device, free in enumerate(slot.free):
            if 0 < free < MILLI:
                tindex.partial.append((free, slot.idx, device))

    # -- queries -------------------------------------------------------------------------

    def index(self, accel_type: str) -> TypeIndex | None:
        return self.types.get(accel_type)

    def slot(self, name: str) -> NodeSlot | None:
        return self.by_name.get(name)

    def best_partial(self, accel_type: str, milli: int) -> Iterator[tuple[NodeSlot, int]]:
        """Partly used cards of this type with at least ``milli`` free, fullest first."""
        tindex = self.types.get(accel_type)
        if tindex is None:
            return
        partial = tindex.partial
        start = bisect.bisect_left(partial, (milli, -1, -1))
        for position in range(start, len(partial)):
            _, idx, device = partial[position]
            yield self.slots[idx], device

    # -- changes -------------------------------------------------------------------------

    def _move(self, slot: NodeSlot, old_avail: int) -> None:
        new_avail = slot.avail
        if new_avail == old_avail or not slot.indexed:
            return
        for domain in slot.domains:
            hist = domain.hist
            hist[old_avail] -= 1
            hist[new_avail] += 1
            domain._fits.clear()
        buckets = self.types[slot.node.accel_type].buckets
        del buckets[old_avail][slot.idx]
        buckets[new_avail][slot.idx] = slot

    def _partial_update(self, slot: NodeSlot, device: int, before: int, after: int) -> None:
        partial = self.types[slot.node.accel_type].partial
        if 0 < before < MILLI:
            position = bisect.bisect_left(partial, (before, slot.idx, device))
            del partial[position]
        if 0 < after < MILLI:
            bisect.insort(partial, (after, slot.idx, device))

    def take(
        self, slot: NodeSlot, devices: tuple[int, ...], milli: int, cpu: int = 0, mem: int = 0
    ) -> None:
        """Allocate ``milli`` of each device (and host CPU/memory); raises before changing
        anything if it cannot."""
        free = slot.free
        for device in devices:
            if not 0 <= device < len(free) or free[device] < milli:
                raise OverAllocationError(
                    f"node {slot.node.name}: device {device} has "
                    f"{free[device] if 0 <= device < len(free) else 'no'} milli free, {milli} asked"
                )
        if len(set(devices)) != len(devices):
            raise OverAllocationError(f"node {slot.node.name}: a device is listed twice")
        slot.cpu_free -= cpu
        slot.mem_free -= mem
        slot.tag(len(devices), milli, 1)
        old_avail = slot.avail
        for device in devices:
            before = free[device]
            after = before - milli
            free[device] = after
            if before == MILLI:
                slot.whole -= 1
            if slot.indexed:
                self._partial_update(slot, device, before, after)
        if slot.indexed:
            used = milli * len(devices)
            for domain in slot.domains:
                domain.free_milli -= used
            self._move(slot, old_avail)

    def give(
        self, slot: NodeSlot, devices: tuple[int, ...], milli: int, cpu: int = 0, mem: int = 0
    ) -> None:
        """Return what :meth:`take` allocated."""
        free = slot.free
        for device in devices:
            if not 0 <= device < len(free) or free[device] + milli > MILLI:
                raise OverAllocationError(f"node {slot.node.name}: device {device} over-released")
        slot.cpu_free += cpu
        slot.mem_free += mem
        slot.tag(len(devices), milli, -1)
        old_avail = slot.avail
        for device in devices:
            before = free[device]
            after = before + milli
            free[device] = after
            if after == MILLI:
                slot.whole += 1
            if slot.indexed:
                self._partial_update(slot, device, before, after)
        if slot.indexed:
            used = milli * len(devices)
            for domain in slot.domains:
                domain.free_milli += used
            self._move(slot, old_avail)
            self.types[slot.node.accel_type].generation += 1

    def take_placement(self, placement: Placement, cpu: int = 0, mem: int = 0) -> NodeSlot:
        slot = self.by_name.get(placement.node)
        if slot is None:
            raise OverAllocationError(f"node {placement.node!r} is not in the snapshot")
        self.take(slot, placement.devices, placement.milli, cpu, mem)
        return slot

    def give_placement(self, placement: Placement, cpu: int = 0, mem: int = 0) -> None:
        slot = self.by_name.get(placement.node)
        if slot is None:
            raise OverAllocationError(f"node {placement.node!r} is not in the snapshot")
        self.give(slot, placement.devices, placement.milli, cpu, mem)

    def hold(self, slot: NodeSlot, count: int) -> None:
        """Reserve ``count`` of the node's whole cards (negative releases a hold)."""
        old_avail = slot.avail
        slot.held = max(0, slot.held + count)
        self._move(slot, old_avail)
        if count < 0 and slot.indexed:
            self.types[slot.node.accel_type].generation += 1

    def capacity_milli(self, accel_type: str) -> int:
        """Total milli of schedulable cards of this type (the root of every quota)."""
        return MILLI * sum(
            slot.node.devices
            for slot in self.slots
            if slot.node.accel_type == accel_type and slot.node.schedulable
        )
