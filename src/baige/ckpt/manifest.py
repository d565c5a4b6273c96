"""The persisted layout: one folder per step, one shard per rank, and the manifest that makes
a step complete.

A step folder is trusted only through its ``manifest.json``, written last (temporary name,
fsync, rename, fsync of the folder) once every rank's shard is on disk. It lists every file
with its size and CRC-32, so a truncated, garbled or half-written checkpoint is detected
before it is loaded. Everything here is JSON and file names; no torch, so the persister and
any outside tool can read it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from baige.ckpt.checksum import crc32
from baige.ckpt.errors import CorruptCheckpoint

__all__ = [
    "FORMAT",
    "MANIFEST",
    "VERSION",
    "DTensorChunk",
    "FileEntry",
    "Manifest",
    "ShardManifest",
    "apply_retention",
    "complete_steps",
    "crc32_file",
    "empty_trash",
    "fsync_dir",
    "list_step_dirs",
    "quarantine",
    "read_manifest",
    "read_shard_manifest",
    "retention_plan",
    "shard_file",
    "step_dir",
    "verify_file",
]

FORMAT = "baige-ckpt"
VERSION = 1
MANIFEST = "manifest.json"
_STEP_RE = re.compile(r"^step-(\d{9,})$")
_CRC_CHUNK = 16 << 20
_TRASH = ".trash-"


def step_dir(root: Path, step: int) -> Path:
    return root / f"step-{step:09d}"


def shard_file(rank: int, suffix: str) -> str:
    """``rank-00003.safetensors``, ``rank-00003.pkl``, ``rank-00003.json``."""
    return f"rank-{rank:05d}.{suffix}"


@dataclass(frozen=True)
class FileEntry:
    name: str
    size: int
    crc32: int


@dataclass(frozen=True)
class DTensorChunk:
    """One rank's piece of a sharded tensor, and where DCP stored it."""

    fqn: str
    path: tuple[str | int, ...]
    dtype: str
    global_shape: tuple[int, ...]
    offsets: tuple[int, ...]
    sizes: tuple[int, ...]
    file: str
    offset: int
    length: int


@dataclass(frozen=True)
class ShardManifest:
    """One rank's part of a step: its files and, for sharded state, its DCP chunks."""

    rank: int
    world_size: int
    step: int
    seq: int
    timeline: str
    files: tuple[FileEntry, ...]
    dtensors: tuple[DTensorChunk, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {"format": f"{FORMAT}-shard", "version": VERSION, **asdict(self)}


@dataclass(frozen=True)
class Manifest:
    """A complete step: every rank's shard manifest, plus DCP's own metadata file if any."""

    step: int
    world_size: int
    timeline: str
    shards: tuple[ShardManifest, ...]
    dcp_files: tuple[FileEntry, ...] = ()

    def shard(self, rank: int) -> ShardManifest:
        return self.shards[rank]

    def to_dict(self) -> dict[str, object]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "step": self.step,
            "world_size": self.world_size,
            "timeline": self.timeline,
            "dcp_files": [asdict(f) for f in self.dcp_files],
            "shards": [s.to_dict() for s in self.shards],
        }


def read_shard_manifest(path: Path) -> ShardManifest:
    raw = _load_json(path)
    return _shard(str(path), "", raw)


