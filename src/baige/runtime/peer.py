"""``baige run --peer-*``: this node holds a buddy's checkpoints, and its ranks push to one.

A whole node lost takes its shared memory with it; its ranks, restarted on a spare, would read
their state back from storage. With peer settings, the agent of every node serves a buddy
server (``baige.ckpt.peer_server``) for the life of the run — outliving any worker restart —
and tells its workers, through ``BAIGE_PEER_*`` variables, where to push their snapshots and
where to look for them, so an unchanged ``Checkpointer(dir)`` replicates every persisted step
to the buddy and a rank restarted on a new node restores from the buddy's memory
(``Restored.source == "buddy"``). The snapshots are authenticated with the job's secret (a
file; only its path crosses processes). See docs/ckpt.md, "Peer-memory checkpoints".
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from baige.ckpt.peer_client import (
    ENV_PEER_BIND,
    ENV_PEER_BUDDY,
    ENV_PEER_FETCH_FROM,
    ENV_PEER_JOB,
    ENV_PEER_SECRET,
    ENV_PEER_SECRET_FILE,
    ENV_PEER_SOURCE_HOST,
)
from baige.ckpt.peer_protocol import PeerError, parse_address, read_secret
from baige.ckpt.peer_server import PeerServer, parse_bytes

__all__ = ["PeerRun", "peer_from_env", "start_peer"]

log = logging.getLogger("baige.runtime")


@dataclass(frozen=True, slots=True)
class PeerRun:
    """What ``--peer-*`` asked for. ``bind``: this node's buddy server (HOST:PORT on the job's
    interface; empty: serve nothing here). ``buddy``: where this node's ranks push.
    ``fetch_from``: where a restarted rank looks (default: the buddy; on a spare, the buddy
    of the node it replaces). ``buddy`` may list fallbacks after it, comma-separated: they
    take the pushes while the buddy cannot be reached."""

    secret_file: str
    bind: str = ""
    buddy: str = ""
    fetch_from: tuple[str, ...] = ()
    max_bytes: str = "16G"
    max_snapshots: int = 2

    def check(self) -> None:
        """Refuse a bad setting before anything starts, naming the option."""
        for option, address in (
            ("--peer-bind", self.bind),
            *(("--peer-buddy", a) for a in self.buddy.split(",")),
            *(("--peer-fetch-from", a) for a in self.fetch_from),
        ):
            if address:
                try:
                    parse_address(address)
                except (PeerError, ValueError) as exc:
                    raise ValueError(f"{option} {address!r}: {exc}") from None
        if not (self.bind or self.buddy or self.fetch_from):
            raise ValueError("--peer-secret-file needs --peer-bind, --peer-buddy or both")
        try:
            read_secret(self.secret_file)
        except (PeerError, OSError, ValueError) as exc:
            raise ValueError(f"--peer-secret-file {self.secret_file}: {exc}") from None
        try:
            parse_bytes(self.max_bytes)
        except ValueError as exc:
            raise ValueError(f"--peer-max-bytes {self.max_bytes!r}: {exc}") from None
        if self.max_snapshots < 1:
            raise ValueError(f"--peer-max-snapshots must be >= 1, got {self.max_snapshots}")


def peer_from_env(run_dir: Path) -> PeerRun | None:
    """The peer settings the control plane hands a replica (``BAIGE_PEER_*``, see
    ``baige.control.peer_wiring``), or None when it hands none. The secret moves out of the
    environment into ``run_dir/peer.secret`` (mode 0600), so workers see only its path."""
    bind = os.environ.get(ENV_PEER_BIND, "")
    secret = os.environ.pop(ENV_PEER_SECRET, "")
    if not (bind and secret):
        return None
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "peer.secret"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        os.fchmod(handle.fileno(), 0o600)  # a file left by an earlier attempt, too
        handle.write(secret)
    fetch = tuple(a for a in os.environ.get(ENV_PEER_FETCH_FROM, "").split(",") if a)
    return PeerRun(
        secret_file=str(path),
        bind=bind,
        buddy=os.environ.get(ENV_PEER_BUDDY, ""),
        fetch_from=fetch,
    )


def start_peer(peer: PeerRun, job: str) -> PeerServer | None:
    """Start this node's buddy server (if ``bind``) and set the workers' variables."""
    server = None
    if peer.bind:
        server = PeerServer(
            peer.bind,
            read_secret(peer.secret_file),
            max_snapshots=peer.max_snapshots,
            max_bytes=parse_bytes(peer.max_bytes),
        ).start()
        log.info("baige run: holding buddies' checkpoints on %s", server.address)
    os.environ[ENV_PEER_JOB] = job
    os.environ[ENV_PEER_SECRET_FILE] = os.path.abspath(peer.secret_file)
    for name, value in (
        (ENV_PEER_BUDDY, peer.buddy),
        (ENV_PEER_FETCH_FROM, ",".join(peer.fetch_from)),
        (ENV_PEER_SOURCE_HOST, parse_address(peer.bind)[0] if peer.bind else ""),
    ):
        if value:
            os.environ[name] = value
        else:
            os.environ.pop(name, None)
    return server
