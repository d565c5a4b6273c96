"""Choosing and reading the step ``Checkpointer.load`` restores.

Every rank lists what it can restore (steps in its shared-memory slots, complete steps on
disk, and with peer checkpoints what a buddy node holds); the ranks take the newest step they
all have; each reads its part, from memory if it holds it, else from its buddy's memory, else
from disk, verifying sizes and CRC-32s as it reads; and they agree again. On
any failure on any rank, all ranks move to the next older step together, and the reason is
logged and returned. Every rank makes the same collective calls whatever happens locally, so
a bad file on one rank can never leave the others waiting.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mmap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch.distributed as dist

from baige.ckpt.control import Control
from baige.ckpt.errors import CheckpointError, CorruptCheckpoint
from baige.ckpt.flatten import MARK_DTENSOR, dtensor_leaves, tensor_leaves, unflatten
from baige.ckpt.manifest import Manifest, complete_steps, quarantine, step_dir, verify_file
from baige.ckpt.persist import DTENSORS_KEY
from baige.ckpt.restore import Shard, read_disk_shard, read_slot
from baige.ckpt.shm import RankFiles

if TYPE_CHECKING:
    from baige.ckpt.peer_client import BuddySource

__all__ = ["Loader", "Restored", "Skipped"]

log = logging.getLogger("baige.ckpt")


@dataclass(frozen=True)
class Skipped:
    """A step ``load`` passed over, and why."""

    step: int
    reason: str


@dataclass(frozen=True)
class Restored:
    """The result of ``load``: the state, its step, where it came from, and what newer
    steps were passed over and why."""

    step: int
    state: dict[str, Any]
    source: Literal["memory", "buddy", "disk"]
    skipped: tuple[Skipped, ...] = ()


class Loader:
    """One rank's side of a load; ``load`` is called by every rank together."""

    def __init__(
        self,
        root: Path,
        rank: int,
        world_size: int,
        files: RankFiles,
        process_group: Any,
        mappings: Sequence[mmap.mmap | None] = (),
        buddy: BuddySource | None = None,
    ) -> None:
        self.root = root
        self.rank = rank
        self.world_size = world_size
        self.files = files
        self.process_group = process_group
        self.mappings = list(mappings)  # the slots as the calling trainer maps them
        self.timeline: str | None = None  # the timeline saves continue on after a load
        self.buddy = buddy  # another node's memory (peer_client), asked after this node's
        self.at_buddy: set[tuple[int, str]] = set()

    def load(
        self, ctl: Control, template: Mapping[str, Any] | None, step: int | None
    ) -> Restored | None:
        """The newest step every rank loads intact, or None (see the module docstring)."""
        if self.world_size > 1 and not (dist.is_available() and dist.is_initialized()):
            raise CheckpointError(
                "load() with world_size > 1 needs torch.distributed initialised, "
                "so that the ranks agree on one step"
            )
        memory = {
            (r.step, r.timeline): i
            for i, r in enumerate(ctl.slots)
            if r.state == "ready" and self.files.slot(i).exists()
        }
        disk = {(s, m.timeline): m for s, m in complete_steps(self.root)}
        self.at_buddy = self.buddy.available() if self.buddy is not None else set()
        local = set(memory) | set(disk) | self.at_buddy
        views = self._gather(sorted(local))
        common = set(views[0]).intersection(*views[1:]) if views else set()
        candidates = sorted(
            (c for c in {tuple(c) for c in common} if step is None or c[0] == step),
            reverse=True,
        )
        targets = dtensor_leaves(template) if template is not None else {}
        into = tensor_leaves(template) if template is not None else None
        skipped: list[Skipped] = []
        for cand_step, timeline in candidates:
            key = (cand_step, timeline)
            result = self._try(key, memory, disk, ctl, targets, into)
            reasons = self._gather(result[2])
            bad = [f"rank {r}: {why}" for r, why in enumerate(reasons) if why]
            if not bad:
                shard, source, _ = result
                assert shard is not None and source is not None
                state = unflatten(shard.skeleton, {**shard.tensors, **targets})
                self.timeline = hashlib.sha1(f"{timeline}/{cand_step}".encode()).hexdigest()[:16]
                if skipped:
                    log.warning(
                        "rank %d: restored step %d from %s after passing over %s",
                        self.rank,
                        cand_step,
                        source,
                        "; ".join(f"step {s.step} ({s.reason})" for s in skipped),
                    )
                return Restored(cand_step, state, source, tuple(skipped))
            reason = "; ".join(bad)
            log.warning("rank %d: not loading step %d: %s", self.rank, cand_step, reason)
            skipped.append(Skipped(cand_step, reason))
            if self.rank == 0 and key in disk and any("[disk]" in b for b in bad):
                moved = quarantine(step_dir(self.root, cand_step))
                if moved is not None:
                    log.warning("moved step %d aside to %s", cand_step, moved)
        if skipped:
            log.warning("rank %d: no loadable checkpoint in %s", self.rank, self.root)
        return None

    def _gather(self, value: Any) -> list[Any]:
        if self.world_size == 1:
            return [value]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, value, group=self.process_group)
        return out

    def _try(
        self,
        key: tuple[int, str],
        memory: dict[tuple[int, str], int],
        disk: dict[tuple[int, str], Manifest],
        ctl: Control,
        targets: dict[str, Any],
        into: Mapping[str, Any] | None,
    ) -> tuple[Shard | None, Literal["memory", "buddy", "disk"] | None, str]:
        """Load this rank's part of one step; returns (shard, source, "") or a reason.
        Every rank returns after the same collectives, whatever happened."""
        shard: Shard | None = None
        source: Literal["memory", "buddy", "disk"] | None = None
        reason = ""
        if key in memory:
            try:
                i = memory[key]
                mapping = self.mappings[i] if i < len(self.mappings) else None
                shard = read_slot(self.files.slot(i), ctl.slots[i], into, mapping)
                source = "memory"
            except (CorruptCheckpoint, OSError) as exc:
                reason = f"[memory] {exc}"
        if shard is None and self.buddy is not None and key in self.at_buddy:
            try:
                rec, buffer, address = self.buddy.fetch(*key)
                shard = read_slot(Path(f"buddy {address}"), rec, into, buffer)
                source, reason = "buddy", ""
            except (CheckpointError, OSError) as exc:
                reason = f"{reason}; [buddy] {exc}" if reason else f"[buddy] {exc}"
        man = disk.get(key)
        if shard is None and man is not None:
            try:
                shard = read_disk_shard(
                    step_dir(self.root, key[0]), man.shard(self.rank % man.world_size), into
                )
                source = "disk"
                reason = ""
                if man.world_size != self.world_size:
                    log.warning(
                        "rank %d: step %d was saved by %d ranks; plain values come from rank %d",
                        self.rank, key[0], man.world_size, self.rank % man.world_size,
                    )  # fmt: skip
            except (CorruptCheckpoint, OSError) as exc:
                reason = f"{reason}; [disk] {exc}" if reason else f"[disk] {exc}"
        if shard is None and not reason:
            reason = "not available"
        saved_dt = _dtensor_keys(shard.skeleton) if shard is not None else set()
        usage = ""
        if saved_dt and not reason:
            missing = sorted(saved_dt - set(targets))
            if missing:
                usage = (
                    f"step {key[0]} holds sharded tensors {missing[:5]}; pass "
                    "load(template=state) with DTensors in the layout wanted now"
                )
        # Sharded tensors: straight from this rank's memory if its chunks are unchanged,
        # else every rank goes through DCP on disk.
        local_ok = (
            not usage
            and source in ("memory", "buddy")
            and shard is not None
            and all(_same_chunk(shard, k, targets[k]) for k in saved_dt)
        )
        flags = self._gather((reason, bool(saved_dt), local_ok, usage))
        usages = sorted({f[3] for f in flags if f[3]})
        if usages:
            raise CheckpointError("; ".join(usages))
        if any(f[0] for f in flags):
            return shard, source, reason
        if not any(f[1] for f in flags):
            return shard, source, ""
        assert shard is not None
        if all(f[2] for f in flags):
            for k in saved_dt:
                targets[k].to_local().copy_(shard.tensors.pop(k))
            return shard, source, ""
        return shard, source, self._load_dcp(key, disk, shard, saved_dt, targets)

    def _load_dcp(
        self,
        key: tuple[int, str],
        disk: dict[tuple[int, str], Manifest],
        shard: Shard,
        saved_dt: set[str],
        targets: dict[str, Any],
    ) -> str:
        reason = ""
        man = disk.get(key)
        folder = step_dir(self.root, key[0])
        if man is None:
            reason = "[disk] sharded tensors must be resharded but the step is not on disk"
        else:
            files = sorted({f.name: f for f in man.dcp_files}.values(), key=lambda f: f.name)
            files += sorted(
                (f for s in man.shards for f in s.files if f.name.startswith("dcp/")),
                key=lambda f: f.name,
            )
            try:
                for i, entry in enumerate(files):
                    if i % self.world_size == self.rank:
                        verify_file(folder, entry)
            except CorruptCheckpoint as exc:
                reason = f"[disk] {exc}"
        flags = self._gather(reason)
        if any(flags):
            return reason or "another rank's DCP files failed verification"
        from baige.ckpt.dcp_io import load_dtensors  # noqa: PLC0415 - DCP only when sharded

        # DCP flattens nested keys with ".", so a flat {fqn: DTensor} names the same items.
        template = {k: targets[k] for k in saved_dt}
        try:
            load_dtensors(template, folder)
        except Exception as exc:
            return f"[disk] DCP load failed: {exc}"
        for k in saved_dt:
            shard.tensors.pop(k, None)
        return ""


def _dtensor_keys(skeleton: Any) -> set[str]:
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, Mapping):
            if len(value) == 1 and MARK_DTENSOR in value:
                found.add(value[MARK_DTENSOR])
                return
            for v in value.values():
                walk(v)
        elif isinstance(value, list | tuple):
            for v in value:
                walk(v)

    walk(skeleton)
    return found


def _same_chunk(shard: Shard, key: str, target: Any) -> bool:
    """Whether this rank saved exactly the target DTensor's local chunk (same global shape,
    offsets, sizes and dtype), so it can be copied back without resharding."""
    saved = shard.tensors.get(key)
    info = json.loads(shard.meta.get(DTENSORS_KEY, "{}")).get(key)
    if saved is None or not isinstance(info, dict):
        return False
    local = target.to_local()
    chunks = target.__create_chunk_list__()
    return bool(
        chunks
        and list(target.shape) == info.get("global_shape")
        and [int(o) for o in chunks[0].offsets] == info.get("offsets")
        and tuple(saved.shape) == tuple(local.shape)
        and saved.dtype == local.dtype
    )
