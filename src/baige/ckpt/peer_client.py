"""The client side of peer-memory checkpoints: push snapshots to a buddy, fetch them back.

Why: a lost node takes its shared memory with it, and reading a large state back from
shared storage can take longer than the fault itself. Each rank's persister pushes every
step it has persisted to a buddy node (``peer_server``) in another failure domain
(``peer_topology.choose_buddy``); a rank restarted on a new node fetches its newest step
from there at network speed, and ``Checkpointer.load`` says ``source="buddy"``.

What is pushed is exactly what the shared-memory slot holds (``image``: the safetensors
image of the tensors; ``pkl``: the pickled structure), with the CRC-32s the persister
computed while writing them to disk. A fetched snapshot lands in one anonymous mapping laid
out like a slot, with a ``SlotRecord`` describing it, so it is restored by the very code
that restores a local slot (``restore.read_slot``), checking the same CRCs beside the copy.

The push runs on a background thread (``PeerPusher``) with a bounded queue: it never
blocks the persister, let alone the training step; when the buddy is slower than the
saves, the oldest pending push is dropped (and counted). The slot is read in place, not
copied: the trainer may overwrite it with a newer save while it is sent, so the slot's
control record is checked before END, and a push whose source changed is abandoned
(ABORT) rather than committed; the server's CRC check catches the same thing
independently. Every network operation has a timeout, so a dead or hung buddy costs a
fetch a few seconds, never a hang.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import mmap
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from baige.ckpt.control import SlotRecord
from baige.ckpt.peer_protocol import (
    Channel,
    Msg,
    PeerError,
    ShardReceiver,
    ShardSpec,
    Snapshot,
    SnapshotMeta,
    get_nonce,
    get_str,
    new_nonce,
    parse_address,
    read_secret,
    send_snapshot,
    session_key,
)
from baige.ckpt.shm import RankFiles, read_control

__all__ = [
    "IMAGE",
    "PKL",
    "BuddySource",
    "Fetched",
    "PeerClient",
    "PeerConfig",
    "PeerPusher",
    "PushAborted",
    "PushStats",
    "slot_record",
    "slot_snapshot",
]

log = logging.getLogger("baige.ckpt.peer")

IMAGE = "image"
PKL = "pkl"
_MIB = 1 << 20
DEFAULT_MAX_FETCH = 1 << 40  # what a fetch accepts a buddy to announce, before allocating


class PushAborted(PeerError):
    """The snapshot's source changed before it was fully sent; nothing was stored."""


# What ``baige run --peer-*`` sets for its workers (read by ``PeerConfig.from_env``).
ENV_PEER_JOB = "BAIGE_PEER_JOB"
ENV_PEER_SECRET_FILE = "BAIGE_PEER_SECRET_FILE"
ENV_PEER_BUDDY = "BAIGE_PEER_BUDDY"
ENV_PEER_FETCH_FROM = "BAIGE_PEER_FETCH_FROM"
ENV_PEER_SOURCE_HOST = "BAIGE_PEER_SOURCE_HOST"
# what the control plane hands `baige run` besides BUDDY and FETCH_FROM: where this node's
# buddy server listens, and the job's secret (moved into a file before any worker starts)
ENV_PEER_BIND = "BAIGE_PEER_BIND"
ENV_PEER_SECRET = "BAIGE_PEER_SECRET"


