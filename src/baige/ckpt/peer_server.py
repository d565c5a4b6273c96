"""The buddy server: keeps other nodes' newest checkpoint snapshots in this node's memory.

Why: when a node is lost its shared memory goes with it, and its ranks, restarted
elsewhere, would have to read the whole state back from (shared, often slow) storage. Each
rank's persister therefore also streams every persisted step to a buddy node in another
failure domain (``peer_topology.choose_buddy``), where this server holds it in RAM; the
restarted rank fetches it at network speed instead.

What it guarantees:

* **Atomic.** A pushed snapshot is received into a private buffer and becomes visible only
  at END, with every shard complete and matching its CRC-32; a connection that breaks, times
  out, sends anything malformed, or fails authentication leaves nothing behind.
* **Bounded.** At most ``max_snapshots`` per (job, rank) (the oldest is evicted when a new
  one commits) and ``max_bytes`` in all, counting snapshots being received: a push that
  would exceed it evicts older snapshots that are not some rank's newest, and is refused
  (with the figures) when that is not enough, so a rank's only copy is never dropped for
  another's. Memory in use is logged on every change and answered to STATS.
* **Authenticated.** Only clients that know the job's secret can push, list or fetch (see
  ``peer_protocol``); bind it to the job's network interface, not to every interface.

Run: ``python -m baige.ckpt.peer_server --bind HOST:PORT --secret-file F --max-snapshots N
--max-bytes B`` (it prints ``listening on HOST:PORT`` once ready; port 0 picks one), or use
``PeerServer(...).start()`` on a thread inside another process.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import mmap
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from baige.ckpt.peer_protocol import (
    MAX_HEADER,
    Channel,
    Frame,
    Msg,
    PeerAuthError,
    PeerError,
    PeerProtocolError,
    ShardReceiver,
    Snapshot,
    SnapshotMeta,
    format_address,
    get_nonce,
    get_opt_int,
    get_opt_str,
    get_str,
    new_nonce,
    parse_address,
    read_secret,
    send_snapshot,
    session_key,
)

__all__ = ["PeerServer", "SnapshotStore", "StoreFull", "Stored", "main", "parse_bytes"]

log = logging.getLogger("baige.ckpt.peer")

_MIB = 1 << 20
_LIST_MAX = 100  # entries in one LIST/STATS reply, so it fits in a 64 KiB header


class StoreFull(PeerError):
    """Receiving this snapshot would exceed the server's memory budget."""


@dataclass
class Stored:
    """A committed snapshot: its description and its shards back to back."""

    meta: SnapshotMeta
    buffer: mmap.mmap
    stored_at: float
    order: int

    def info(self) -> dict[str, Any]:
        return {
            "rank": self.meta.rank,
            "step": self.meta.step,
            "seq": self.meta.seq,
            "timeline": self.meta.timeline,
            "world_size": self.meta.world_size,
            "bytes": self.meta.total,
            "stored_at": round(self.stored_at, 3),
        }


@dataclass
class _Reservation:
    key: tuple[str, int]
    nbytes: int
    active: bool = True


