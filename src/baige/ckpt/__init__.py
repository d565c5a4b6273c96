"""Flash checkpoints for PyTorch training (``baige[train]``).

A save blocks the training step only for a copy of the state into host shared memory; a
persister process that outlives the trainer writes it to disk (safetensors + a JSON
manifest, DCP for sharded state) and commits it atomically; a restarted trainer restores
from memory in seconds, from disk otherwise. See ``docs/ckpt.md``.

Names are imported lazily so that the persister process, which imports this package, does
not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from baige.ckpt.checkpointer import Checkpointer, Restored, SaveStats, Skipped, Status
    from baige.ckpt.errors import (
        CheckpointError,
        CheckpointInUse,
        CorruptCheckpoint,
        PersistError,
        SharedMemoryFull,
    )
    from baige.ckpt.manifest import Manifest, complete_steps, read_manifest
    from baige.ckpt.rng import rng_state, set_rng_state
    from baige.ckpt.writer import DiskWriter, FullDiskWriter, ThrottledWriter

__all__ = [
    "CheckpointError",
    "CheckpointInUse",
    "Checkpointer",
    "CorruptCheckpoint",
    "DiskWriter",
    "FullDiskWriter",
    "Manifest",
    "PersistError",
    "Restored",
    "SaveStats",
    "SharedMemoryFull",
    "Skipped",
    "Status",
    "ThrottledWriter",
    "complete_steps",
    "read_manifest",
    "rng_state",
    "set_rng_state",
]

_WHERE = {
    "Checkpointer": "checkpointer",
    "Restored": "checkpointer",
    "SaveStats": "checkpointer",
    "Skipped": "checkpointer",
    "Status": "checkpointer",
    "CheckpointError": "errors",
    "CheckpointInUse": "errors",
    "CorruptCheckpoint": "errors",
    "PersistError": "errors",
    "SharedMemoryFull": "errors",
    "Manifest": "manifest",
    "complete_steps": "manifest",
    "read_manifest": "manifest",
    "rng_state": "rng",
    "set_rng_state": "rng",
    "DiskWriter": "writer",
    "FullDiskWriter": "writer",
    "ThrottledWriter": "writer",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'baige.ckpt' has no attribute {name!r}")
    return getattr(importlib.import_module(f"baige.ckpt.{module}"), name)
