"""The wire format between a rank's checkpoint client and a buddy node's snapshot server.

Why a format of our own: a snapshot is gigabytes of raw tensor bytes plus a little
metadata, sent between two processes that must not trust each other beyond a per-job
secret. Pickle (what ``multiprocessing`` and most RPC layers would use) runs code chosen by
the sender, and HTTP or gRPC would copy the bytes through layers we do not need. So: a
fixed binary prefix, a small JSON header, raw bytes, and an HMAC trailer; nothing from the
network is ever unpickled or evaluated, and every length is checked against a hard limit
before anything is allocated.

Frame (all integers big-endian)::

    offset  size  field
    0       4     magic        b"BGPF" (Baige peer frame)
    4       1     version      1 (a receiver refuses any other, naming both)
    5       1     type         a ``Msg`` value
    6       2     flags        0 (reserved; non-zero is refused)
    8       4     header_len   bytes of JSON header, <= MAX_HEADER (64 KiB)
    12      8     payload_len  raw bytes after the header, <= MAX_PAYLOAD (64 MiB); only DATA
    20      8     seq          this direction's frame counter, from 0, no gaps
    28      H     header       a JSON object, UTF-8 (no NaN/Infinity)
    28+H    P     payload      raw bytes (a piece of one shard)
    28+H+P  32    mac          HMAC-SHA256(session key, direction || bytes 0 .. 28+H+P)

``direction`` is ``b"C"`` for client-to-server frames and ``b"S"`` for the other way, so a
frame cannot be reflected back at its sender; ``seq`` must be exactly the next one, so a
frame cannot be replayed, dropped or reordered within a connection.

Handshake (a fresh session key per connection, so nothing replays across connections)::

    server -> CHALLENGE {"nonce": 32 hex}                  mac all zero (nothing to key yet)
    client -> HELLO     {"job": J, "nonce": 32 hex}        mac under K
    server -> WELCOME   {"max_bytes": .., "max_snapshots": ..}   mac under K
    K = HMAC-SHA256(secret, b"baige-peer/1\\0" || server nonce || client nonce || J)

The server checks HELLO's MAC (the client knows the job's secret); the client checks
WELCOME's (the server does too, so state is never handed to an impostor, nor taken from
one). A server refusing the handshake may send ERROR with an all-zero mac, which the client
reports as an unauthenticated refusal.

Requests, after the handshake (one connection may carry several)::

    BEGIN {snapshot meta} -> OK                       then DATA* END -> OK {"stored": ..} | ERROR
    FETCH {"rank", "step"|null, "timeline"|null} -> OK {"found": false}
                                                  |  BEGIN {meta} DATA* END
    LIST  {"rank"|null} -> OK {"snapshots": [...]}
    STATS {} -> OK {memory figures}
    ABORT {"reason"}   (a push the client gave up: the server drops it)

Snapshot meta: ``rank``, ``step``, ``seq``, ``world_size``, ``timeline`` and ``shards``, a
list of ``{"name", "length", "crc32"}`` (at most MAX_SHARDS). DATA frames carry
``{"shard": i, "offset": o}`` and the next bytes of shard ``i``, in order, shard after
shard. A receiver checks each shard's CRC-32 (``checksum.crc32``, zlib's) when its last
byte arrives. Any violation (bad magic, version, flags, length, seq, MAC, JSON, field,
order, CRC) closes the connection, and the receiver logs why; the server answers ERROR
first when it still can. A snapshot becomes visible on the server only at END with every
shard complete and verified; a connection that ends earlier leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import os
import secrets
import socket
import stat
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

from baige.ckpt.checksum import crc32
from baige.ckpt.errors import CheckpointError

__all__ = [
    "CHUNK",
    "MAGIC",
    "MAX_HEADER",
    "MAX_NAME",
    "MAX_PAYLOAD",
    "MAX_SHARDS",
    "VERSION",
    "Channel",
    "Frame",
    "Msg",
    "PeerAuthError",
    "PeerError",
    "PeerProtocolError",
    "ShardReceiver",
    "ShardSpec",
    "Snapshot",
    "SnapshotMeta",
    "format_address",
    "parse_address",
    "read_secret",
    "send_snapshot",
    "session_key",
]

log = logging.getLogger("baige.ckpt.peer")

MAGIC = b"BGPF"
VERSION = 1
PREFIX = struct.Struct(">4sBBHIQQ")  # magic, version, type, flags, header_len, payload_len, seq
MAC_LEN = 32
NONCE_LEN = 16
MAX_HEADER = 64 << 10
MAX_PAYLOAD = 64 << 20
MAX_SHARDS = 64
MAX_NAME = 256
MAX_SECRET = 4096
MIN_SECRET = 16
CHUNK = 8 << 20  # what senders put in one DATA frame: large enough that framing costs nothing
_ZERO_MAC = bytes(MAC_LEN)
_KEY_LABEL = b"baige-peer/1\0"
_MAX_INT = (1 << 63) - 1


class Msg(IntEnum):
    CHALLENGE = 1
    HELLO = 2
    WELCOME = 3
    BEGIN = 4
    DATA = 5
    END = 6
    ABORT = 7
    FETCH = 8
    LIST = 9
    STATS = 10
    OK = 11
    ERROR = 12


class PeerError(CheckpointError):
    """Talking to a buddy failed: unreachable, timed out, refused, or it broke the protocol."""


class PeerProtocolError(PeerError):
    """The other side sent something malformed or out of order; the connection is closed."""


class PeerAuthError(PeerError):
    """The other side does not know the job's secret (or a frame was tampered with)."""


