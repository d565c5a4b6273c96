"""Reading one rank's saved tensors and skeleton back, from a memory slot or from disk,
verifying sizes and CRC-32s on the way so corrupt bytes never reach the model.

Restore speed is the copy: each tensor's bytes go once, straight from the mapped slot (or
from the file, in large reads) into their final place, and the CRC-32 is computed by a
second thread beside that copy (``checksum.CrcStream``). The final place is the caller's
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

from baige.ckpt.checksum import CRC32_IMPL, CrcStream, crc32
from baige.ckpt.control import SlotRecord
from baige.ckpt.errors import CorruptCheckpoint
from baige.ckpt.flatten import torch_dtype
from baige.ckpt.hostcopy import copy_bytes, prefault
from baige.ckpt.manifest import FileEntry, ShardManifest, shard_file, verify_file
from baige.ckpt.safetensors_format import TensorEntry, parse_header

__all__ = ["Shard", "destination", "read_disk_shard", "read_slot"]

# Pieces checksummed one at a time: large enough that the CRC thread's hand-offs cost
# nothing, small enough that the copy and the CRC overlap on a few of them.
_PIECE = 32 << 20
_AHEAD = 64 << 20  # read ahead of the piece being read from disk


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
            # The CRC-32 of the slot's bytes is computed by worker threads while this
            # thread copies them out: the copy is one memcpy per tensor (libc's, which
            # streams large buffers faster than Tensor.copy_ or small pieces do), so a
            # verified restore costs about the copy alone. ISA-L keeps up with one worker,
            # zlib needs two.
            crc = (
                CrcStream(workers=1 if CRC32_IMPL != "zlib" else 2)
                if rec.crc_image is not None
                else None
            )
            try:
                if crc is not None:
                    for lo in range(0, rec.image_len, _PIECE):
                        crc.feed(image[lo : min(lo + _PIECE, rec.image_len)])
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # a read-only mapping, only ever read
                    buf = torch.frombuffer(mm, dtype=torch.uint8)
                tensors: dict[str, torch.Tensor] = {}
                with torch.no_grad():
                    for e in entries:
                        out = destination(e, into, populate=True)
                        tensors[e.key] = out
                        if not e.nbytes:
                            continue
                        flat = out.reshape(-1).view(torch.uint8)
                        src = data_start + e.start
                        if out.device.type == "cpu":
                            copy_bytes(flat.data_ptr(), buf.data_ptr() + src, e.nbytes)
                        else:
                            flat.copy_(buf[src : src + e.nbytes])
                del buf
            finally:
                crc_image = crc.value() if crc is not None else None
        if crc_image is not None and crc_image != rec.crc_image:
            raise CorruptCheckpoint(f"{name}: tensor bytes fail their CRC-32")
        if rec.crc_pkl is not None and _crc(pkl) != rec.crc_pkl:
            raise CorruptCheckpoint(f"{name}: structure bytes fail their CRC-32")
    finally:
        if own:
            with contextlib.suppress(BufferError):  # a view kept alive by a traceback
                mm.close()
    return Shard(tensors, _unpickle(pkl, name), meta)


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
        with contextlib.suppress(OSError, AttributeError):
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
        head = f.read(8)
        if len(head) < 8:
            raise CorruptCheckpoint(f"{path}: truncated header")
        (hlen,) = struct.unpack("<Q", head)
        if 8 + hlen > size:
            raise CorruptCheckpoint(f"{path}: header length {hlen} does not fit in {size} bytes")
        head += _read_exact(f, hlen, path)
        entries, meta, data_start = parse_header(head, size, str(path))
        tensors: dict[str, torch.Tensor] = {}
        with CrcStream() as crc:
            crc.feed(head)
            with torch.no_grad():
                for e in entries:
                    out = destination(e, into)
                    tensors[e.key] = out
                    if not e.nbytes:
                        continue
                    on_cpu = out.device.type == "cpu"
                    host = out if on_cpu else torch.empty(e.shape, dtype=out.dtype)
                    raw = host.reshape(-1).view(torch.uint8).numpy().data
                    for lo in range(0, e.nbytes, _PIECE):
                        piece = raw[lo : min(lo + _PIECE, e.nbytes)]
                        _read_ahead(f.fileno(), f.tell() + len(piece))
                        _read_into(f, piece, path, e.key)
                        crc.feed(piece)
                    if not on_cpu:
                        out.copy_(host)
            got = crc.value()
        if f.tell() != data_start + sum(e.nbytes for e in entries):
            raise CorruptCheckpoint(f"{path}: size does not match its header")
    if got != entry.crc32:
        raise CorruptCheckpoint(f"{path}: CRC-32 {got:08x}, manifest says {entry.crc32:08x}")
    return tensors, meta


def _read_ahead(fd: int, offset: int) -> None:
    """Have the kernel start reading the next ``_AHEAD`` bytes from ``offset`` now, so the
    disk works while this piece is copied out and new tensors are allocated, instead of
    waiting idle between synchronous reads (the sequential-readahead window alone is a
    few hundred KB). Pages already cached or on their way are skipped."""
    with contextlib.suppress(OSError, AttributeError):
        os.posix_fadvise(fd, offset, _AHEAD, os.POSIX_FADV_WILLNEED)


def _read_into(f: Any, piece: memoryview, path: Path, key: str) -> None:
    done = 0
    while done < len(piece):
        got = f.readinto(piece[done:])
        if not got:
            raise CorruptCheckpoint(f"{path}: tensor {key!r} truncated")
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
