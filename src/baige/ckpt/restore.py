"""Reading one rank's saved tensors and skeleton back, from a memory slot or from disk,
verifying sizes and CRC-32s on the way so corrupt bytes never reach the model.

Restore speed is the copy: each tensor's bytes go once, straight from the mapped slot (or
from the file) into their final place, a piece at a time by a few threads, and each piece's
CRC-32 is computed right after it moved, while it is still in the cache
(``piecewise``). The final place is the caller's
own tensor when a template names one of the same shape and dtype (``into``), so nothing is
allocated and no fresh page is faulted in; otherwise a new CPU tensor. A failed check
raises after the bytes were copied: a caller's tensors then hold garbage, and the loader
moves on to an older step, which overwrites them again.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import pickle
import struct
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from baige.ckpt import piecewise
from baige.ckpt.checksum import crc32, crc32_combine
from baige.ckpt.control import SlotRecord
from baige.ckpt.errors import CorruptCheckpoint
from baige.ckpt.flatten import torch_dtype
from baige.ckpt.hostcopy import copy_bytes, prefault
from baige.ckpt.manifest import FileEntry, ShardManifest, shard_file, verify_file
from baige.ckpt.piecewise import Move, Segments
from baige.ckpt.safetensors_format import TensorEntry, parse_header

__all__ = ["Shard", "destination", "read_disk_shard", "read_slot"]

# A disk restore reads, then checksums, this much at a time (it then sits in the cache).
_READ_PIECE = 8 << 20
# A memory restore copies and checksums the slot this much at a time: the piece just
# copied is still in the cache when its CRC reads it, and the Python around each piece is
# paid 1,000 times a GiB (of 256 KiB, 1 MiB and 16 MiB, 1 MiB was fastest here: 0.9x
# one Tensor.copy_ of the same bytes, CRC included).
_CHUNK = 1 << 20


@dataclass
class Shard:
    """One rank's plain tensors (by key) and the unpickled skeleton."""

    tensors: dict[str, torch.Tensor]
    skeleton: Any
    meta: dict[str, str]


def destination(
    entry: TensorEntry, into: Mapping[str, torch.Tensor] | None, populate: bool = False
) -> torch.Tensor:
    """Where ``entry``'s bytes go: the caller's tensor of that name when it is a contiguous
    tensor of the same shape and dtype (CPU or accelerator), else a new CPU tensor, its
    pages mapped up front with ``populate`` (``hostcopy.prefault``: a memcpy into fresh
    pages faults on each; a read() from a file maps them itself about as fast, measured)."""
    dtype = torch_dtype(entry.dtype)
    target = into.get(entry.key) if into is not None else None
    if (
        isinstance(target, torch.Tensor)
        and target.dtype == dtype
        and tuple(target.shape) == entry.shape
        and target.is_contiguous()
        and not target.is_meta
    ):
        return target
    out = torch.empty(entry.shape, dtype=dtype)
    if populate:
        prefault(out)
    return out


def read_slot(
    path: Path,
    rec: SlotRecord,
    into: Mapping[str, torch.Tensor] | None = None,
    mapping: mmap.mmap | None = None,
) -> Shard:
    """Copy a ready slot out of shared memory, straight into ``into``'s tensors where they
    fit. If the persister has recorded checksums for it, they are checked beside the copy.
    ``mapping`` is the slot as this process already maps it (a trainer restoring what it
    saved), which spares faulting the pages in again; otherwise the file is mapped."""
    name = f"{path} (step {rec.step})"
    total = rec.image_len + rec.pkl_len
    if mapping is not None and len(mapping) >= total:
        mm, own = mapping, False
    else:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < total:
                raise CorruptCheckpoint(f"{name}: {size} bytes, its record needs {total}")
            mm, own = mmap.mmap(f.fileno(), total, prot=mmap.PROT_READ), True
    try:
        with memoryview(mm) as view, view[: rec.image_len] as image:
            pkl = bytes(view[rec.image_len : total])
            entries, meta, data_start = parse_header(image, rec.image_len, name)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a read-only mapping, only ever read
                buf = torch.frombuffer(mm, dtype=torch.uint8)
            tensors: dict[str, torch.Tensor] = {}
            host: list[Move] = []
            device: list[tuple[torch.Tensor, int, int]] = []
            with torch.no_grad():
                for e in entries:
                    out = destination(e, into, populate=True)
                    tensors[e.key] = out
                    if not e.nbytes:
                        continue
                    flat = out.reshape(-1).view(torch.uint8)
                    src = data_start + e.start
                    if out.device.type == "cpu":
                        host.append(Move(src, flat.data_ptr(), e.nbytes))
                    else:
                        device.append((flat, src, e.nbytes))
                crc_image = _copy_and_crc(
                    buf.data_ptr(), image, host, verify=rec.crc_image is not None
                )
                for flat, src, nbytes in device:
                    flat.copy_(buf[src : src + nbytes])
            del buf
        if crc_image is not None and crc_image != rec.crc_image:
            raise CorruptCheckpoint(f"{name}: tensor bytes fail their CRC-32")
        if rec.crc_pkl is not None and _crc(pkl) != rec.crc_pkl:
            raise CorruptCheckpoint(f"{name}: structure bytes fail their CRC-32")
    finally:
        if own:
            with contextlib.suppress(BufferError):  # a view kept alive by a traceback
                mm.close()
    return Shard(tensors, _unpickle(pkl, name), meta)