@dataclass(frozen=True)
class ShardSpec:
    """One shard of a snapshot: its name, length and zlib CRC-32."""

    name: str
    length: int
    crc32: int

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "length": self.length, "crc32": self.crc32}


@dataclass(frozen=True)
class SnapshotMeta:
    """What identifies and describes one rank's snapshot; the job is the session's."""

    job: str
    rank: int
    step: int
    seq: int
    world_size: int
    timeline: str
    shards: tuple[ShardSpec, ...]

    @property
    def total(self) -> int:
        return sum(s.length for s in self.shards)

    def offsets(self) -> list[int]:
        """Where each shard starts when the shards are laid out back to back."""
        out, pos = [], 0
        for s in self.shards:
            out.append(pos)
            pos += s.length
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "step": self.step,
            "seq": self.seq,
            "world_size": self.world_size,
            "timeline": self.timeline,
            "shards": [s.to_json() for s in self.shards],
        }

    @classmethod
    def from_json(cls, job: str, h: Mapping[str, Any], max_total: int) -> SnapshotMeta:
        """Validate a BEGIN header; every field is checked for type and range, and the
        total length against ``max_total``, before the caller allocates anything."""
        raw = h.get("shards")
        if not isinstance(raw, list) or len(raw) > MAX_SHARDS:
            raise PeerProtocolError(f"shards must be a list of at most {MAX_SHARDS} entries")
        shards = []
        for i, s in enumerate(raw):
            if not isinstance(s, dict):
                raise PeerProtocolError(f"shards[{i}] is not an object")
            shards.append(
                ShardSpec(
                    name=get_str(s, "name", 64),
                    length=get_int(s, "length", 0, _MAX_INT),
                    crc32=get_int(s, "crc32", 0, 0xFFFFFFFF),
                )
            )
        if len({s.name for s in shards}) != len(shards):
            raise PeerProtocolError("shard names repeat")
        meta = cls(
            job=job,
            rank=get_int(h, "rank", 0, 1 << 24),
            step=get_int(h, "step", 0, _MAX_INT),
            seq=get_int(h, "seq", 0, _MAX_INT),
            world_size=get_int(h, "world_size", 1, 1 << 24),
            timeline=get_str(h, "timeline", 128),
            shards=tuple(shards),
        )
        if meta.total > max_total:
            raise PeerProtocolError(
                f"snapshot of {meta.total} bytes exceeds the limit of {max_total} bytes"
            )
        return meta


_Buffer = memoryview | bytes | bytearray


@dataclass(frozen=True)
class Snapshot:
    """A snapshot to send: its description and one buffer per shard (not copied; the
    sender reads them while it sends)."""

    meta: SnapshotMeta
    parts: tuple[_Buffer, ...]

    def __post_init__(self) -> None:
        if len(self.parts) != len(self.meta.shards):
            raise ValueError(f"{len(self.parts)} buffers for {len(self.meta.shards)} shards")
        for spec, part in zip(self.meta.shards, self.parts, strict=True):
            if memoryview(part).nbytes != spec.length:
                raise ValueError(f"shard {spec.name}: buffer of {memoryview(part).nbytes} bytes, "
                                 f"declared {spec.length}")  # fmt: skip