@dataclass(frozen=True)
class PeerConfig:
    """Where a rank's snapshots go and where a restarted rank looks for them.

    ``buddy``: the server (``HOST:PORT``) this rank pushes to, None to push nowhere.
    ``fallbacks``: the servers pushed to, in order, while the buddy cannot be reached (its
    node was the one lost): the first that takes a push stays the buddy from then on.
    ``fetch_from``: the servers a restarting rank asks, newest step wins (default: the
    buddy); after a node loss the launcher lists the buddy of the node the rank ran on.
    ``secret_file``: the job's secret (the file, never the secret, crosses processes).
    ``source_host``: the local address on the job's network to connect from.
    ``queue``: pushes waiting behind the one in flight before the oldest is dropped."""

    job: str
    secret_file: str
    buddy: str | None = None
    fetch_from: tuple[str, ...] = ()
    source_host: str | None = None
    fallbacks: tuple[str, ...] = ()
    timeout_s: float = 10.0
    connect_timeout_s: float = 2.0
    queue: int = 2

    def __post_init__(self) -> None:
        get_str({"job": self.job}, "job")
        for address in (*([self.buddy] if self.buddy else []), *self.fetch_from, *self.fallbacks):
            parse_address(address)
        if self.fallbacks and not self.buddy:
            raise ValueError("fallback buddies need a buddy")
        if self.queue < 1:
            raise ValueError(f"queue must be >= 1, got {self.queue}")
        if self.timeout_s <= 0 or self.connect_timeout_s <= 0:
            raise ValueError("timeouts must be positive")

    @property
    def sources(self) -> tuple[str, ...]:
        return self.fetch_from or ((self.buddy,) if self.buddy else ())

    def client(self, address: str, secret: bytes) -> PeerClient:
        return PeerClient(
            address,
            secret,
            timeout_s=self.timeout_s,
            connect_timeout_s=self.connect_timeout_s,
            source_host=self.source_host,
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PeerConfig | None:
        """The peer settings ``baige run --peer-*`` hands its workers, or None when the run
        has none (no ``BAIGE_PEER_SECRET_FILE``): so a script's plain ``Checkpointer(dir)``
        replicates to the buddy under ``baige run`` without a line of its own."""
        env = os.environ if environ is None else environ
        secret = env.get(ENV_PEER_SECRET_FILE)
        if not secret:
            return None
        job = env.get(ENV_PEER_JOB) or env.get("BAIGE_WORKLOAD_ID") or env.get("BAIGE_RUN_ID")
        if not job:
            raise ValueError(f"{ENV_PEER_SECRET_FILE} is set but {ENV_PEER_JOB} is not")
        fetch = tuple(a for a in env.get(ENV_PEER_FETCH_FROM, "").split(",") if a)
        # BUDDY: the buddy, then its fallbacks, comma-separated
        buddies = [a for a in env.get(ENV_PEER_BUDDY, "").split(",") if a]
        try:
            return cls(
                job=job,
                secret_file=secret,
                buddy=buddies[0] if buddies else None,
                fallbacks=tuple(buddies[1:]),
                fetch_from=fetch,
                source_host=env.get(ENV_PEER_SOURCE_HOST) or None,
            )
        except (PeerError, ValueError) as exc:
            raise ValueError(f"the BAIGE_PEER_* settings: {exc}") from None

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> PeerConfig:
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError("peer config must be a JSON object")
        raw["fetch_from"] = tuple(raw.get("fetch_from") or ())
        raw["fallbacks"] = tuple(raw.get("fallbacks") or ())
        return cls(**raw)


@dataclass(frozen=True)
class Fetched:
    """A snapshot fetched from a buddy: its shards back to back in ``buffer``."""

    meta: SnapshotMeta
    buffer: mmap.mmap
    address: str
    seconds: float

    def shard(self, name: str) -> memoryview:
        for start, spec in zip(self.meta.offsets(), self.meta.shards, strict=True):
            if spec.name == name:
                return memoryview(self.buffer)[start : start + spec.length]
        raise KeyError(name)


class PeerClient:
    """Talks to one buddy server. Each call opens its own authenticated connection (one
    round trip of handshake, nothing beside a multi-megabyte transfer), so a failure never
    leaves a half-used connection behind. Calls raise ``PeerError`` except ``fetch``,
    which returns None and logs why, because its caller always has a fallback."""

    def __init__(
        self,
        address: str,
        secret: bytes,
        *,
        timeout_s: float = 10.0,
        connect_timeout_s: float = 2.0,
        source_host: str | None = None,
    ) -> None:
        self.address = address
        self.host, self.port = parse_address(address)
        self.secret = secret
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.source_host = source_host

    @contextlib.contextmanager
    def session(self, job: str) -> Iterator[Channel]:
        """An authenticated connection for ``job``; network failures become PeerError."""
        get_str({"job": job}, "job")
        source = (self.source_host, 0) if self.source_host else None
        try:
            sock = socket.create_connection(
                (self.host, self.port), timeout=self.connect_timeout_s, source_address=source
            )
        except OSError as exc:
            raise PeerError(f"buddy {self.address} unreachable: {exc}") from None
        try:
            sock.settimeout(self.timeout_s)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            ch = Channel(sock, "client", f"buddy {self.address}")
            challenge = ch.recv([Msg.CHALLENGE])
            assert challenge is not None
            mine = new_nonce()
            ch.key = session_key(self.secret, get_nonce(challenge.header), mine, job)
            ch.send(Msg.HELLO, {"job": job, "nonce": mine.hex()})
            ch.recv([Msg.WELCOME])
            yield ch
        except TimeoutError:
            raise PeerError(
                f"buddy {self.address} did not answer within {self.timeout_s:g} s"
            ) from None
        except OSError as exc:
            raise PeerError(f"connection to buddy {self.address} failed: {exc}") from None
        finally:
            sock.close()

    def push(self, snap: Snapshot, still_valid: Callable[[], bool] | None = None) -> dict[str, Any]:
        """Send a snapshot and wait until the buddy has verified and committed it; returns
        the buddy's reply (its memory figures). ``still_valid`` is asked before END: False
        abandons the push (PushAborted) and the buddy keeps what it had."""
        if still_valid is not None and not still_valid():
            raise PushAborted(f"step {snap.meta.step} was overwritten before it was pushed")
        with self.session(snap.meta.job) as ch:
            ch.send(Msg.BEGIN, snap.meta.to_json())
            ch.recv([Msg.OK])
            try:
                complete = send_snapshot(ch, snap, still_valid)
            except OSError as exc:  # the buddy hung up: it usually said why first
                raise PeerError(self._reason(ch) or f"sending to {self.address}: {exc}") from None
            if not complete:
                raise PushAborted(f"step {snap.meta.step} was overwritten while it was pushed")
            reply = ch.recv([Msg.OK])
            assert reply is not None
            return reply.header

    def _reason(self, ch: Channel) -> str | None:
        """The ERROR the server sent before closing, if it can still be read."""
        try:
            ch.sock.settimeout(1.0)
            ch.recv([])
        except PeerError as exc:
            return str(exc)
        except OSError:
            return None
        return None

    def fetch(
        self,
        job: str,
        rank: int,
        step: int | None = None,
        timeline: str | None = None,
        *,
        verify: bool = True,
        max_bytes: int = DEFAULT_MAX_FETCH,
    ) -> Fetched | None:
        """The buddy's newest snapshot of (job, rank), or of ``step`` (and ``timeline``);
        None if it has none, is unreachable, too slow, or sends anything that fails a
        check (logged). ``verify=False`` skips the CRC check for a caller that checks the
        same CRCs itself (``restore.read_slot``); the HMAC still authenticates every
        byte."""
        started = time.monotonic()
        what = f"{job} rank {rank}" + (f" step {step}" if step is not None else "")
        try:
            with self.session(job) as ch:
                ch.send(Msg.FETCH, {"rank": rank, "step": step, "timeline": timeline})
                first = ch.recv([Msg.OK, Msg.BEGIN])
                assert first is not None
                if first.type == Msg.OK:
                    log.info("buddy %s holds no snapshot of %s", self.address, what)
                    return None
                meta = SnapshotMeta.from_json(job, first.header, max_bytes)
                if meta.rank != rank or (step is not None and meta.step != step):
                    raise PeerError(f"asked for {what}, got rank {meta.rank} step {meta.step}")
                buffer = mmap.mmap(-1, max(1, meta.total))
                with memoryview(buffer) as view:
                    rx = ShardReceiver(meta, view[: meta.total], verify=verify)
                    while True:
                        frame = ch.recv([Msg.DATA, Msg.END], rx.sink)
                        assert frame is not None
                        if frame.type == Msg.END:
                            rx.finish()
                            break
                        rx.received()
                    del rx
        except PeerError as exc:
            log.warning("fetching %s from buddy %s failed: %s", what, self.address, exc)
            return None
        elapsed = time.monotonic() - started
        log.info(
            "fetched %s step %d (%.1f MiB) from buddy %s in %.2f s",
            what,
            meta.step,
            meta.total / _MIB,
            self.address,
            elapsed,
        )
        return Fetched(meta, buffer, self.address, elapsed)

    def list(self, job: str, rank: int | None = None) -> list[dict[str, Any]]:
        """What the buddy holds for ``job`` (one rank, or all), oldest first."""
        with self.session(job) as ch:
            ch.send(Msg.LIST, {"rank": rank})
            reply = ch.recv([Msg.OK])
            assert reply is not None
        items = reply.header.get("snapshots")
        if not isinstance(items, list):
            raise PeerError(f"buddy {self.address}: LIST reply without snapshots")
        return [i for i in items if isinstance(i, dict)]

    def stats(self, job: str) -> dict[str, Any]:
        """The buddy's memory figures: bytes held, being received, the limits, per rank."""
        with self.session(job) as ch:
            ch.send(Msg.STATS)
            reply = ch.recv([Msg.OK])
            assert reply is not None
        return reply.header


@dataclass
class PushStats:
    """What a ``PeerPusher`` did: pushes committed by the buddy, dropped from the queue
    (the buddy was slower than the saves), abandoned (the slot was overwritten), failed."""

    pushed: int = 0
    dropped: int = 0
    aborted: int = 0
    failed: int = 0
    bytes: int = 0
    last_step: int | None = None
    last_seconds: float = 0.0
    last_error: str | None = None
    buddy_used_bytes: int | None = None


_Item = tuple[Snapshot, Callable[[], bool] | None]


class PeerPusher:
    """Pushes snapshots to one buddy on a background thread. ``push`` never blocks: it
    queues (at most ``queue`` waiting; beyond that the oldest waiting one is dropped) and
    returns. Snapshots are sent in the order they were queued, so the buddy's newest is
    the newest save. A push the buddy does not take goes to the ``fallbacks`` in turn; the
    first that takes it is the buddy from then on (the first buddy's node may be the one
    that was lost, and a rank restarting elsewhere asks every server of the job)."""

    def __init__(
        self, client: PeerClient, queue: int = 2, fallbacks: tuple[PeerClient, ...] = ()
    ) -> None:
        self.client = client
        self._candidates = (client, *fallbacks)
        self.stats = PushStats()
        self._queue: collections.deque[_Item] = collections.deque()
        self._limit = queue
        self._cond = threading.Condition()
        self._closed = False
        self._busy = False
        self._thread = threading.Thread(target=self._run, name="baige-peer-push", daemon=True)
        self._thread.start()

    def push(self, snap: Snapshot, still_valid: Callable[[], bool] | None = None) -> None:
        with self._cond:
            if self._closed:
                return
            if len(self._queue) >= self._limit:
                old, _ = self._queue.popleft()
                self.stats.dropped += 1
                log.warning(
                    "buddy %s is slower than the saves: step %d not pushed (replaced by %d)",
                    self.client.address,
                    old.meta.step,
                    snap.meta.step,
                )
            self._queue.append((snap, still_valid))
            self._cond.notify()

    def idle(self) -> bool:
        with self._cond:
            return not self._queue and not self._busy

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the queue to drain; whether it did."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self, wait_s: float = 0.0) -> None:
        """Stop after the push in flight (waiting at most ``wait_s``); drop the rest."""
        self.flush(wait_s)
        with self._cond:
            self._closed = True
            self.stats.dropped += len(self._queue)
            self._queue.clear()
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                snap, still_valid = self._queue.popleft()
                self._busy = True
            try:
                self._push_one(snap, still_valid)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _push_with_fallbacks(
        self, snap: Snapshot, still_valid: Callable[[], bool] | None
    ) -> dict[str, Any]:
        """Push to the buddy, else to each fallback in turn (the one that takes it becomes
        the buddy); raises the last PeerError when none does."""
        first = self._candidates.index(self.client)
        order = self._candidates[first:] + self._candidates[:first]
        for i, client in enumerate(order):
            try:
                reply = client.push(snap, still_valid)
            except PushAborted:  # the source changed: no other buddy would fare better
                raise
            except PeerError as exc:
                if i + 1 == len(order):
                    raise
                log.warning(
                    "buddy %s did not take step %d (%s); pushing to %s",
                    client.address,
                    snap.meta.step,
                    exc,
                    order[i + 1].address,
                )
                continue
            if client is not self.client:
                log.warning("buddy is now %s (was %s)", client.address, self.client.address)
                self.client = client
            return reply
        raise AssertionError("unreachable: at least one candidate")

    def _push_one(self, snap: Snapshot, still_valid: Callable[[], bool] | None) -> None:
        meta = snap.meta
        started = time.monotonic()
        try:
            reply = self._push_with_fallbacks(snap, still_valid)
        except PushAborted as exc:
            self.stats.aborted += 1
            log.info("not pushing to buddy %s: %s", self.client.address, exc)
            return
        except PeerError as exc:
            self.stats.failed += 1
            self.stats.last_error = str(exc)
            log.warning("pushing step %d to buddy failed: %s", meta.step, exc)
            return
        except Exception as exc:  # a bug must not kill the thread and silently stop pushes
            self.stats.failed += 1
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("pushing step %d to buddy %s failed", meta.step, self.client.address)
            return
        elapsed = time.monotonic() - started
        buddy = reply.get("stats") if isinstance(reply.get("stats"), dict) else {}
        used = buddy.get("used_bytes") if isinstance(buddy, dict) else None
        self.stats.pushed += 1
        self.stats.bytes += meta.total
        self.stats.last_step = meta.step
        self.stats.last_seconds = elapsed
        self.stats.buddy_used_bytes = used if isinstance(used, int) else None
        log.info(
            "pushed step %d (%.1f MiB) to buddy %s in %.2f s (%.0f MB/s); buddy holds %s "
            "of %s MiB; %d pushed, %d dropped, %d abandoned, %d failed",
            meta.step,
            meta.total / _MIB,
            self.client.address,
            elapsed,
            meta.total / max(elapsed, 1e-9) / 1e6,
            f"{used / _MIB:.1f}" if isinstance(used, int) else "?",
            f"{buddy.get('max_bytes', 0) / _MIB:.1f}" if isinstance(buddy, dict) else "?",
            self.stats.pushed,
            self.stats.dropped,
            self.stats.aborted,
            self.stats.failed,
        )


# ---------------------------------------------------------------------- slots <-> snapshots


def slot_snapshot(
    files: RankFiles, index: int, rec: SlotRecord, job: str
) -> tuple[Snapshot, Callable[[], bool]] | None:
    """A persisted shared-memory slot as a snapshot to push, read in place, and the check
    that it still holds that save. None if the slot has no CRCs yet (not persisted) or is
    gone (freed)."""
    if rec.crc_image is None or rec.crc_pkl is None or rec.state != "ready":
        return None
    total = rec.image_len + rec.pkl_len
    try:
        with open(files.slot(index), "rb") as f:
            mm = mmap.mmap(f.fileno(), max(1, total), prot=mmap.PROT_READ)
    except (OSError, ValueError) as exc:
        log.info("slot %d of rank %d is gone (%s); not pushing it", index, files.rank, exc)
        return None
    view = memoryview(mm)
    meta = SnapshotMeta(
        job=job,
        rank=files.rank,
        step=rec.step,
        seq=rec.seq,
        world_size=rec.world_size,
        timeline=rec.timeline,
        shards=(
            ShardSpec(IMAGE, rec.image_len, rec.crc_image),
            ShardSpec(PKL, rec.pkl_len, rec.crc_pkl),
        ),
    )
    snap = Snapshot(meta, (view[: rec.image_len], view[rec.image_len : total]))

    def still_valid() -> bool:
        # The trainer marks a slot "writing" with a new seq (under its lock, replacing the
        # record atomically) before it touches a byte, so an unchanged record means the
        # bytes sent were the persisted ones. Read without the lock: taking it would
        # recreate the runtime folder after the persister freed it.
        try:
            ctl = read_control(files.control)
        except (OSError, ValueError):
            return False
        now = ctl.slots[index] if ctl is not None else None
        return now is not None and now.state == "ready" and now.seq == rec.seq

    return snap, still_valid


def slot_record(meta: SnapshotMeta, capacity: int) -> SlotRecord:
    """The slot record describing a fetched snapshot (``image`` then ``pkl``, back to back,
    as in a slot), with the CRCs the persister computed, for ``restore.read_slot``."""
    names = [s.name for s in meta.shards]
    if names != [IMAGE, PKL]:
        raise PeerError(f"a checkpoint snapshot has shards {IMAGE!r} and {PKL!r}, got {names}")
    image, pkl = meta.shards
    return SlotRecord(
        state="ready",
        seq=meta.seq,
        step=meta.step,
        capacity=capacity,
        image_len=image.length,
        pkl_len=pkl.length,
        world_size=meta.world_size,
        timeline=meta.timeline,
        crc_image=image.crc32,
        crc_pkl=pkl.crc32,
    )


class BuddySource:
    """What ``Checkpointer.load`` asks of the buddies: which steps they hold for this rank,
    and one of them, as a slot record and a mapping that ``read_slot`` restores."""

    def __init__(self, config: PeerConfig, rank: int) -> None:
        self.config = config
        self.rank = rank
        self._where: dict[tuple[int, str], str] = {}
        self._secret: bytes | None = None

    def _client(self, address: str) -> PeerClient | None:
        if self._secret is None:
            try:
                self._secret = read_secret(self.config.secret_file)
            except PeerError as exc:
                log.warning("not asking buddies: %s", exc)
                return None
        return self.config.client(address, self._secret)

    def available(self) -> set[tuple[int, str]]:
        """The (step, timeline) pairs some buddy holds for this rank; an unreachable buddy
        is logged and holds nothing."""
        self._where.clear()
        sources = self.config.sources
        if not sources or self._client(sources[0]) is None:  # no secret: ask nobody
            return set()

        def ask(address: str) -> list[dict[str, Any]]:
            client = self._client(address)
            assert client is not None
            try:
                return client.list(self.config.job, self.rank)
            except PeerError as exc:
                log.warning("rank %d: not restoring from buddy %s: %s", self.rank, address, exc)
                return []

        # every server of a large job is asked at once: a dead one costs its timeout once
        with ThreadPoolExecutor(max_workers=min(32, len(sources))) as pool:
            answers = list(pool.map(ask, sources))
        for address, items in zip(sources, answers, strict=True):
            for item in items:
                step, timeline = item.get("step"), item.get("timeline")
                if isinstance(step, int) and isinstance(timeline, str):
                    self._where.setdefault((step, timeline), address)
        return set(self._where)

    def fetch(self, step: int, timeline: str) -> tuple[SlotRecord, mmap.mmap, str]:
        """That step from the buddy that listed it; raises PeerError saying why not."""
        address = self._where.get((step, timeline))
        client = self._client(address) if address is not None else None
        if address is None or client is None:
            raise PeerError(f"no buddy holds step {step}")
        # read_slot checks the same CRCs beside its copy: no need to check them twice.
        got = client.fetch(self.config.job, self.rank, step, timeline, verify=False)
        if got is None:
            raise PeerError(f"buddy {address} did not deliver step {step} (see the log)")
        return slot_record(got.meta, len(got.buffer)), got.buffer, address
