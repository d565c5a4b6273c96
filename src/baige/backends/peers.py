"""The peer-memory wiring a replica launch carries, and the variables it becomes.

The controller decides who pushes checkpoints to whom (``baige.control.peer_wiring``) in
terms of nodes and ports; only a backend knows at which address a node is reached (this
machine for the local backend, Slurm's ``NodeAddr`` for Slurm), so the wiring crosses the
backend protocol as data and each backend renders it with :func:`peer_env`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from baige.ckpt.peer_client import (
    ENV_PEER_BIND,
    ENV_PEER_BUDDY,
    ENV_PEER_FETCH_FROM,
    ENV_PEER_SECRET,
)
from baige.ckpt.peer_protocol import format_address

__all__ = ["PEER_ENV", "PeerWiring", "local_address", "peer_env"]

# every variable peer_env may set (a spec may not set them itself)
PEER_ENV = (ENV_PEER_BIND, ENV_PEER_BUDDY, ENV_PEER_FETCH_FROM, ENV_PEER_SECRET)


@dataclass(frozen=True, slots=True)
class PeerWiring:
    """What one replica is told: where its buddy server listens, whom it pushes to (the
    first reachable of ``buddies``), which servers a restarting rank asks, and the job's
    secret. Addresses are (node, port)."""

    node: str
    port: int
    buddies: tuple[tuple[str, int], ...]
    fetch_from: tuple[tuple[str, int], ...]
    secret: str


def local_address(_node: str) -> str:
    """Where a node of the local backend is reached: every one of them is this machine."""
    return "127.0.0.1"


def peer_env(wiring: PeerWiring, address: Callable[[str], str] = local_address) -> dict[str, str]:
    """The ``BAIGE_PEER_*`` variables ``baige run`` reads; ``address`` maps a node to the
    host it is reached at."""

    def at(node: str, port: int) -> str:
        return format_address(address(node), port)

    env = {
        ENV_PEER_BIND: at(wiring.node, wiring.port),
        ENV_PEER_FETCH_FROM: ",".join(at(n, p) for n, p in wiring.fetch_from),
        ENV_PEER_SECRET: wiring.secret,
    }
    if wiring.buddies:
        env[ENV_PEER_BUDDY] = ",".join(at(n, p) for n, p in wiring.buddies)
    return env