@dataclass(frozen=True)
class Frame:
    type: Msg
    header: dict[str, Any]
    payload_len: int


# A receiver's payload sink: given the frame type, its (unauthenticated, bounded) header and
# the payload length, the buffer the payload goes into, exactly that long. It raises
# PeerProtocolError for a payload it does not expect.
Sink = Callable[[Msg, dict[str, Any], int], memoryview]


def session_key(secret: bytes, server_nonce: bytes, client_nonce: bytes, job: str) -> bytes:
    return hmac.digest(secret, _KEY_LABEL + server_nonce + client_nonce + job.encode(), "sha256")


class Channel:
    """One side of a connection: frames out and in, MACed with the session key, counted.

    ``side`` is ``"client"`` or ``"server"``. Before the handshake sets ``key`` only
    CHALLENGE (sent by the server) and a refusing ERROR go out unauthenticated."""

    def __init__(self, sock: socket.socket, side: str, peer: str) -> None:
        self.sock = sock
        self.peer = peer
        self.out_dir = b"C" if side == "client" else b"S"
        self.in_dir = b"S" if side == "client" else b"C"
        self.key: bytes | None = None
        self.sent = 0
        self.received = 0

    # ----------------------------------------------------------------- out

    def send(
        self,
        kind: Msg,
        header: Mapping[str, Any] | None = None,
        payload: memoryview | bytes | bytearray | None = None,
        *,
        unauthenticated: bool = False,
    ) -> None:
        body = json.dumps(header or {}, separators=(",", ":"), allow_nan=False).encode()
        if len(body) > MAX_HEADER:
            raise PeerProtocolError(f"header of {len(body)} bytes exceeds {MAX_HEADER}")
        data = memoryview(payload).cast("B") if payload is not None else memoryview(b"")
        if len(data) > MAX_PAYLOAD:
            raise PeerProtocolError(f"payload of {len(data)} bytes exceeds {MAX_PAYLOAD}")
        prefix = PREFIX.pack(MAGIC, VERSION, int(kind), 0, len(body), len(data), self.sent)
        if self.key is None or unauthenticated:
            mac = _ZERO_MAC
        else:
            h = hmac.new(self.key, self.out_dir, hashlib.sha256)
            h.update(prefix)
            h.update(body)
            h.update(data)
            mac = h.digest()
        if len(data) < 1 << 16:
            self.sock.sendall(b"".join((prefix, body, data, mac)))
        else:
            self.sock.sendall(prefix + body)
            self.sock.sendall(data)
            self.sock.sendall(mac)
        self.sent += 1

    # ----------------------------------------------------------------- in

    def recv(
        self,
        expect: Sequence[Msg],
        sink: Sink | None = None,
        *,
        eof_ok: bool = False,
        derive_key: Callable[[dict[str, Any]], bytes] | None = None,
    ) -> Frame | None:
        """The next frame, which must be one of ``expect`` (or ERROR, raised as PeerError),
        verified before it is returned. ``eof_ok``: a connection closed cleanly before a new
        frame returns None. ``derive_key``: HELLO's own fields give the session key its MAC
        is checked with."""
        head = bytearray(PREFIX.size)
        if self._read_into(memoryview(head), eof_ok=eof_ok) == 0:
            return None
        magic, version, kind_raw, flags, header_len, payload_len, seq = PREFIX.unpack(head)
        if magic != MAGIC:
            raise PeerProtocolError(f"bad magic {bytes(magic)!r} (not a baige peer frame)")
        if version != VERSION:
            raise PeerProtocolError(
                f"{self.peer} speaks baige-peer version {version}; this side speaks {VERSION}"
            )
        try:
            kind = Msg(kind_raw)
        except ValueError:
            raise PeerProtocolError(f"unknown message type {kind_raw}") from None
        if flags:
            raise PeerProtocolError(f"reserved flags {flags:#x} set")
        if seq != self.received:
            raise PeerProtocolError(f"frame seq {seq}, expected {self.received} (replay or loss)")
        if header_len > MAX_HEADER:
            raise PeerProtocolError(f"header of {header_len} bytes exceeds {MAX_HEADER}")
        if payload_len > MAX_PAYLOAD:
            raise PeerProtocolError(f"payload of {payload_len} bytes exceeds {MAX_PAYLOAD}")
        if kind not in expect and kind != Msg.ERROR:
            raise PeerProtocolError(
                f"unexpected {kind.name}; expected {'/'.join(m.name for m in expect)}"
            )
        body = bytearray(header_len)
        self._read_into(memoryview(body))
        header = _decode_header(bytes(body))
        dest: memoryview | None = None
        if payload_len:
            if sink is None or kind == Msg.ERROR:
                raise PeerProtocolError(f"{kind.name} carries {payload_len} unexpected bytes")
            dest = sink(kind, header, payload_len)
            if len(dest) != payload_len:
                raise PeerProtocolError("payload destination of the wrong size")
            self._read_into(dest)
        mac_in = bytearray(MAC_LEN)
        self._read_into(memoryview(mac_in))
        self.received += 1
        if derive_key is not None:
            self.key = derive_key(header)
        if self.key is None:  # before the handshake only CHALLENGE (or a refusal) travels
            if bytes(mac_in) != _ZERO_MAC:
                raise PeerProtocolError(f"{kind.name} before the handshake carries a mac")
        else:
            h = hmac.new(self.key, self.in_dir, hashlib.sha256)
            h.update(head)
            h.update(body)
            if dest is not None:
                h.update(dest)
            if not hmac.compare_digest(h.digest(), bytes(mac_in)):
                if kind == Msg.ERROR and bytes(mac_in) == _ZERO_MAC:
                    raise PeerAuthError(
                        f"{self.peer} refused: {header.get('reason', '?')!s:.300} "
                        "(unauthenticated reply)"
                    )
                raise PeerAuthError(
                    f"{kind.name} from {self.peer} fails its HMAC (wrong secret or tampering)"
                )
        if kind == Msg.ERROR and Msg.ERROR not in expect:
            raise PeerError(f"{self.peer}: {header.get('reason', 'error')!s:.500}")
        return Frame(kind, header, payload_len)

    def _read_into(self, view: memoryview, *, eof_ok: bool = False) -> int:
        done = 0
        while done < len(view):
            n = self.sock.recv_into(view[done:])
            if n == 0:
                if done == 0 and eof_ok:
                    return 0
                raise PeerProtocolError(
                    f"{self.peer} closed the connection mid-frame ({done} of {len(view)} bytes)"
                )
            done += n
        return done


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _decode_header(body: bytes) -> dict[str, Any]:
    if not body:
        return {}
    try:
        value = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise PeerProtocolError(f"header is not valid UTF-8 JSON: {exc}") from None
    if not isinstance(value, dict):
        raise PeerProtocolError("header is not a JSON object")
    return value


