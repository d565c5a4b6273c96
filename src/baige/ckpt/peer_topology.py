"""Choosing a rank's buddy node: the node that holds its checkpoints in memory.

A buddy is only worth having if it does not fail with us, so it must sit in another
failure domain: another rack (power, top-of-rack switch), and, when the block has no other
rack, another block. Among the racks that qualify, the nearest (sharing the longest
topology prefix) is preferred, because traffic within a block is cheaper than across the
spine. The choice is a pure function of the node list, so every node computes the same
pairing with no coordination, and it spreads the load: each rack sends to the next rack
of its block in sorted order, node i of a rack to node i (mod size) of that rack, so with
equal racks every node receives exactly one node's snapshots.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["choose_buddy", "shared_domains"]


def shared_domains(a: Sequence[str], b: Sequence[str]) -> int:
    """How many topology levels two paths (outermost first) share."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def choose_buddy(nodes: Mapping[str, Sequence[str]], me: str) -> str | None:
    """The buddy of node ``me`` among ``nodes`` (name -> topology path, outermost domain
    first, e.g. ``("zone-a", "block-2", "rack-07")``, as ``NodeSpec.topology``). Pass
    only nodes that are up.

    Preference: a node in another rack of my block; else in another block of my zone (and
    so on outwards); else, when every node shares my rack (or no topology is known),
    another node of my rack, which then protects against a node failure only. None when I
    am the only node. Deterministic: the same input always gives the same pairing."""
    if me not in nodes:
        raise ValueError(f"{me!r} is not among the nodes")
    mine = tuple(nodes[me])
    racks: dict[tuple[str, ...], list[str]] = {}
    for name, path in nodes.items():
        racks.setdefault(tuple(path), []).append(name)
    for members in racks.values():
        members.sort()
    position = racks[mine].index(me)
    for depth in range(len(mine) - 1, -1, -1):
        # racks that share exactly ``depth`` outer levels with mine: another domain at
        # that level, the nearest first.
        others = [p for p in racks if p != mine and shared_domains(p, mine) == depth]
        if others:
            ring = sorted([*others, mine])
            target = ring[(ring.index(mine) + 1) % len(ring)]
            members = racks[target]
            return members[position % len(members)]
    others = [p for p in racks if p != mine]  # paths that extend mine, or mine is unknown
    if others:
        ring = sorted([*others, mine])
        members = racks[ring[(ring.index(mine) + 1) % len(ring)]]
        return members[position % len(members)]
    same = racks[mine]
    if len(same) == 1:
        return None
    return same[(position + 1) % len(same)]
