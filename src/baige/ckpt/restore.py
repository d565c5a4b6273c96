"""Reading one rank's saved tensors and skeleton back, from a memory slot or from disk,
verifying sizes and CRC-32s on the way so corrupt bytes never reach the model."""

from __future__ import annotations

import mmap
import os
import pickle
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from baige.ckpt.control import SlotRecord
from baige.ckpt.errors import CorruptCheckpoint
from baige.ckpt.flatten import torch_dtype
from baige.ckpt.hostcopy import read_tensor
from baige.ckpt.manifest import FileEntry, ShardManifest, shard_file, verify_file
from baige.ckpt.safetensors_format import parse_header

__all__ = ["Shard", "read_disk_shard", "read_slot"]


@dataclass
class Shard:
    """One rank's plain tensors (by key) and the unpickled skeleton."""

    tensors: dict[str, torch.Tensor]
    skeleton: Any
    meta: dict[str, str]


def read_slot(path: Path, rec: SlotRecord) -> Shard:
    """Copy a ready slot out of shared memory. If the persister has recorded checksums for
    it, they are checked too."""
    name = f"{path} (step {rec.step})"
    total = rec.image_len + rec.pkl_len
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < total:
            raise CorruptCheckpoint(f"{name}: {size} bytes, its record needs {total}")
        mm = mmap.mmap(f.fileno(), total, prot=mmap.PROT_READ)
    try:
        with memoryview(mm) as view, view[: rec.image_len] as image:
            pkl = bytes(view[rec.image_len : total])
            if rec.crc_image is not None and zlib.crc32(image) != rec.crc_image:
                raise CorruptCheckpoint(f"{name}: tensor bytes fail their CRC-32")
            entries, meta, data_start = parse_header(image, rec.image_len, name)
        if rec.crc_pkl is not None and zlib.crc32(pkl) != rec.crc_pkl:
            raise CorruptCheckpoint(f"{name}: structure bytes fail their CRC-32")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a read-only mapping, only ever read
            buf = torch.frombuffer(mm, dtype=torch.uint8)
        tensors = {e.key: read_tensor(buf, data_start, e, torch_dtype(e.dtype)) for e in entries}
        del buf
    finally:
        mm.close()
    return Shard(tensors, _unpickle(pkl, name), meta)


def read_disk_shard(folder: Path, shard: ShardManifest) -> Shard:
    """Read a rank's ``.safetensors`` and ``.pkl`` from a step folder, checking every byte
    against the manifest's size and CRC-32 as it is read."""
    files = {f.name: f for f in shard.files}
    st_name = shard_file(shard.rank, "safetensors")
    pkl_name = shard_file(shard.rank, "pkl")
    for needed in (st_name, pkl_name):
        if needed not in files:
            raise CorruptCheckpoint(f"{folder}: manifest lists no {needed}")
    tensors, meta = _read_safetensors(folder / st_name, files[st_name])
    pkl_path = folder / pkl_name
    verify_file(folder, files[pkl_name])
    return Shard(tensors, _unpickle(pkl_path.read_bytes(), str(pkl_path)), meta)


def _read_safetensors(
    path: Path, entry: FileEntry
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise CorruptCheckpoint(f"{path}: missing") from None
    if size != entry.size:
        raise CorruptCheckpoint(f"{path}: {size} bytes, manifest says {entry.size}")
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CorruptCheckpoint(f"{path}: truncated header")
        (hlen,) = struct.unpack("<Q", head)
        if 8 + hlen > size:
            raise CorruptCheckpoint(f"{path}: header length {hlen} does not fit in {size} bytes")
        head += f.read(hlen)
        crc = zlib.crc32(head)
        entries, meta, data_start = parse_header(head, size, str(path))
        tensors: dict[str, torch.Tensor] = {}
        for e in entries:
            out = torch.empty(e.shape, dtype=torch_dtype(e.dtype))
            if e.nbytes:
                raw = out.reshape(-1).view(torch.uint8).numpy().data
                got = f.readinto(raw)
                if got != e.nbytes:
                    raise CorruptCheckpoint(f"{path}: tensor {e.key!r} truncated")
                crc = zlib.crc32(raw, crc)
            tensors[e.key] = out
        if f.tell() != data_start + sum(e.nbytes for e in entries):
            raise CorruptCheckpoint(f"{path}: size does not match its header")
    if crc != entry.crc32:
        raise CorruptCheckpoint(f"{path}: CRC-32 {crc:08x}, manifest says {entry.crc32:08x}")
    return tensors, meta


def _unpickle(data: bytes, name: str) -> Any:
    try:
        return pickle.loads(data)
    except Exception as exc:
        raise CorruptCheckpoint(f"{name}: the pickled structure does not load ({exc})") from None
