"""Peer-memory checkpoints wired by the controller: who holds whose snapshots, on which port.

A node lost takes its shared memory with it; a replica that stands in for it (a spare, or
the same rank restarted elsewhere) restores from a buddy's memory only if every replica of
the job serves a buddy server and pushes to one in another failure domain. ``baige run``
does both when its ``BAIGE_PEER_*`` variables say where (see ``baige.runtime.peer``); this
module decides them, as a pure function of the job's replicas, so every launch of the same
replica set gives the same pairing:

- **Ports.** Every replica of a multi-replica training job gets a port of its own (kept in
  its row, like a service replica's HTTP port), allocated when it is first launched.
- **Buddies.** The preference of :func:`baige.ckpt.peer_topology.choose_buddy`, over
  replicas rather than nodes: a replica on another rack of my block (the nearest domain
  that is not mine, racks in a ring so that each receives about one rack's snapshots), else
  farther out; only then another node of my rack, and last another replica of my node.
  The next two choices follow as fallbacks, so a replica whose buddy was the node just lost
  pushes to the next one instead of to nobody. Computed for the whole job at once in
  O(n log n), since a 10,000-card job has 1,250 replicas.
- **Where to restore from.** Every replica's server. Torch's rendezvous numbers ranks anew
  each round (by host and pid), so the rank a replica holds after a swap is not known in
  advance: asking every server finds the rank wherever its previous holder pushed it.
- **Secret.** Derived from the job's report token (HMAC, per generation): it never needs
  storing, and a replica that already holds the token learns nothing new from it. It
  travels in the replica's environment (readable only by its own user) and ``baige run``
  moves it into a file of mode 0600 before any worker starts.
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from baige.backends.peers import PeerWiring

__all__ = ["FALLBACK_BUDDIES", "PeerMember", "job_secret", "members_of", "wire"]

FALLBACK_BUDDIES = 2  # buddies tried after the first one, in order, when it cannot be reached


@dataclass(frozen=True, slots=True)
class PeerMember:
    """One replica of the job as the pairing sees it: its node's topology path (outermost
    first, as ``NodeSpec.topology``) and the port its buddy server listens on."""

    replica: str
    node: str
    port: int
    topology: tuple[str, ...] = ()


class _Ring:
    """The job's replicas sorted by (topology, node, id): every topology domain is then one
    contiguous range, found by bisection."""

    def __init__(self, members: Sequence[PeerMember]) -> None:
        self.order = sorted(members, key=lambda m: ((*m.topology, m.node), m.replica))
        self.keys = [(*m.topology, m.node) for m in self.order]
        self.position = {m.replica: i for i, m in enumerate(self.order)}

    def domain(self, prefix: tuple[str, ...]) -> tuple[int, int]:
        """The range of replicas whose path starts with ``prefix``."""
        n = len(prefix)
        lo = bisect.bisect_left(self.keys, prefix, key=lambda k: k[:n])
        hi = bisect.bisect_right(self.keys, prefix, key=lambda k: k[:n])
        return lo, hi

    def preference(self, me: str) -> Iterator[PeerMember]:
        """Every other replica, best buddy first."""
        p = self.position[me]
        key = self.keys[p]
        rack = len(key) - 1  # the topology's depth: key[:rack] is my rack
        for depth in (*range(rack - 1, -1, -1), rack, rack + 1):
            outer = self.domain(key[:depth])
            # those sharing exactly `depth` levels: outer minus my domain; at my node's
            # depth, everyone else on my node
            hole = self.domain(key[: depth + 1]) if depth <= rack else (p, p + 1)
            tail = outer[1] - hole[1]  # after my domain, then wrapping round to before it
            size = tail + hole[0] - outer[0]
            start = (p - hole[0]) % size if size else 0  # spread: my place in my domain
            for i in range(size):
                j = (start + i) % size
                yield self.order[hole[1] + j if j < tail else outer[0] + j - tail]


def wire(members: Sequence[PeerMember], secret: str) -> dict[str, PeerWiring]:
    """Every replica's wiring among ``members`` (the job's replicas wanted running, spares
    included). A replica alone pushes nowhere; it still serves, so a replica placed later
    can push to it."""
    ring = _Ring(members)
    if len(ring.position) != len(members):
        raise ValueError("a replica is listed twice")
    fetch_from = tuple((m.node, m.port) for m in sorted(members, key=lambda m: m.replica))
    wired = {}
    for member in members:
        buddies: list[tuple[str, int]] = []
        nodes = {member.node}  # a fallback on the node just lost would go with it
        for other in ring.preference(member.replica):
            if other.node in nodes and other.node != member.node:
                continue
            buddies.append((other.node, other.port))
            nodes.add(other.node)
            if len(buddies) > FALLBACK_BUDDIES:
                break
        wired[member.replica] = PeerWiring(
            node=member.node,
            port=member.port,
            buddies=tuple(buddies),
            fetch_from=fetch_from,
            secret=secret,
        )
    return wired


def job_secret(report_token: str, workload_id: str, generation: int) -> str:
    """The secret a job's replicas authenticate their snapshots with (64 hex digits)."""
    message = f"baige-peer-v1:{workload_id}:{generation}".encode()
    return hmac.new(report_token.encode(), message, hashlib.sha256).hexdigest()


def members_of(
    replicas: Sequence[tuple[str, str, int]], topology: Mapping[str, Sequence[str]]
) -> list[PeerMember]:
    """(replica id, node, port) rows as members, each with its node's topology path."""
    return [PeerMember(r, n, p, tuple(topology.get(n, ()))) for r, n, p in replicas]
