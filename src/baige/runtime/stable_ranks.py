"""Node ranks that survive a rendezvous round: a node keeps its rank, a newcomer fills a hole.

Torch's dynamic rendezvous numbers the nodes of every round afresh, in the order of their
(host, pid): when a node is lost and a spare joins, the survivors may all move one place.
A rank's state is what its checkpoints hold, in its node's memory and on its buddy (see
``baige.control.peer_wiring``): a survivor that moved would restore another rank's state
from a buddy, and the rank whose snapshots were kept only on the lost node — and in the
survivor's own memory — could not be restored at all. So, after each round, every agent
says which rank it held before (``-1`` for a newcomer), through the round's own store, and
all compute the same assignment: a node keeps its previous rank while it is inside the new
world, the others take the free ranks in torch's order. The spare thus takes the lost
node's rank, as the buddy pairing expects.

The rest of torch's agent is untouched: the remapped rank is what it sees from
``next_rendezvous``, so worker ranks follow from it. The static backend's ranks are fixed
already and are not wrapped.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from torch.distributed.elastic.rendezvous.api import RendezvousHandler, RendezvousInfo

__all__ = ["StableRanks", "assign_ranks"]

log = logging.getLogger("baige.runtime")

_KEY = "baige/previous-rank/"


def assign_ranks(previous: Sequence[int]) -> list[int]:
    """New ranks for a round's nodes, given in torch's order with the rank each held in the
    round before (-1: none). A node keeps its previous rank when it is inside the new world
    and no node before it in torch's order claimed it; the rest fill the free ranks in
    ascending order."""
    size = len(previous)
    new = [-1] * size
    taken: set[int] = set()
    for i, rank in enumerate(previous):
        if 0 <= rank < size and rank not in taken:
            new[i] = rank
            taken.add(rank)
    free = iter(r for r in range(size) if r not in taken)
    return [rank if rank >= 0 else next(free) for rank in new]


class StableRanks(RendezvousHandler):
    """A rendezvous handler whose ranks stay with their nodes from one round to the next
    (see the module's docstring); everything else is the wrapped handler's."""

    def __init__(self, inner: RendezvousHandler) -> None:
        self.inner = inner
        self.rank: int = -1  # the rank this node held in the last round
        self.torch_rank: int = -1  # the rank torch gave it in that round

    def next_rendezvous(self) -> RendezvousInfo:
        info = self.inner.next_rendezvous()
        store = info.store
        store.set(f"{_KEY}{info.rank}", str(self.rank))
        claims = [int(store.get(f"{_KEY}{i}")) for i in range(info.world_size)]
        rank = assign_ranks(claims)[info.rank]
        if rank != info.rank:
            log.info("baige run: keeping node rank %d (the rendezvous said %d)", rank, info.rank)
        self.rank, self.torch_rank = rank, info.rank
        return RendezvousInfo(store, rank, info.world_size, info.bootstrap_store_info)  # type: ignore[arg-type]

    # -- the rest is the wrapped handler's

    def get_backend(self) -> str:
        return self.inner.get_backend()

    @property
    def use_agent_store(self) -> bool:
        return self.inner.use_agent_store

    def is_closed(self) -> bool:
        return self.inner.is_closed()

    def set_closed(self) -> None:
        self.inner.set_closed()  # type: ignore[no-untyped-call]

    def num_nodes_waiting(self) -> int:
        return self.inner.num_nodes_waiting()

    def get_run_id(self) -> str:
        return self.inner.get_run_id()

    def shutdown(self) -> bool:
        return self.inner.shutdown()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