def read_manifest(folder: Path) -> Manifest:
    """Parse and check a step's manifest; any problem is CorruptCheckpoint naming the field."""
    path = folder / MANIFEST
    raw = _load_json(path)
    name = str(path)
    if raw.get("format") != FORMAT or raw.get("version") != VERSION:
        raise CorruptCheckpoint(
            f"{name}: format/version is {raw.get('format')!r}/{raw.get('version')!r}, "
            f"expected {FORMAT!r}/{VERSION}"
        )
    step = _int(name, "step", raw.get("step"))
    world = _int(name, "world_size", raw.get("world_size"))
    shards_raw = raw.get("shards")
    if not isinstance(shards_raw, list) or len(shards_raw) != world:
        raise CorruptCheckpoint(f"{name}: shards must list {world} ranks")
    shards = tuple(_shard(name, f"shards[{i}].", s) for i, s in enumerate(shards_raw))
    for i, s in enumerate(shards):
        if s.rank != i or s.step != step or s.world_size != world:
            raise CorruptCheckpoint(f"{name}: shards[{i}] is rank {s.rank} of step {s.step}")
    dcp_raw = raw.get("dcp_files", [])
    if not isinstance(dcp_raw, list):
        raise CorruptCheckpoint(f"{name}: dcp_files must be a list")
    dcp = tuple(_file(name, f"dcp_files[{i}].", f) for i, f in enumerate(dcp_raw))
    timeline = raw.get("timeline")
    if not isinstance(timeline, str):
        raise CorruptCheckpoint(f"{name}: timeline must be a string")
    return Manifest(step, world, timeline, shards, dcp)


def list_step_dirs(root: Path) -> list[tuple[int, Path]]:
    """Every ``step-NNNNNNNNN`` folder, oldest first (complete or not)."""
    out = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(root):
            m = _STEP_RE.match(entry.name)
            if m and entry.is_dir():
                out.append((int(m.group(1)), Path(entry.path)))
    return sorted(out)


def complete_steps(root: Path) -> list[tuple[int, Manifest]]:
    """Steps whose manifest parses, newest first. Checksums are checked when loading."""
    out = []
    for step, folder in reversed(list_step_dirs(root)):
        with contextlib.suppress(CorruptCheckpoint):
            man = read_manifest(folder)
            if man.step == step:
                out.append((step, man))
    return out


def crc32_file(path: Path) -> tuple[int, int]:
    """(size, CRC-32) of a file, read in chunks."""
    crc = 0
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(_CRC_CHUNK):
            crc = crc32(chunk, crc)
            size += len(chunk)
    return size, crc


def verify_file(folder: Path, entry: FileEntry) -> None:
    """Raise CorruptCheckpoint unless the file has the manifest's size and checksum."""
    path = folder / entry.name
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise CorruptCheckpoint(f"{path}: missing") from None
    if size != entry.size:
        raise CorruptCheckpoint(f"{path}: {size} bytes, manifest says {entry.size}")
    _, crc = crc32_file(path)
    if crc != entry.crc32:
        raise CorruptCheckpoint(f"{path}: CRC-32 {crc:08x}, manifest says {entry.crc32:08x}")


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def retention_plan(complete: Sequence[int], incomplete: Sequence[int], keep: int) -> list[int]:
    """Steps to delete: complete ones beyond the newest ``keep``, and incomplete ones older
    than the newest complete step (no rank can still be writing those). The newest complete
    step is never deleted."""
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    if not complete:
        return []
    newest_first = sorted(complete, reverse=True)
    newest = newest_first[0]
    doomed = newest_first[keep:] + [s for s in incomplete if s < newest]
    return sorted(doomed)


def apply_retention(root: Path, keep: int, *, defer: bool = False) -> list[int]:
    """Delete what ``retention_plan`` names: the manifest first, so a half-deleted folder is
    never mistaken for a complete checkpoint. Returns the steps deleted. With ``defer`` the
    folders are only renamed out of sight (``.trash-…``, never listed) and ``empty_trash``
    frees their blocks later, so freeing gigabytes does not delay the step's commit."""
    folders = dict(list_step_dirs(root))
    complete = [s for s, _ in complete_steps(root)]
    incomplete = [s for s in folders if s not in complete]
    doomed = retention_plan(complete, incomplete, keep)
    for step in doomed:
        folder = folders[step]
        with contextlib.suppress(FileNotFoundError):
            (folder / MANIFEST).unlink()
        if defer:
            with contextlib.suppress(OSError):
                os.rename(folder, root / f"{_TRASH}{folder.name}-{os.getpid()}")
                continue
        shutil.rmtree(folder, ignore_errors=True)
    return doomed


def empty_trash(root: Path) -> None:
    """Delete the folders ``apply_retention(defer=True)`` set aside."""
    with contextlib.suppress(OSError):
        for entry in os.scandir(root):
            if entry.name.startswith(_TRASH) and entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)