@dataclass
class SnapshotStore:
    """The snapshots a server holds, and its memory accounting. Thread-safe."""

    max_snapshots: int
    max_bytes: int
    _entries: dict[tuple[str, int], list[Stored]] = field(default_factory=dict)
    _used: int = 0
    _reserved: int = 0
    _order: int = 0
    _evicted: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.max_snapshots < 1:
            raise ValueError(f"max_snapshots must be >= 1, got {self.max_snapshots}")
        if self.max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {self.max_bytes}")

    def reserve(self, meta: SnapshotMeta) -> _Reservation:
        """Count ``meta.total`` bytes as in use until commit or release; make room by
        evicting the oldest snapshots that are not their rank's newest, else StoreFull."""
        key = (meta.job, meta.rank)
        need = meta.total
        with self._lock:
            free = self.max_bytes - self._used - self._reserved
            victims = sorted(
                (e for lst in self._entries.values() for e in lst[:-1]), key=lambda e: e.order
            )
            evicted: list[Stored] = []
            for victim in victims:
                if need <= free:
                    break
                evicted.append(victim)
                free += victim.meta.total
            if need > free:  # refused without evicting anything
                raise StoreFull(
                    f"no room for {meta.job} rank {meta.rank} step {meta.step} "
                    f"({need / _MIB:.1f} MiB): {self._used / _MIB:.1f} MiB held and "
                    f"{self._reserved / _MIB:.1f} MiB being received of "
                    f"{self.max_bytes / _MIB:.1f} MiB (--max-bytes), even after evicting "
                    "every snapshot that is not its rank's newest"
                )
            for victim in evicted:
                self._drop(victim)
            self._reserved += need
        for victim in evicted:
            log.info("evicted %s to make room: %s", _name(victim.meta), self.summary())
        return _Reservation(key, need)

    def release(self, res: _Reservation) -> None:
        with self._lock:
            if res.active:
                res.active = False
                self._reserved -= res.nbytes

    def commit(self, res: _Reservation, meta: SnapshotMeta, buffer: mmap.mmap) -> list[Stored]:
        """Make a fully received, verified snapshot visible; evict beyond ``max_snapshots``
        for its rank (and an older copy of the same step). Returns what was evicted."""
        with self._lock:
            if res.active:
                res.active = False
                self._reserved -= res.nbytes
            self._order += 1
            lst = self._entries.setdefault(res.key, [])
            same = (meta.step, meta.timeline)
            evicted = [e for e in lst if (e.meta.step, e.meta.timeline) == same]
            for e in evicted:
                self._drop(e)
            lst = self._entries.setdefault(res.key, [])
            lst.append(Stored(meta, buffer, time.time(), self._order))
            self._used += meta.total
            while len(lst) > self.max_snapshots:
                old = lst[0]
                self._drop(old)
                evicted.append(old)
            return evicted

    def _drop(self, entry: Stored) -> None:
        """Forget a snapshot. Its buffer is not closed: a FETCH may still be sending it,
        and it is freed when the last reference goes."""
        key = (entry.meta.job, entry.meta.rank)
        lst = self._entries.get(key, [])
        if entry in lst:
            lst.remove(entry)
            self._used -= entry.meta.total
            self._evicted += 1
        if not lst:
            self._entries.pop(key, None)

    def get(self, job: str, rank: int, step: int | None, timeline: str | None) -> Stored | None:
        """The newest snapshot of (job, rank), or the newest of that step (and timeline)."""
        with self._lock:
            for e in reversed(self._entries.get((job, rank), [])):
                if step is None or (
                    e.meta.step == step and (timeline is None or e.meta.timeline == timeline)
                ):
                    return e
        return None

    def list(self, job: str, rank: int | None) -> list[dict[str, Any]]:
        with self._lock:
            out = [
                e.info()
                for (j, r), lst in sorted(self._entries.items())
                if j == job and (rank is None or r == rank)
                for e in lst
            ]
        return out

    def stats(self) -> dict[str, Any]:
        with self._lock:
            per = [
                {
                    "job": j,
                    "rank": r,
                    "snapshots": len(lst),
                    "bytes": sum(e.meta.total for e in lst),
                    "steps": [e.meta.step for e in lst][-16:],
                }
                for (j, r), lst in sorted(self._entries.items())
            ]
            return {
                "used_bytes": self._used,
                "receiving_bytes": self._reserved,
                "max_bytes": self.max_bytes,
                "snapshots": sum(len(lst) for lst in self._entries.values()),
                "max_snapshots_per_rank": self.max_snapshots,
                "evicted": self._evicted,
                "ranks": per[:_LIST_MAX],
                "truncated": len(per) > _LIST_MAX,
            }

    def summary(self) -> str:
        s = self.stats()
        return (
            f"holding {s['snapshots']} snapshots of {len(s['ranks'])} ranks, "
            f"{s['used_bytes'] / _MIB:.1f} MiB (+{s['receiving_bytes'] / _MIB:.1f} MiB "
            f"arriving) of {s['max_bytes'] / _MIB:.1f} MiB"
        )


def _name(meta: SnapshotMeta) -> str:
    return f"{meta.job} rank {meta.rank} step {meta.step}"


