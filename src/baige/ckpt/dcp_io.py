"""Sharded (DTensor/FSDP) state on disk in PyTorch Distributed Checkpoint's own format.

Each rank's persister writes the local chunks it owns with DCP's ``FileSystemWriter``
(``dcp/__RANK_0.distcp``), from shared memory and without any process group; the persister
that completes the step merges every rank's chunk list into DCP's ``.metadata``. The result
is an ordinary DCP checkpoint: ``torch.distributed.checkpoint.load`` reads it at any world
size, with or without Baige. Loading goes through that same public API.
"""

from __future__ import annotations

import os
import pickle
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.distributed.checkpoint import state_dict_loader
from torch.distributed.checkpoint.filesystem import FileSystemReader, FileSystemWriter, _StorageInfo
from torch.distributed.checkpoint.metadata import (
    ChunkStorageMetadata,
    Metadata,
    MetadataIndex,
    StorageMeta,
    TensorProperties,
    TensorStorageMetadata,
)
from torch.distributed.checkpoint.planner import (
    SavePlan,
    SavePlanner,
    TensorWriteData,
    WriteItem,
    WriteItemType,
)

from baige.ckpt.flatten import torch_dtype
from baige.ckpt.manifest import DTensorChunk, ShardManifest

__all__ = ["DCP_DIR", "load_dtensors", "write_chunks", "write_metadata"]

DCP_DIR = "dcp"
_METADATA = ".metadata"


class _SlotPlanner(SavePlanner):
    """Hands DCP's writer the chunk tensors, which are views of shared memory."""

    def __init__(self, data: dict[MetadataIndex, torch.Tensor]) -> None:
        self.data = data

    def set_up_planner(self, *args: Any, **kwargs: Any) -> None:
        return None

    def create_local_plan(self) -> SavePlan:
        raise NotImplementedError

    def create_global_plan(self, all_plans: list[SavePlan]) -> tuple[list[SavePlan], Metadata]:
        raise NotImplementedError

    def finish_plan(self, new_plan: SavePlan) -> SavePlan:
        return new_plan

    def resolve_data(self, write_item: WriteItem) -> torch.Tensor:
        return self.data[write_item.index]


def write_chunks(
    folder: Path,
    rank: int,
    chunks: Sequence[tuple[DTensorChunk, memoryview]],
) -> list[DTensorChunk]:
    """Write this rank's chunks as DCP data files under ``folder/dcp``; return the chunks
    with their DCP storage location (file, offset, length) filled in."""
    out = folder / DCP_DIR
    out.mkdir(parents=True, exist_ok=True)
    items: list[WriteItem] = []
    data: dict[MetadataIndex, torch.Tensor] = {}
    by_index: dict[MetadataIndex, DTensorChunk] = {}
    for chunk, raw in chunks:
        dtype = torch_dtype(chunk.dtype)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the slot is mapped read-only on purpose
            tensor = torch.frombuffer(raw, dtype=torch.uint8) if len(raw) else torch.empty(0)
        tensor = tensor.view(dtype).view(chunk.sizes)
        index = MetadataIndex(chunk.fqn, torch.Size(chunk.offsets))
        items.append(
            WriteItem(
                index=index,
                type=WriteItemType.SHARD,
                tensor_data=TensorWriteData(
                    chunk=ChunkStorageMetadata(torch.Size(chunk.offsets), torch.Size(chunk.sizes)),
                    properties=TensorProperties(dtype=dtype),
                    size=torch.Size(chunk.global_shape),
                ),
            )
        )
        data[index] = tensor
        by_index[index] = chunk
    writer = FileSystemWriter(out, sync_files=True, overwrite=True)
    writer.set_up_storage_writer(False, rank=rank, use_collectives=False)
    plan = writer.prepare_local_plan(SavePlan(items))
    done = []
    for result in writer.write_data(plan, _SlotPlanner(data)).wait():
        chunk = by_index[result.index]
        info = result.storage_data
        done.append(
            DTensorChunk(
                fqn=chunk.fqn,
                path=chunk.path,
                dtype=chunk.dtype,
                global_shape=chunk.global_shape,
                offsets=chunk.offsets,
                sizes=chunk.sizes,
                file=f"{DCP_DIR}/{info.relative_path}",
                offset=int(info.offset),
                length=int(info.length),
            )
        )
    return sorted(done, key=lambda c: (c.fqn, c.offsets))


def write_metadata(folder: Path, shards: Sequence[ShardManifest]) -> Path:
    """Merge every rank's chunks into DCP's ``.metadata`` (temporary name, fsync, rename).
    Identical inputs give identical bytes, so two persisters racing to commit agree."""
    sd_meta: dict[str, TensorStorageMetadata] = {}
    storage: dict[MetadataIndex, _StorageInfo] = {}
    planner_data: dict[str, tuple[str | int, ...]] = {}
    for shard in shards:
        for c in shard.dtensors:
            meta = sd_meta.setdefault(
                c.fqn,
                TensorStorageMetadata(
                    TensorProperties(dtype=torch_dtype(c.dtype)), torch.Size(c.global_shape), []
                ),
            )
            index = MetadataIndex(c.fqn, torch.Size(c.offsets))
            if index in storage:
                continue
            meta.chunks.append(ChunkStorageMetadata(torch.Size(c.offsets), torch.Size(c.sizes)))
            storage[index] = _StorageInfo(c.file.removeprefix(f"{DCP_DIR}/"), c.offset, c.length)
            planner_data[c.fqn] = c.path
    metadata = Metadata(
        state_dict_metadata=dict(sd_meta),
        planner_data=planner_data,
        storage_data=storage,
        storage_meta=StorageMeta(),
        version="1.0.0",
    )
    out = folder / DCP_DIR
    out.mkdir(parents=True, exist_ok=True)
    final = out / _METADATA
    tmp = out / f"{_METADATA}.tmp{os.getpid()}"
    with tmp.open("wb") as f:
        pickle.dump(metadata, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)
    return final


def load_dtensors(template: dict[str, Any], folder: Path) -> None:
    """Fill the DTensors of ``template`` (nested like the saved state) in place from the
    step's DCP files; a collective, so every rank calls it with its own template."""
    state_dict_loader.load(template, storage_reader=FileSystemReader(folder / DCP_DIR))