def quarantine(folder: Path) -> Path | None:
    """Move a step that failed verification aside (``step-N.corrupt``): it stays for a human
    to inspect but is never listed, loaded or overwritten again."""
    target = folder.with_name(folder.name + ".corrupt")
    try:
        os.rename(folder, target)
    except OSError:
        return None
    return target


def _load_json(path: Path) -> dict[str, object]:
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise CorruptCheckpoint(f"{path}: missing") from None
    try:
        raw = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptCheckpoint(f"{path}: not JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise CorruptCheckpoint(f"{path}: not a JSON object")
    return raw


def _shard(name: str, where: str, raw: object) -> ShardManifest:
    if not isinstance(raw, dict):
        raise CorruptCheckpoint(f"{name}: {where or 'shard'} is not an object")
    files_raw = raw.get("files")
    if not isinstance(files_raw, list) or not files_raw:
        raise CorruptCheckpoint(f"{name}: {where}files must be a non-empty list")
    files = tuple(_file(name, f"{where}files[{i}].", f) for i, f in enumerate(files_raw))
    dts_raw = raw.get("dtensors", [])
    if not isinstance(dts_raw, list):
        raise CorruptCheckpoint(f"{name}: {where}dtensors must be a list")
    timeline = raw.get("timeline")
    if not isinstance(timeline, str):
        raise CorruptCheckpoint(f"{name}: {where}timeline must be a string")
    return ShardManifest(
        rank=_int(name, f"{where}rank", raw.get("rank")),
        world_size=_int(name, f"{where}world_size", raw.get("world_size")),
        step=_int(name, f"{where}step", raw.get("step")),
        seq=_int(name, f"{where}seq", raw.get("seq")),
        timeline=timeline,
        files=files,
        dtensors=tuple(_chunk(name, f"{where}dtensors[{i}].", d) for i, d in enumerate(dts_raw)),
    )


def _file(name: str, where: str, raw: object) -> FileEntry:
    if not isinstance(raw, dict):
        raise CorruptCheckpoint(f"{name}: {where.rstrip('.')} is not an object")
    fname = raw.get("name")
    if not isinstance(fname, str) or fname.startswith("/") or ".." in Path(fname).parts:
        raise CorruptCheckpoint(f"{name}: {where}name must be a relative path, got {fname!r}")
    return FileEntry(
        fname,
        _int(name, f"{where}size", raw.get("size")),
        _int(name, f"{where}crc32", raw.get("crc32")),
    )


def _chunk(name: str, where: str, raw: object) -> DTensorChunk:
    if not isinstance(raw, dict):
        raise CorruptCheckpoint(f"{name}: {where.rstrip('.')} is not an object")
    fqn, dtype, file = raw.get("fqn"), raw.get("dtype"), raw.get("file")
    if not isinstance(fqn, str) or not isinstance(dtype, str) or not isinstance(file, str):
        raise CorruptCheckpoint(f"{name}: {where}fqn, dtype and file must be strings")
    path = raw.get("path")
    if not isinstance(path, list) or not all(isinstance(p, str | int) for p in path):
        raise CorruptCheckpoint(f"{name}: {where}path must be a list of keys")
    return DTensorChunk(
        fqn=fqn,
        path=tuple(path),
        dtype=dtype,
        global_shape=_ints(name, f"{where}global_shape", raw.get("global_shape")),
        offsets=_ints(name, f"{where}offsets", raw.get("offsets")),
        sizes=_ints(name, f"{where}sizes", raw.get("sizes")),
        file=file,
        offset=_int(name, f"{where}offset", raw.get("offset")),
        length=_int(name, f"{where}length", raw.get("length")),
    )


def _int(name: str, field: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise CorruptCheckpoint(f"{name}: {field} must be a non-negative integer, got {value!r}")
    return value


def _ints(name: str, field: str, value: object) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise CorruptCheckpoint(f"{name}: {field} must be a list of integers")
    return tuple(_int(name, f"{field}[{i}]", v) for i, v in enumerate(value))