def _copy_and_crc(base: int, image: memoryview, moves: list[Move], verify: bool) -> int | None:
    """Copy every move out of the slot (mapped at address ``base``) and, with ``verify``,
    return the CRC-32 of the slot's first ``len(image)`` bytes, each byte read once: a
    piece is copied to wherever its bytes go, then checksummed from the cache
    (``piecewise``)."""
    segments = Segments(moves)

    def work(lo: int, hi: int) -> int:
        crc = 0
        for c in range(lo, hi, _CHUNK):
            end = min(c + _CHUNK, hi)
            for part in segments.within(c, end):
                copy_bytes(part.dst, base + part.lo, part.hi - part.lo)
            if verify:
                crc = crc32(image[c:end], crc)
        return crc

    crc = piecewise.run(0, len(image), _threads(len(image), most=4), _CHUNK, work)
    return crc if verify else None


def _threads(nbytes: int, most: int) -> int:
    """Threads for a restore of ``nbytes``: one per core up to ``most`` (memory bandwidth or
    the disk, not cores, bounds it beyond that); one for anything under 64 MiB, where
    starting threads costs more than it saves."""
    if nbytes < 64 << 20:
        return 1
    return max(1, min(most, os.cpu_count() or 1))


def read_disk_shard(
    folder: Path, shard: ShardManifest, into: Mapping[str, torch.Tensor] | None = None
) -> Shard:
    """Read a rank's ``.safetensors`` and ``.pkl`` from a step folder, checking every byte
    against the manifest's size and CRC-32 as it is read."""
    files = {f.name: f for f in shard.files}
    st_name = shard_file(shard.rank, "safetensors")
    pkl_name = shard_file(shard.rank, "pkl")
    for needed in (st_name, pkl_name):
        if needed not in files:
            raise CorruptCheckpoint(f"{folder}: manifest lists no {needed}")
    pkl_path = folder / pkl_name
    verify_file(folder, files[pkl_name])
    skeleton = _unpickle(pkl_path.read_bytes(), str(pkl_path))
    tensors, meta = _read_safetensors(folder / st_name, files[st_name], into)
    return Shard(tensors, skeleton, meta)


def _read_safetensors(
    path: Path, entry: FileEntry, into: Mapping[str, torch.Tensor] | None
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise CorruptCheckpoint(f"{path}: missing") from None
    if size != entry.size:
        raise CorruptCheckpoint(f"{path}: {size} bytes, manifest says {entry.size}")
    with path.open("rb", buffering=0) as f:
        head = f.read(8)
        if len(head) < 8:
            raise CorruptCheckpoint(f"{path}: truncated header")
        (hlen,) = struct.unpack("<Q", head)
        if 8 + hlen > size:
            raise CorruptCheckpoint(f"{path}: header length {hlen} does not fit in {size} bytes")
        head += _read_exact(f, hlen, path)
    entries, meta, data_start = parse_header(head, size, str(path))
    data_end = data_start + sum(e.nbytes for e in entries)
    if data_end != size:
        raise CorruptCheckpoint(f"{path}: size does not match its header")
    tensors: dict[str, torch.Tensor] = {}
    moves: list[Move] = []
    staged: list[tuple[torch.Tensor, torch.Tensor]] = []  # (device tensor, host copy)
    with torch.no_grad():
        for e in entries:
            out = destination(e, into)
            tensors[e.key] = out
            if not e.nbytes:
                continue
            host = out if out.device.type == "cpu" else torch.empty(e.shape, dtype=out.dtype)
            if host is not out:
                staged.append((out, host))
            moves.append(Move(data_start + e.start, host.data_ptr(), e.nbytes))
        data_crc = _read_pieces(path, data_start, data_end, moves)
        for out, host in staged:
            out.copy_(host)
    got = crc32_combine(crc32(head), data_crc, data_end - data_start)
    if got != entry.crc32:
        raise CorruptCheckpoint(f"{path}: CRC-32 {got:08x}, manifest says {entry.crc32:08x}")
    return tensors, meta


def _read_pieces(path: Path, start: int, end: int, moves: list[Move]) -> int:
    """Read the file's bytes ``[start, end)`` to the moves' addresses with a few threads,
    each over its own range with its own descriptor (so the kernel's read-ahead follows
    each one), checksumming each piece as soon as it is read; return their CRC-32."""
    segments = Segments(moves)

    def work(lo: int, hi: int) -> int:
        crc = 0
        fd = os.open(path, os.O_RDONLY)
        try:
            with contextlib.suppress(OSError, AttributeError):
                os.posix_fadvise(fd, lo, hi - lo, os.POSIX_FADV_SEQUENTIAL)
            for c in range(lo, hi, _READ_PIECE):
                for part in segments.within(c, min(c + _READ_PIECE, hi)):
                    view = piecewise.buffer_at(part.dst, part.hi - part.lo)
                    _pread_into(fd, view, part.lo, path)
                    crc = crc32(view, crc)
        finally:
            os.close(fd)
        return crc

    return piecewise.run(start, end, _threads(end - start, most=4), _READ_PIECE, work)


def _pread_into(fd: int, view: memoryview, offset: int, path: Path) -> None:
    done = 0
    while done < len(view):
        got = os.preadv(fd, [view[done:]], offset + done)
        if not got:
            raise CorruptCheckpoint(f"{path}: truncated at byte {offset + done}")
        done += got


def _read_exact(f: Any, n: int, path: Path) -> bytes:
    data = f.read(n)
    while len(data) < n:
        more = f.read(n - len(data))
        if not more:
            raise CorruptCheckpoint(f"{path}: truncated header")
        data += more
    return bytes(data)


def _crc(data: bytes) -> int:
    return crc32(data)


def _unpickle(data: bytes, name: str) -> Any:
    try:
        return pickle.loads(data)
    except Exception as exc:
        raise CorruptCheckpoint(f"{name}: the pickled structure does not load ({exc})") from None
