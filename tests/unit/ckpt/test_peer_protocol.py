"""The peer wire format and the buddy server, in one process (the server on a thread):
round trips, CRC and HMAC rejections, truncated and malformed streams, the memory bounds,
and the background pusher. Real sockets on 127.0.0.1, small payloads."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from baige.ckpt.checksum import crc32
from baige.ckpt.control import Control, SlotRecord
from baige.ckpt.peer_client import (
    BuddySource,
    PeerClient,
    PeerConfig,
    PeerPusher,
    PushAborted,
    slot_record,
    slot_snapshot,
)
from baige.ckpt.peer_protocol import (
    MAX_HEADER,
    PREFIX,
    Channel,
    Msg,
    PeerAuthError,
    PeerError,
    PeerProtocolError,
    ShardSpec,
    Snapshot,
    SnapshotMeta,
    get_nonce,
    new_nonce,
    parse_address,
    read_secret,
    session_key,
)
from baige.ckpt.peer_server import PeerServer, parse_bytes
from baige.ckpt.shm import RankFiles, write_control

SECRET = b"0123456789abcdef-job-secret"
JOB = "job-42"


def snapshot(step: int, size: int = 100_000, rank: int = 0, seed: int = 0) -> Snapshot:
    image = bytes((i * 7 + step + seed) % 251 for i in range(size))
    pkl = f"structure of step {step}".encode()
    meta = SnapshotMeta(
        JOB, rank, step, step, 1, "root",
        (ShardSpec("image", len(image), crc32(image)), ShardSpec("pkl", len(pkl), crc32(pkl))),
    )  # fmt: skip
    return Snapshot(meta, (image, pkl))


def part(snap: Snapshot, i: int) -> bytes:
    return bytes(snap.parts[i])


@pytest.fixture
def server() -> Iterator[PeerServer]:
    srv = PeerServer(
        "127.0.0.1:0", SECRET, max_snapshots=2, max_bytes=1 << 20, idle_timeout_s=5
    ).start()
    yield srv
    srv.close()


def client(srv: PeerServer, secret: bytes = SECRET, timeout_s: float = 5.0) -> PeerClient:
    return PeerClient(srv.address, secret, timeout_s=timeout_s, connect_timeout_s=2.0)


def steps(srv: PeerServer, rank: int = 0) -> list[int]:
    return [s["step"] for s in client(srv).list(JOB, rank)]


def wait_until(predicate: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def raw_session(srv: PeerServer, secret: bytes = SECRET) -> Channel:
    """A hand-driven, authenticated client connection, to send what a client never would."""
    sock = socket.create_connection(parse_address(srv.address), timeout=5)
    ch = Channel(sock, "client", "test")
    challenge = ch.recv([Msg.CHALLENGE])
    assert challenge is not None
    mine = new_nonce()
    ch.key = session_key(secret, get_nonce(challenge.header), mine, JOB)
    ch.send(Msg.HELLO, {"job": JOB, "nonce": mine.hex()})
    ch.recv([Msg.WELCOME])
    return ch


def closed_by_server(ch: Channel) -> str:
    """Read until the server hangs up; return the reason it gave."""
    try:
        ch.recv([Msg.OK])
    except PeerError as exc:
        return str(exc)
    except OSError as exc:
        return f"reset: {exc}"
    finally:
        ch.sock.close()
    return "no error"


# ---------------------------------------------------------------------- round trips


def test_push_fetch_round_trip_is_bit_identical(server: PeerServer) -> None:
    snap = snapshot(5, size=3 * (8 << 20) // 2)  # 12 MiB: two DATA frames for the image
    server.store.max_bytes = 64 << 20
    reply = client(server).push(snap)
    assert reply["stored"] == 5 and reply["stats"]["used_bytes"] == snap.meta.total
    got = client(server).fetch(JOB, 0)
    assert got is not None and got.meta == snap.meta
    assert bytes(got.shard("image")) == part(snap, 0)
    assert bytes(got.shard("pkl")) == part(snap, 1)
    stats = client(server).stats(JOB)
    assert stats["snapshots"] == 1 and stats["receiving_bytes"] == 0
    assert stats["ranks"] == [
        {"job": JOB, "rank": 0, "snapshots": 1, "bytes": snap.meta.total, "steps": [5]}
    ]
    # A fetched checkpoint snapshot is described exactly like the slot it came from.
    rec = slot_record(got.meta, len(got.buffer))
    assert (rec.step, rec.image_len, rec.pkl_len) == (5, len(part(snap, 0)), len(part(snap, 1)))
    assert rec.crc_image == crc32(part(snap, 0)) and rec.state == "ready"


def test_fetch_by_step_and_nothing_for_other_jobs_or_ranks(server: PeerServer) -> None:
    c = client(server)
    c.push(snapshot(1))
    c.push(snapshot(2))
    got = c.fetch(JOB, 0, step=1)
    assert got is not None and got.meta.step == 1
    assert c.fetch(JOB, 0).meta.step == 2  # type: ignore[union-attr]
    assert c.fetch(JOB, 1) is None
    assert c.fetch("other-job", 0) is None
    assert c.fetch(JOB, 0, step=3) is None


def test_frames_round_trip_and_any_tampering_is_refused() -> None:
    a, b = socket.socketpair()
    tx, rx = Channel(a, "client", "a"), Channel(b, "server", "b")
    tx.key = rx.key = b"k" * 32
    tx.send(Msg.LIST, {"rank": 3})
    frame = rx.recv([Msg.LIST])
    assert frame is not None and frame.header == {"rank": 3}
    # one flipped bit anywhere in a frame fails its HMAC
    tx.key = b"x" * 32
    tx.send(Msg.LIST, {"rank": 3})
    with pytest.raises(PeerAuthError, match="HMAC"):
        rx.recv([Msg.LIST])
    # the same bytes sent again (a replay) have the wrong sequence number
    c, d = socket.socketpair()
    tx, rx = Channel(c, "client", "c"), Channel(d, "server", "d")
    tx.key = rx.key = b"k" * 32
    tx.send(Msg.STATS)
    rx.recv([Msg.STATS])
    tx.sent = 0
    tx.send(Msg.STATS)
    with pytest.raises(PeerProtocolError, match="seq 0, expected 1"):
        rx.recv([Msg.STATS])
    # a frame reflected back at its sender fails too (direction is in the MAC)
    e, f = socket.socketpair()
    srv = Channel(e, "server", "e")
    srv.key = b"k" * 32
    srv.send(Msg.STATS)
    mirror = Channel(f, "server", "f")
    mirror.key = b"k" * 32
    with pytest.raises(PeerAuthError):
        mirror.recv([Msg.STATS])
    for s in (a, b, c, d, e, f):
        s.close()


@pytest.mark.parametrize(
    ("prefix", "header", "match"),
    [
        (PREFIX.pack(b"HTTP", 1, 9, 0, 0, 0, 0), b"", "bad magic"),
        (PREFIX.pack(b"BGPF", 2, 9, 0, 0, 0, 0), b"", "version 2; this side speaks 1"),
        (PREFIX.pack(b"BGPF", 1, 99, 0, 0, 0, 0), b"", "unknown message type"),
        (PREFIX.pack(b"BGPF", 1, 9, 1, 0, 0, 0), b"", "reserved flags"),
        (PREFIX.pack(b"BGPF", 1, 9, 0, MAX_HEADER + 1, 0, 0), b"", "header of"),
        (PREFIX.pack(b"BGPF", 1, 9, 0, 0, 1 << 40, 0), b"", "payload of"),
        (PREFIX.pack(b"BGPF", 1, 9, 0, 3, 0, 0), b"[1]", "not a JSON object"),
        (PREFIX.pack(b"BGPF", 1, 9, 0, 3, 0, 0), b"\xff\xfe{", "not valid UTF-8 JSON"),
        (PREFIX.pack(b"BGPF", 1, 9, 0, 12, 0, 0), b'{"rank":NaN}', "not valid"),
        (PREFIX.pack(b"BGPF", 1, 9, 0, 0, 5, 0), b"", "unexpected bytes"),
        (PREFIX.pack(b"BGPF", 1, 4, 0, 0, 0, 0), b"", "unexpected BEGIN"),
    ],
)
def test_malformed_frames_are_refused_with_a_reason(
    prefix: bytes, header: bytes, match: str
) -> None:
    a, b = socket.socketpair()
    rx = Channel(b, "server", "peer")
    a.sendall(prefix + header + bytes(64))
    with pytest.raises(PeerProtocolError, match=match):
        rx.recv([Msg.LIST])
    a.close()
    b.close()


def test_malformed_requests_close_the_connection_and_are_logged(
    server: PeerServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "baige.ckpt.peer")
    ch = raw_session(server)
    ch.send(Msg.BEGIN, {"rank": 0, "step": -1, "seq": 0, "world_size": 1, "timeline": "r",
                        "shards": []})  # fmt: skip
    assert "step must be an integer" in closed_by_server(ch)
    ch = raw_session(server)
    too_many = [{"name": f"s{i}", "length": 1, "crc32": 0} for i in range(65)]
    ch.send(Msg.BEGIN, {"rank": 0, "step": 1, "seq": 1, "world_size": 1, "timeline": "r",
                        "shards": too_many})  # fmt: skip
    assert "at most 64" in closed_by_server(ch)
    ch = raw_session(server)
    ch.send(Msg.FETCH, {"rank": "0"})
    assert "rank must be an integer" in closed_by_server(ch)
    wait_until(lambda: sum("closing connection" in r.message for r in caplog.records) >= 3)
    assert steps(server) == []


# ---------------------------------------------------------------------- integrity


def test_a_bit_flip_in_a_shard_is_rejected_by_its_crc(
    server: PeerServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "baige.ckpt.peer")
    good = snapshot(7)
    flipped = bytearray(part(good, 0))
    flipped[12_345] ^= 0x10
    bad = Snapshot(good.meta, (bytes(flipped), part(good, 1)))  # declared CRC of the original
    with pytest.raises(PeerError, match=r"shard 'image' of step 7 .* fails its CRC-32"):
        client(server).push(bad)
    assert steps(server) == []
    assert client(server).stats(JOB)["receiving_bytes"] == 0
    wait_until(lambda: any("fails its CRC-32" in r.message for r in caplog.records))


def test_a_bit_flip_in_the_buddys_memory_is_caught_on_fetch(server: PeerServer) -> None:
    client(server).push(snapshot(7))
    entry = server.store.get(JOB, 0, None, None)
    assert entry is not None
    entry.buffer[100] ^= 0x01
    assert client(server).fetch(JOB, 0) is None
    # without verification (the loader checks the same CRCs while restoring) it arrives
    got = client(server).fetch(JOB, 0, verify=False)
    assert got is not None and bytes(got.shard("image")) != part(snapshot(7), 0)


def test_a_wrong_secret_is_rejected_both_ways(
    server: PeerServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "baige.ckpt.peer")
    intruder = client(server, secret=b"not-the-job-secret!!")
    with pytest.raises(PeerAuthError, match="authentication failed"):
        intruder.push(snapshot(1))
    with pytest.raises(PeerAuthError):
        intruder.list(JOB)
    assert intruder.fetch(JOB, 0) is None
    assert steps(server) == []
    wait_until(lambda: any("wrong secret" in r.message for r in caplog.records))
    # a server that does not know the secret is not trusted with state either
    impostor = PeerServer("127.0.0.1:0", b"impostor-secret-0000", max_snapshots=1,
                          max_bytes=1 << 20).start()  # fmt: skip
    try:
        with pytest.raises(PeerAuthError):
            PeerClient(impostor.address, SECRET, timeout_s=2).push(snapshot(1))
        assert impostor.store.stats()["snapshots"] == 0
    finally:
        impostor.close()


def test_a_truncated_stream_leaves_no_visible_snapshot(server: PeerServer) -> None:
    snap = snapshot(9)
    ch = raw_session(server)
    ch.send(Msg.BEGIN, snap.meta.to_json())
    ch.recv([Msg.OK])
    assert client(server).stats(JOB)["receiving_bytes"] == snap.meta.total
    ch.send(Msg.DATA, {"shard": 0, "offset": 0}, part(snap, 0)[:50_000])
    ch.sock.sendall(PREFIX.pack(b"BGPF", 1, int(Msg.DATA), 0, 2, 50_000, ch.sent) + b"{}" + b"x")
    ch.sock.close()  # cut mid-frame
    wait_until(lambda: client(server).stats(JOB)["receiving_bytes"] == 0)
    assert steps(server) == []
    # END before every shard arrived is refused too
    ch = raw_session(server)
    ch.send(Msg.BEGIN, snap.meta.to_json())
    ch.recv([Msg.OK])
    ch.send(Msg.DATA, {"shard": 0, "offset": 0}, part(snap, 0)[:1000])
    ch.send(Msg.END)
    assert "END before shard 'image' was complete" in closed_by_server(ch)
    # and so is a piece out of order
    ch = raw_session(server)
    ch.send(Msg.BEGIN, snap.meta.to_json())
    ch.recv([Msg.OK])
    ch.send(Msg.DATA, {"shard": 0, "offset": 1000}, part(snap, 0)[1000:2000])
    assert "expected shard 0 at 0" in closed_by_server(ch)
    assert steps(server) == []
    assert client(server).stats(JOB)["receiving_bytes"] == 0


def test_a_silent_client_is_cut_off_and_its_push_dropped() -> None:
    with PeerServer("127.0.0.1:0", SECRET, max_snapshots=1, max_bytes=1 << 20,
                    idle_timeout_s=0.3).start() as srv:  # fmt: skip
        snap = snapshot(3)
        ch = raw_session(srv)
        ch.send(Msg.BEGIN, snap.meta.to_json())
        ch.recv([Msg.OK])
        ch.send(Msg.DATA, {"shard": 0, "offset": 0}, part(snap, 0)[:10])
        time.sleep(0.6)
        assert closed_by_server(ch) != "no error"
        assert steps(srv) == [] and srv.store.stats()["receiving_bytes"] == 0


# ---------------------------------------------------------------------- bounds


def test_the_n_snapshot_bound_evicts_the_oldest(server: PeerServer) -> None:
    c = client(server)
    for step in (1, 2, 3, 4):
        c.push(snapshot(step))
    assert steps(server) == [3, 4]
    c.push(snapshot(10, rank=1))
    assert steps(server, rank=1) == [10] and steps(server) == [3, 4]
    stats = c.stats(JOB)
    assert stats["snapshots"] == 3 and stats["evicted"] == 2
    held = sum(snapshot(step, rank=r).meta.total for step, r in ((3, 0), (4, 0), (10, 1)))
    assert stats["used_bytes"] == held <= stats["max_bytes"]


def test_the_byte_budget_evicts_older_copies_but_never_a_ranks_newest(
    server: PeerServer,
) -> None:
    c = client(server)
    size = 300_000  # budget 1 MiB: three of these fit, not four
    c.push(snapshot(1, size))
    c.push(snapshot(2, size))  # rank 0 holds steps 1 and 2
    c.push(snapshot(5, size, rank=1))  # fits: 0.9 MB
    c.push(snapshot(6, size, rank=1))  # must make room: rank 0's step 1 goes (oldest, not newest)
    assert steps(server) == [2] and steps(server, rank=1) == [5, 6]
    with pytest.raises(PeerError, match=r"no room .* not its rank's newest"):
        c.push(snapshot(1, 900_000, rank=2))
    # A push that does not fit changes nothing, a snapshot larger than the budget is refused
    assert steps(server) == [2] and steps(server, rank=1) == [5, 6]
    with pytest.raises(PeerError, match="exceeds the limit"):
        c.push(snapshot(1, 2 << 20, rank=3))
    assert c.stats(JOB)["used_bytes"] <= 1 << 20


# ---------------------------------------------------------------------- client side


def test_fetch_from_a_dead_or_silent_address_returns_none_quickly() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    assert PeerClient(f"127.0.0.1:{port}", SECRET, timeout_s=0.5).fetch(JOB, 0) is None
    listener = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    try:
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        assert PeerClient(address, SECRET, timeout_s=0.5).fetch(JOB, 0) is None
        with pytest.raises(PeerError, match=r"did not answer within 0\.5 s"):
            PeerClient(address, SECRET, timeout_s=0.5).list(JOB)
    finally:
        listener.close()
    assert time.monotonic() - started < 5


class _SlowClient(PeerClient):
    def __init__(self) -> None:
        super().__init__("127.0.0.1:1", SECRET)
        self.release = threading.Event()
        self.sent: list[int] = []

    def push(self, snap: Snapshot, still_valid: object = None) -> dict[str, object]:
        self.release.wait(5)
        self.sent.append(snap.meta.step)
        return {"stored": snap.meta.step}


def test_the_pusher_never_blocks_and_drops_the_oldest_pending_push() -> None:
    slow = _SlowClient()
    pusher = PeerPusher(slow, queue=2)
    started = time.monotonic()
    for step in range(1, 7):  # step 1 goes in flight, then the queue holds two at most
        pusher.push(snapshot(step, size=10))
        if step == 1:
            wait_until(lambda: not pusher._queue)
    assert time.monotonic() - started < 0.5
    slow.release.set()
    assert pusher.flush(5)
    assert slow.sent == [1, 5, 6]
    assert (pusher.stats.pushed, pusher.stats.dropped) == (3, 3)
    pusher.close()


def test_a_push_the_buddy_cannot_take_goes_to_the_fallback_which_stays_the_buddy(
    server: PeerServer,
) -> None:
    with socket.socket() as s:  # the first buddy's node is gone: nobody listens there
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    first = PeerClient(dead, SECRET, timeout_s=1.0, connect_timeout_s=0.5)
    pusher = PeerPusher(first, queue=2, fallbacks=(client(server),))
    pusher.push(snapshot(1))
    assert pusher.flush(10)
    pusher.push(snapshot(2))
    assert pusher.flush(10)
    assert steps(server) == [1, 2]
    assert pusher.client.address == server.address  # the dead one is not tried again
    assert (pusher.stats.pushed, pusher.stats.failed) == (2, 0)
    pusher.close()
    # with no fallback left, a push that nobody takes is counted as failed
    lonely = PeerPusher(PeerClient(dead, SECRET, timeout_s=1.0, connect_timeout_s=0.5))
    lonely.push(snapshot(3))
    assert lonely.flush(10)
    assert (lonely.stats.pushed, lonely.stats.failed) == (0, 1)
    lonely.close()


def test_a_restarting_rank_asks_every_server_and_a_dead_one_costs_nothing_else(
    tmp_path: Path, server: PeerServer
) -> None:
    client(server).push(snapshot(4, rank=1))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    secret.chmod(0o600)
    config = PeerConfig(JOB, str(secret), fetch_from=(dead, server.address, dead))
    source = BuddySource(config, rank=1)
    assert source.available() == {(4, "root")}
    record, buffer, address = source.fetch(4, "root")
    assert address == server.address and record.step == 4
    assert bytes(buffer[: len(part(snapshot(4, rank=1), 0))]) == part(snapshot(4, rank=1), 0)
    assert BuddySource(config, rank=0).available() == set()


def test_a_push_whose_slot_is_overwritten_is_abandoned(tmp_path: Path, server: PeerServer) -> None:
    files = RankFiles(tmp_path, 0)
    snap = snapshot(4)
    files.slot(1).write_bytes(part(snap, 0) + part(snap, 1) + bytes(1000))
    rec = SlotRecord(state="ready", seq=4, step=4, capacity=0,
                     image_len=len(part(snap, 0)), pkl_len=len(part(snap, 1)),
                     crc_image=crc32(part(snap, 0)), crc_pkl=crc32(part(snap, 1)))  # fmt: skip
    ctl = Control(seq=4)
    ctl.slots[1] = rec
    write_control(files.control, ctl)
    item = slot_snapshot(files, 1, rec, JOB)
    assert item is not None
    slot_snap, still_valid = item
    assert slot_snap.meta == snap.meta and still_valid()
    client(server).push(slot_snap, still_valid)
    assert steps(server) == [4]
    # The trainer claims the slot for a new save while it is being sent: abandoned.
    answers = iter([True, False])
    with pytest.raises(PushAborted):
        client(server).push(snapshot(5), lambda: next(answers))
    ctl.slots[1] = SlotRecord(state="writing", seq=5, step=5)
    write_control(files.control, ctl)
    assert not still_valid()
    with pytest.raises(PushAborted):
        client(server).push(slot_snap, still_valid)
    assert steps(server) == [4]
    assert slot_snapshot(files, 0, rec, JOB) is None  # no such slot file


# ---------------------------------------------------------------------- configuration


def test_secret_files_and_sizes(tmp_path: Path) -> None:
    good = tmp_path / "secret"
    good.write_bytes(SECRET + b"\n")
    good.chmod(0o600)
    assert read_secret(good) == SECRET
    short = tmp_path / "short"
    short.write_bytes(b"tiny")
    with pytest.raises(PeerError, match="16"):
        read_secret(short)
    with pytest.raises(PeerError, match="cannot read"):
        read_secret(tmp_path / "missing")
    assert parse_bytes("512M") == 512 << 20 and parse_bytes("4GiB") == 4 << 30
    assert parse_bytes("1000") == 1000
    with pytest.raises(ValueError):
        parse_bytes("lots")
    config = PeerConfig(JOB, str(good), buddy="10.0.0.7:7070", fetch_from=("[::1]:9",))
    assert PeerConfig.from_json(config.to_json()) == config
    assert config.sources == ("[::1]:9",)
    with pytest.raises(ValueError):
        PeerConfig(JOB, str(good), buddy="no-port")
    assert json.loads(config.to_json())["secret_file"] == str(good)  # the path, not the secret
    assert os.fsencode(SECRET) not in os.fsencode(config.to_json())