def get_int(h: Mapping[str, Any], key: str, lo: int, hi: int) -> int:
    value = h.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise PeerProtocolError(f"{key} must be an integer in [{lo}, {hi}], got {value!r}")
    return value


def get_opt_int(h: Mapping[str, Any], key: str, lo: int, hi: int) -> int | None:
    return None if h.get(key) is None else get_int(h, key, lo, hi)


def get_str(h: Mapping[str, Any], key: str, max_len: int = MAX_NAME) -> str:
    value = h.get(key)
    if not isinstance(value, str) or not 0 < len(value) <= max_len or not value.isprintable():
        raise PeerProtocolError(
            f"{key} must be a printable string of 1..{max_len} characters, got {value!r:.80}"
        )
    return value


def get_opt_str(h: Mapping[str, Any], key: str, max_len: int = MAX_NAME) -> str | None:
    return None if h.get(key) is None else get_str(h, key, max_len)


def get_nonce(h: Mapping[str, Any]) -> bytes:
    value = h.get("nonce")
    try:
        nonce = bytes.fromhex(value) if isinstance(value, str) else b""
    except ValueError:
        nonce = b""
    if len(nonce) != NONCE_LEN:
        raise PeerProtocolError(f"nonce must be {NONCE_LEN} bytes in hex")
    return nonce


def new_nonce() -> bytes:
    return secrets.token_bytes(NONCE_LEN)


