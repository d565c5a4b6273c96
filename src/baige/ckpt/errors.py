"""The errors a checkpoint can raise, each naming the file, field or step at fault.

They form one tree under ``CheckpointError`` so a training loop can catch "anything the
checkpointer refused" in one place, and tell a full ``/dev/shm`` (fix the machine) from a
failed persist (the state is still in memory; the disk is at fault) by type.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "CheckpointInUse",
    "CorruptCheckpoint",
    "PersistError",
    "SharedMemoryFull",
]


class CheckpointError(Exception):
    """Base class: anything ``baige.ckpt`` refuses or cannot do."""


class SharedMemoryFull(CheckpointError):
    """The state does not fit in host shared memory; raised before anything is overwritten."""


class PersistError(CheckpointError):
    """The background persister failed to write a step; the step is still in shared memory.

    ``step`` is the step that failed, ``message`` the persister's reason (for example
    ``No space left on device``). The persister keeps retrying in the background.
    """

    def __init__(self, step: int, message: str) -> None:
        super().__init__(f"persisting step {step} failed: {message}")
        self.step = step
        self.message = message


class CorruptCheckpoint(CheckpointError):
    """A persisted or in-memory checkpoint failed verification (size, checksum or format)."""


class CheckpointInUse(CheckpointError):
    """Another live trainer process is attached to the same checkpoint directory and rank."""