class PeerServer:
    """Accepts connections on ``bind`` and serves each on its own thread (at most
    ``max_connections`` at once). ``idle_timeout_s`` bounds how long a connection may sit
    silent, mid-frame or between requests."""

    def __init__(
        self,
        bind: str,
        secret: bytes,
        *,
        max_snapshots: int,
        max_bytes: int,
        idle_timeout_s: float = 30.0,
        max_connections: int = 64,
    ) -> None:
        host, port = parse_address(bind)
        if host in ("0.0.0.0", "::", ""):
            log.warning(
                "binding %s accepts connections on every interface; bind the job's interface",
                bind,
            )
        self.secret = secret
        self.store = SnapshotStore(max_snapshots, max_bytes)
        self.idle_timeout_s = idle_timeout_s
        self.max_connections = max_connections
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.create_server((host, port), family=family, backlog=64)
        self._listener.settimeout(0.2)  # so the accept loop notices close()
        bound = self._listener.getsockname()
        self.address = format_address(str(bound[0]), int(bound[1]))
        self._stop = threading.Event()
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> PeerServer:
        """Serve on a background thread; returns at once."""
        self._thread = threading.Thread(
            target=self.serve_forever, name="baige-peer-server", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        log.info(
            "baige-peer server on %s: at most %d snapshots per rank, %.1f MiB in all",
            self.address,
            self.store.max_snapshots,
            self.store.max_bytes / _MIB,
        )
        while not self._stop.is_set():
            try:
                sock, addr = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set():
                    break
                raise
            with self._conns_lock:
                busy = len(self._conns) >= self.max_connections
                if not busy:
                    self._conns.add(sock)
            if busy:
                log.warning("refusing %s: %d connections already", addr, self.max_connections)
                sock.close()
                continue
            threading.Thread(
                target=self._serve, args=(sock, addr), name="baige-peer-conn", daemon=True
            ).start()

    def close(self) -> None:
        """Stop accepting, cut every connection (half-received snapshots are dropped)."""
        self._stop.set()
        self._listener.close()
        with self._conns_lock:
            conns = list(self._conns)
        for sock in conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> PeerServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ one connection

    def _serve(self, sock: socket.socket, addr: Any) -> None:
        peer = format_address(str(addr[0]), int(addr[1]))
        sock.settimeout(self.idle_timeout_s)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ch = Channel(sock, "server", peer)
        job = "?"
        try:
            job = self._handshake(ch)
            while True:
                frame = ch.recv([Msg.BEGIN, Msg.FETCH, Msg.LIST, Msg.STATS], eof_ok=True)
                if frame is None:
                    return
                if frame.type == Msg.BEGIN:
                    if not self._receive(ch, job, frame):
                        return
                elif frame.type == Msg.FETCH:
                    self._send(ch, job, frame)
                elif frame.type == Msg.LIST:
                    rank = get_opt_int(frame.header, "rank", 0, 1 << 24)
                    ch.send(Msg.OK, {"snapshots": self.store.list(job, rank)[-_LIST_MAX:]})
                else:
                    ch.send(Msg.OK, self.store.stats())
        except PeerAuthError as exc:
            log.warning("closing connection from %s (job %s): %s", peer, job, exc)
            with contextlib.suppress(OSError, PeerError):
                ch.send(Msg.ERROR, {"reason": "authentication failed"}, unauthenticated=True)
        except StoreFull as exc:
            log.warning("refusing a push from %s: %s", peer, exc)
            with contextlib.suppress(OSError, PeerError):
                ch.send(Msg.ERROR, {"reason": str(exc)})
        except PeerError as exc:
            log.warning("closing connection from %s (job %s): %s", peer, job, exc)
            with contextlib.suppress(OSError, PeerError):
                ch.send(Msg.ERROR, {"reason": str(exc)[: MAX_HEADER // 2]})
        except TimeoutError:
            log.warning(
                "closing connection from %s (job %s): silent for %.0f s",
                peer,
                job,
                self.idle_timeout_s,
            )
        except OSError as exc:
            if not self._stop.is_set():
                log.info("connection from %s (job %s) lost: %s", peer, job, exc)
        finally:
            with self._conns_lock:
                self._conns.discard(sock)
            sock.close()

    def _handshake(self, ch: Channel) -> str:
        nonce = new_nonce()
        ch.send(Msg.CHALLENGE, {"nonce": nonce.hex()})
        jobs: list[str] = []

        def derive(header: dict[str, Any]) -> bytes:
            job = get_str(header, "job")
            jobs.append(job)
            return session_key(self.secret, nonce, get_nonce(header), job)

        try:
            ch.recv([Msg.HELLO], derive_key=derive)
        except PeerAuthError:
            raise PeerAuthError(
                f"authentication failed for job {jobs[0] if jobs else '?'} (wrong secret?)"
            ) from None
        ch.send(
            Msg.WELCOME,
            {"max_bytes": self.store.max_bytes, "max_snapshots": self.store.max_snapshots},
        )
        return jobs[0]

    def _receive(self, ch: Channel, job: str, begin: Frame) -> bool:
        """One push: reserve, acknowledge, receive every shard, verify, commit. Returns
        whether the connection may carry another request."""
        meta = SnapshotMeta.from_json(job, begin.header, self.store.max_bytes)
        res = self.store.reserve(meta)
        started = time.monotonic()
        try:
            buffer = mmap.mmap(-1, max(1, meta.total))
            with _view(buffer) as view:
                rx = ShardReceiver(meta, view[: meta.total])
                ch.send(Msg.OK, {"reserved": meta.total})
                while True:
                    frame = ch.recv([Msg.DATA, Msg.END, Msg.ABORT], rx.sink)
                    assert frame is not None
                    if frame.type == Msg.DATA:
                        rx.received()
                    elif frame.type == Msg.ABORT:
                        log.info(
                            "%s: push of %s abandoned by the client: %s",
                            ch.peer,
                            _name(meta),
                            str(frame.header.get("reason", "?"))[:200],
                        )
                        return False
                    else:
                        rx.finish()
                        break
                del rx
            evicted = self.store.commit(res, meta, buffer)
        finally:
            self.store.release(res)
        elapsed = time.monotonic() - started
        log.info(
            "stored %s (%.1f MiB, %d shards verified) from %s in %.2f s%s; %s",
            _name(meta),
            meta.total / _MIB,
            len(meta.shards),
            ch.peer,
            elapsed,
            f"; evicted steps {[e.meta.step for e in evicted]}" if evicted else "",
            self.store.summary(),
        )
        ch.send(Msg.OK, {"stored": meta.step, "stats": _small(self.store.stats())})
        return True

    def _send(self, ch: Channel, job: str, frame: Frame) -> None:
        rank = get_opt_int(frame.header, "rank", 0, 1 << 24)
        if rank is None:
            raise PeerProtocolError("FETCH needs a rank")
        step = get_opt_int(frame.header, "step", 0, (1 << 63) - 1)
        timeline = get_opt_str(frame.header, "timeline", 128)
        entry = self.store.get(job, rank, step, timeline)
        if entry is None:
            ch.send(Msg.OK, {"found": False})
            return
        with _view(entry.buffer) as view:
            parts = tuple(
                view[start : start + spec.length]
                for start, spec in zip(entry.meta.offsets(), entry.meta.shards, strict=True)
            )
            ch.send(Msg.BEGIN, entry.meta.to_json())
            send_snapshot(ch, Snapshot(entry.meta, parts))
            del parts
        log.info("sent %s to %s", _name(entry.meta), ch.peer)


def _small(stats: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in stats.items() if k not in ("ranks", "truncated")}


@contextlib.contextmanager
def _view(buffer: mmap.mmap) -> Iterator[memoryview]:
    view = memoryview(buffer)
    try:
        yield view
    finally:
        view.release()


def parse_bytes(text: str) -> int:
    """``1073741824``, ``512M``, ``4G``, ``1.5GiB`` -> bytes (powers of 1024)."""
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    scale = 1
    if t and t[-1] in "KMGT":
        scale = 1 << (10 * ("KMGT".index(t[-1]) + 1))
        t = t[:-1]
    try:
        value = int(float(t) * scale)
    except ValueError:
        raise ValueError(f"not a size: {text!r}") from None
    if value <= 0:
        raise ValueError(f"size must be positive: {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m baige.ckpt.peer_server",
        description="Hold other nodes' checkpoint snapshots in this node's memory.",
    )
    parser.add_argument("--bind", required=True, help="HOST:PORT on the job's interface")
    parser.add_argument("--secret-file", required=True, help="the job's secret")
    parser.add_argument("--max-snapshots", type=int, default=2, help="kept per (job, rank)")
    parser.add_argument("--max-bytes", type=parse_bytes, required=True, help="e.g. 64G")
    parser.add_argument("--idle-timeout", type=float, default=30.0)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s baige-peer %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    try:
        server = PeerServer(
            args.bind,
            read_secret(args.secret_file),
            max_snapshots=args.max_snapshots,
            max_bytes=args.max_bytes,
            idle_timeout_s=args.idle_timeout,
        )
    except (PeerError, OSError, ValueError) as exc:
        print(f"baige-peer: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: server._stop.set())
    print(f"listening on {server.address}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        log.info("stopped; %s", server.store.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