def finite(value: float) -> float:
    """JSON cannot carry NaN or infinity (``allow_nan=False``): clamp figures we report."""
    return value if math.isfinite(value) else 0.0


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT`` -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"address must be HOST:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def read_secret(path: str | os.PathLike[str]) -> bytes:
    """The job's secret from a file (surrounding whitespace stripped). It must hold at
    least 16 bytes; a file that others can read is accepted with a warning, because the
    secret is all that keeps another tenant from reading or replacing this job's state."""
    p = Path(path)
    try:
        st = p.stat()
        data = p.read_bytes()[: MAX_SECRET + 1].strip()
    except OSError as exc:
        raise PeerError(f"cannot read the peer secret file {p}: {exc.strerror}") from None
    if len(data) < MIN_SECRET or len(data) > MAX_SECRET:
        raise PeerError(f"the peer secret in {p} must be {MIN_SECRET}..{MAX_SECRET} bytes")
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("peer secret file %s is readable by others (mode %o)", p, st.st_mode & 0o777)
    return data


def send_snapshot(
    ch: Channel, snap: Snapshot, still_valid: Callable[[], bool] | None = None
) -> bool:
    """Send a snapshot's shards as DATA frames, then END; without END (ABORT instead, and
    False) if ``still_valid`` says the source changed while it was being sent."""
    for i, part in enumerate(snap.parts):
        view = memoryview(part).cast("B")
        for off in range(0, len(view), CHUNK):
            ch.send(Msg.DATA, {"shard": i, "offset": off}, view[off : off + CHUNK])
    if still_valid is not None and not still_valid():
        ch.send(Msg.ABORT, {"reason": "the source was overwritten while it was sent"})
        return False
    ch.send(Msg.END)
    return True


class ShardReceiver:
    """Receives a snapshot's DATA frames into one buffer (shards back to back, as in a
    shared-memory slot), in order, and checks each shard's CRC-32 when it completes.

    ``sink`` is the Channel's payload sink; call ``received`` after each DATA frame (once its
    MAC is verified) and ``finish`` at END."""

    def __init__(self, meta: SnapshotMeta, buffer: memoryview, *, verify: bool = True) -> None:
        if len(buffer) < meta.total:
            raise ValueError("buffer smaller than the snapshot")
        self.meta = meta
        self.buffer = buffer
        self.verify = verify
        self.starts = meta.offsets()
        self.shard = 0
        self.offset = 0
        self.crc = 0
        self._piece: memoryview | None = None
        self._skip_empty()

    def _skip_empty(self) -> None:
        while self.shard < len(self.meta.shards) and self.meta.shards[self.shard].length == 0:
            self._check(self.shard, 0)
            self.shard += 1

    def _check(self, index: int, crc: int) -> None:
        spec = self.meta.shards[index]
        if self.verify and crc != spec.crc32:
            raise PeerProtocolError(
                f"shard {spec.name!r} of step {self.meta.step} (rank {self.meta.rank}) fails its "
                f"CRC-32: {crc:08x}, declared {spec.crc32:08x}"
            )

    def sink(self, kind: Msg, header: dict[str, Any], n: int) -> memoryview:
        if kind != Msg.DATA:
            raise PeerProtocolError(f"{kind.name} carries a payload")
        if self.shard >= len(self.meta.shards):
            raise PeerProtocolError("DATA after the last shard")
        index = get_int(header, "shard", 0, MAX_SHARDS)
        offset = get_int(header, "offset", 0, _MAX_INT)
        if (index, offset) != (self.shard, self.offset):
            raise PeerProtocolError(
                f"DATA for shard {index} at {offset}; expected shard {self.shard} at {self.offset}"
            )
        left = self.meta.shards[index].length - offset
        if n > left:
            raise PeerProtocolError(f"DATA of {n} bytes overruns shard {index} ({left} left)")
        start = self.starts[index] + offset
        self._piece = self.buffer[start : start + n]
        return self._piece

    def received(self) -> None:
        piece = self._piece
        if piece is None:
            raise PeerProtocolError("DATA without a payload")
        self._piece = None
        if self.verify:
            self.crc = crc32(piece, self.crc)
        self.offset += len(piece)
        if self.offset == self.meta.shards[self.shard].length:
            self._check(self.shard, self.crc)
            self.shard, self.offset, self.crc = self.shard + 1, 0, 0
            self._skip_empty()

    def finish(self) -> None:
        if self.shard < len(self.meta.shards):
            spec = self.meta.shards[self.shard]
            raise PeerProtocolError(
                f"END before shard {spec.name!r} was complete "
                f"({self.offset} of {spec.length} bytes)"
            )
