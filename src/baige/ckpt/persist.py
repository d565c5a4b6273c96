"""Writing one shared-memory slot to disk as a rank's shard, and committing a step.

The order is what makes a persisted checkpoint trustworthy: data files go to temporary names,
are fsynced and renamed; then the rank's shard manifest (sizes, CRC-32s) the same way; then,
once every rank's shard manifest is there, the step's ``manifest.json``. A crash anywhere
leaves either the previous complete step or, at worst, a folder without a manifest, which
``load()`` ignores. Imports torch only for sharded (DCP) state.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from baige.ckpt.checksum import CrcStream, crc32
from baige.ckpt.control import SlotRecord
from baige.ckpt.errors import CorruptCheckpoint
from baige.ckpt.manifest import (
    MANIFEST,
    DTensorChunk,
    FileEntry,
    Manifest,
    ShardManifest,
    apply_retention,
    crc32_file,
    fsync_dir,
    read_manifest,
    read_shard_manifest,
    shard_file,
    step_dir,
)
from baige.ckpt.safetensors_format import TensorEntry, encode_header, parse_header
from baige.ckpt.writer import DiskWriter, start_writeback

__all__ = ["DTENSORS_KEY", "PersistResult", "persist_slot", "try_commit", "write_file"]

log = logging.getLogger("baige.ckpt")

# Key in the safetensors ``__metadata__`` of a slot image: JSON describing which tensors are
# DTensor chunks (fqn, path, global shape, offsets, and whether this rank persists them).
DTENSORS_KEY = "baige.dtensors"
_CHUNK = 32 << 20


@dataclass(frozen=True)
class PersistResult:
    shard: ShardManifest
    crc_image: int
    crc_pkl: int
    committed: Manifest | None
    deleted: tuple[int, ...]


def write_file(
    folder: Path, name: str, parts: Sequence[memoryview | bytes], writer: DiskWriter
) -> FileEntry:
    """Write ``parts`` to ``folder/name`` atomically (temporary name, fsync, rename) and
    return its size and CRC-32, computed by a second thread on the bytes as they are
    written, so checksumming costs no time beside the disk. One fsync per file. The page
    cache is left alone: the newest step is the one a restart reads, and keeping its pages
    makes that read a memory copy (retention deleting older steps frees theirs)."""
    final = folder / name
    tmp = folder / f".{name}.tmp{os.getpid()}"
    size = 0
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        with CrcStream() as stream:
            for part in parts:
                view = memoryview(part).cast("B")
                for start in range(0, len(view), _CHUNK):
                    piece = view[start : start + _CHUNK]
                    stream.feed(piece)
                    writer.write_all(fd, piece, str(final))
                    start_writeback(fd, size + start, len(piece))
                size += len(view)
            crc = stream.value()
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    os.close(fd)
    os.replace(tmp, final)
    return FileEntry(name, size, crc)


def persist_slot(
    payload: memoryview,
    rec: SlotRecord,
    root: Path,
    rank: int,
    writer: DiskWriter,
    keep: int,
    *,
    defer_deletes: bool = False,
) -> PersistResult:
    """Write the slot ``rec`` describes as ``rank``'s shard of step ``rec.step`` under
    ``root``, then commit the step if every rank's shard is there, then apply retention
    (with ``defer_deletes``, old folders are only renamed away; ``empty_trash`` frees them)."""
    folder = step_dir(root, rec.step)
    folder.mkdir(parents=True, exist_ok=True)
    image = payload[: rec.image_len]
    pkl = payload[rec.image_len : rec.image_len + rec.pkl_len]
    _invalidate_stale(folder, rec, rank)
    entries, meta, data_start = parse_header(image, rec.image_len, f"slot of step {rec.step}")
    dmeta: dict[str, dict[str, object]] = json.loads(meta.get(DTENSORS_KEY, "{}"))
    crc_image = None
    chunks: list[DTensorChunk] = []
    if not dmeta:
        st = write_file(folder, shard_file(rank, "safetensors"), [image], writer)
        crc_image = st.crc32
    else:
        plain = [e for e in entries if e.key not in dmeta]
        plain_end = max((e.end for e in plain), default=0)
        if any(e.start < plain_end for e in entries if e.key in dmeta):
            raise CorruptCheckpoint(f"slot of step {rec.step}: sharded tensors precede plain ones")
        header = encode_header(plain, {k: v for k, v in meta.items() if k != DTENSORS_KEY})
        st = write_file(
            folder,
            shard_file(rank, "safetensors"),
            [header, image[data_start : data_start + plain_end]],
            writer,
        )
        chunks = _write_dcp(folder, rank, entries, dmeta, image, data_start)
    pk = write_file(folder, shard_file(rank, "pkl"), [pkl], writer)
    files = [st, pk]
    for file in sorted({c.file for c in chunks}):
        size, crc = crc32_file(folder / file)
        files.append(FileEntry(file, size, crc))
    shard = ShardManifest(
        rank=rank,
        world_size=rec.world_size,
        step=rec.step,
        seq=rec.seq,
        timeline=rec.timeline,
        files=tuple(files),
        dtensors=tuple(chunks),
    )
    body = json.dumps(shard.to_dict(), indent=1).encode()
    write_file(folder, shard_file(rank, "json"), [body], writer)
    fsync_dir(folder)
    committed = try_commit(folder, writer)
    deleted = (
        tuple(apply_retention(root, keep, defer=defer_deletes)) if committed is not None else ()
    )
    if crc_image is None:
        crc_image = crc32(image)
    return PersistResult(shard, crc_image, pk.crc32, committed, deleted)


def try_commit(folder: Path, writer: DiskWriter) -> Manifest | None:
    """Write ``manifest.json`` if every rank's shard manifest is present and they agree on
    the step, world size and timeline; return the manifest, or None if the step is not
    complete yet. Safe to race: every committer writes the same bytes."""
    with contextlib.suppress(CorruptCheckpoint):
        return read_manifest(folder)
    first = folder / shard_file(0, "json")
    try:
        head = read_shard_manifest(first)
    except CorruptCheckpoint:
        return None
    shards = [head]
    for rank in range(1, head.world_size):
        try:
            shards.append(read_shard_manifest(folder / shard_file(rank, "json")))
        except CorruptCheckpoint:
            return None
    for s in shards:
        if (s.step, s.world_size, s.timeline) != (head.step, head.world_size, head.timeline):
            log.warning(
                "%s: rank %d's shard is step %d/%d ranks/timeline %s, rank 0's is %d/%d/%s: "
                "not committing",
                folder, s.rank, s.step, s.world_size, s.timeline,
                head.step, head.world_size, head.timeline,
            )  # fmt: skip
            return None
    dcp_files: tuple[FileEntry, ...] = ()
    if any(s.dtensors for s in shards):
        from baige.ckpt.dcp_io import write_metadata  # noqa: PLC0415 - torch only for DCP

        meta_path = write_metadata(folder, shards)
        size, crc = crc32_file(meta_path)
        dcp_files = (FileEntry(str(meta_path.relative_to(folder)), size, crc),)
    manifest = Manifest(head.step, head.world_size, head.timeline, tuple(shards), dcp_files)
    body = json.dumps(manifest.to_dict(), indent=1).encode()
    write_file(folder, MANIFEST, [body], writer)
    fsync_dir(folder)
    return manifest


def _invalidate_stale(folder: Path, rec: SlotRecord, rank: int) -> None:
    """A step folder written by an abandoned run (another timeline), or by an older save of
    this rank, stops being trusted before any of its files are replaced."""
    path = folder / MANIFEST
    if not path.exists():
        return
    try:
        man = read_manifest(folder)
        mine = man.shard(rank) if rank < man.world_size else None
        stale = (
            man.timeline != rec.timeline
            or man.world_size != rec.world_size
            or mine is None
            or mine.seq != rec.seq
        )
    except CorruptCheckpoint:
        stale = True
    if stale:
        path.unlink()
        fsync_dir(folder)


def _write_dcp(
    folder: Path,
    rank: int,
    entries: Sequence[TensorEntry],
    dmeta: dict[str, dict[str, object]],
    image: memoryview,
    data_start: int,
) -> list[DTensorChunk]:
    from baige.ckpt.dcp_io import write_chunks  # noqa: PLC0415 - torch only for DCP

    todo: list[tuple[DTensorChunk, memoryview]] = []
    for e in entries:
        info = dmeta.get(e.key)
        if info is None or not info.get("persist", False):
            continue
        chunk = DTensorChunk(
            fqn=str(info["fqn"]),
            path=tuple(_keys(info["path"])),
            dtype=e.dtype,
            global_shape=tuple(_ints(info["global_shape"])),
            offsets=tuple(_ints(info["offsets"])),
            sizes=e.shape,
            file="",
            offset=0,
            length=0,
        )
        todo.append((chunk, image[data_start + e.start : data_start + e.end]))
    return write_chunks(folder, rank, todo) if todo else []


def _ints(value: object) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(v, int) for v in value):
        raise CorruptCheckpoint(f"slot metadata: expected a list of integers, got {value!r}")
    return value


def _keys(value: object) -> list[str | int]:
    if not isinstance(value, list) or not all(isinstance(v, str | int) for v in value):
        raise CorruptCheckpoint(f"slot metadata: expected a key path, got {value!r}")
    return value
