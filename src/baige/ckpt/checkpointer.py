"""``Checkpointer``: save in the time of a memory copy, persist in the background, restore
from memory after a process restart and from disk otherwise.

A save flattens the state, claims a shared-memory slot (never the one being persisted,
never the newest intact one), copies the tensors into it and marks it ready: that is all a
training step waits for. The rank's persister process (see ``persister``) takes it from
there. ``load`` picks the newest step every rank can restore, preferring memory, verifying
checksums, and falls back step by step when something is missing or corrupt, saying why.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import pickle
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import torch.distributed as dist

from baige.ckpt.control import Control, SlotRecord, newest_ready, slot_for_save
from baige.ckpt.errors import (
    CheckpointError,
    CheckpointInUse,
    PersistError,
)
from baige.ckpt.hostcopy import SlotView
from baige.ckpt.image import plan_image, write_image
from baige.ckpt.loader import Loader, Restored, Skipped
from baige.ckpt.peer_client import BuddySource, PeerConfig
from baige.ckpt.persister import is_running, log_path, spawn
from baige.ckpt.shm import (
    DEFAULT_SHM_ROOT,
    RankFiles,
    Slot,
    check_space,
    locked,
    process_start,
    read_control,
    runtime_dir,
    wake,
    write_control,
)
from baige.ckpt.writer import DiskWriter

__all__ = ["Checkpointer", "Restored", "SaveStats", "Skipped", "Status"]

log = logging.getLogger("baige.ckpt")

_MIB = 1 << 20
ENV_SHM_DIR = "BAIGE_CKPT_SHM_DIR"  # where slots live when shm_dir is not given
_PKL_HEADROOM = 4 * _MIB


@dataclass(frozen=True)
class SaveStats:
    """What one ``save`` cost: ``blocked_s`` in all, of which ``waited_s`` waiting for the
    persister to free a slot (non-zero only when saves come faster than the disk)."""

    step: int
    seq: int
    nbytes: int
    blocked_s: float
    waited_s: float


@dataclass(frozen=True)
class Status:
    saved_step: int | None
    persisted_step: int | None
    persisting: bool
    error: str | None
    superseded: tuple[int, ...] = field(default=())


class Checkpointer:
    """Flash checkpoints for one rank. ``save`` blocks only for the copy into host shared
    memory; ``wait`` blocks until that save is on disk; ``load`` restores the newest step
    all ranks have; ``close`` persists what is pending and frees the shared memory.

    ``rank``/``world_size`` default to torch.distributed's (or ``RANK``/``WORLD_SIZE``);
    with more than one rank, ``load`` needs the default process group (or
    ``process_group``) to agree on a step. ``keep`` complete steps are kept on disk.
    ``linger_s`` is how long shared memory outlives a trainer that never comes back.
    ``writer`` is how the persister writes (``FullDiskWriter``/``ThrottledWriter`` inject
    faults in tests). ``peer`` also pushes every persisted step to a buddy node's memory
    and lets ``load`` restore from it (``peer_client.PeerConfig``).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        rank: int | None = None,
        world_size: int | None = None,
        keep: int = 3,
        shm_dir: str | os.PathLike[str] | None = None,
        linger_s: float = 600.0,
        writer: DiskWriter | None = None,
        process_group: Any = None,
        peer: PeerConfig | None = None,
    ) -> None:
        initialized = dist.is_available() and dist.is_initialized()
        if rank is None:
            rank = dist.get_rank() if initialized else int(os.environ.get("RANK", "0"))
        if world_size is None:
            world_size = (
                dist.get_world_size() if initialized else int(os.environ.get("WORLD_SIZE", "1"))
            )
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(
                f"rank must be in [0, world_size): rank={rank}, world_size={world_size}"
            )
        if keep < 1:
            raise ValueError(
                f"keep must be >= 1 (the newest complete step is always kept), got {keep}"
            )
        if linger_s < 0:
            raise ValueError(f"linger_s must be >= 0, got {linger_s}")
        self.root = Path(directory).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.rank = rank
        self.world_size = world_size
        self.keep = keep
        self.linger_s = linger_s
        self.writer = writer or DiskWriter()
        self.process_group = process_group
        # under `baige run --peer-*` a plain Checkpointer(dir) replicates to the buddy
        self.peer = peer if peer is not None else PeerConfig.from_env()
        if shm_dir is None:  # BAIGE_CKPT_SHM_DIR: tests give each emulated node its own
            shm_dir = os.environ.get(ENV_SHM_DIR) or None
        shm_root = Path(shm_dir) if shm_dir is not None else DEFAULT_SHM_ROOT
        if not shm_root.is_dir():
            raise CheckpointError(f"shm_dir {shm_root} is not a directory (a tmpfs like /dev/shm)")
        self.files = RankFiles(runtime_dir(shm_root, self.root), rank)
        self.timeline = "root"
        self._slots: list[Slot | None] = [None, None]
        self._views: list[SlotView | None] = [None, None]
        self._proc: subprocess.Popen[bytes] | None = None
        self._last_seq = 0
        self._last_step: int | None = None
        self._closed = False
        self._attach()
        self._ensure_persister()

    # ------------------------------------------------------------------ lifecycle

    def _attach(self) -> None:
        me = os.getpid()
        with locked(self.files.lock):
            ctl = read_control(self.files.control) or Control()
            pid = ctl.trainer_pid
            if pid is not None and pid != me and process_start(pid) == ctl.trainer_start:
                raise CheckpointInUse(
                    f"{self.root} rank {self.rank} is in use by live process {pid}; "
                    "one trainer per checkpoint directory and rank"
                )
            ctl.trainer_pid, ctl.trainer_start, ctl.stop = me, process_start(me), False
            write_control(self.files.control, ctl)
            self._last_seq = ctl.seq

    def _ensure_persister(self) -> None:
        if is_running(self.files):
            return
        if self._proc is not None:
            self._proc.poll()  # reap the one that died
        self._proc = spawn(self.files, self.root, self.keep, self.linger_s, self.writer, self.peer)

    def close(self) -> None:
        """Wait until every save is persisted, stop the persister and free shared memory.
        If persisting failed, raise PersistError and keep the memory (and the persister,
        which keeps retrying for ``linger_s``) so nothing is lost."""
        if self._closed:
            return
        try:
            self.wait()
        except BaseException:
            self.detach()
            raise
        self._release_views()
        with locked(self.files.lock):
            ctl = read_control(self.files.control)
            if ctl is not None:
                ctl.stop = True
                ctl.trainer_pid = ctl.trainer_start = None
                write_control(self.files.control, ctl)
        wake(self.files.wake)
        deadline = time.monotonic() + 60
        while is_running(self.files) and time.monotonic() < deadline:
            time.sleep(0.005)
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=5)
        with locked(self.files.lock):  # the persister normally did this already
            for path in self.files.memory_files():
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        for path in (self.files.pid, self.files.lock):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        with contextlib.suppress(OSError):
            self.files.root.rmdir()
        self._closed = True

    def detach(self) -> None:
        """Let go without freeing anything: the persister finishes and keeps the memory for
        a restarted trainer (what a crash does, minus the crash)."""
        if self._closed:
            return
        self._release_views()
        with locked(self.files.lock):
            ctl = read_control(self.files.control)
            if ctl is not None and ctl.trainer_pid == os.getpid():
                ctl.trainer_pid = ctl.trainer_start = None
                write_control(self.files.control, ctl)
        self._closed = True

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.detach()

    def _release_views(self) -> None:
        for i in range(2):
            view, slot = self._views[i], self._slots[i]
            if view is not None:
                view.close()
            if slot is not None:
                slot.close()
            self._views[i] = self._slots[i] = None

    # ------------------------------------------------------------------ save

    def save(self, step: int, state: Mapping[str, Any]) -> SaveStats:
        """Copy ``state`` into shared memory as ``step`` and return; the persister writes
        it to disk in the background. ``state`` is a dict of tensors (CPU or CUDA),
        DTensors and picklable values, nested in dicts, lists and tuples."""
        if self._closed:
            raise CheckpointError("save() on a closed Checkpointer")
        if not isinstance(step, int) or isinstance(step, bool) or step < 0:
            raise ValueError(f"step must be a non-negative integer, got {step!r}")
        started = time.perf_counter()
        plan = plan_image(state, step, self.rank)
        image_len = plan.image_len

        idx, seq, waited = self._claim(step)
        try:
            view = self._slot_view(idx, image_len + _PKL_HEADROOM, plan.on_cuda)
            write_image(plan, view)
            pkl_len = self._pickle_into(idx, image_len, plan.skeleton, plan.on_cuda)
        except BaseException:
            self._abandon(idx, seq)
            raise
        slot = self._slots[idx]
        assert slot is not None
        rec = SlotRecord(
            state="ready",
            seq=seq,
            step=step,
            capacity=slot.capacity,
            image_len=image_len,
            pkl_len=pkl_len,
            world_size=self.world_size,
            timeline=self.timeline,
        )
        with locked(self.files.lock):
            ctl = self._control()
            ctl.slots[idx] = rec
            write_control(self.files.control, ctl)
        wake(self.files.wake)
        self._last_seq, self._last_step = seq, step
        return SaveStats(step, seq, image_len + pkl_len, time.perf_counter() - started, waited)

    def _control(self) -> Control:
        ctl = read_control(self.files.control)
        if ctl is None:  # freed under us (e.g. a linger timeout while we were stopped)
            ctl = Control(trainer_pid=os.getpid(), trainer_start=process_start(os.getpid()))
        return ctl

    def _claim(self, step: int) -> tuple[int, int, float]:
        """Mark a slot as being written; wait only if the persister holds the other slot
        and the free one holds the newest unpersisted save."""
        t0 = time.perf_counter()
        warned = waited = False
        while True:
            with locked(self.files.lock):
                ctl = self._control()
                if ctl.persisting is not None and not is_running(self.files):
                    ctl.persisting = None  # the persister died mid-write; its successor redoes it
                idx = slot_for_save(ctl)
                if idx is not None:
                    old = ctl.slots[idx]
                    if old.state == "ready" and old.seq > ctl.persisted_seq:
                        log.warning(
                            "rank %d: step %d was never persisted (%s) and is replaced by step %d",
                            self.rank,
                            old.step,
                            ctl.error.message if ctl.error else "persister behind",
                            step,
                        )
                        ctl.superseded = [*ctl.superseded, old.step][-100:]
                    ctl.seq += 1
                    ctl.slots[idx] = SlotRecord(state="writing", seq=ctl.seq, step=step,
                                                capacity=old.capacity)  # fmt: skip
                    write_control(self.files.control, ctl)
                    return idx, ctl.seq, (time.perf_counter() - t0) if waited else 0.0
            waited = True
            self._ensure_persister()
            if not warned and time.perf_counter() - t0 > 1.0:
                log.warning(
                    "rank %d: save(%d) waits for the persister (saving faster than the disk)",
                    self.rank,
                    step,
                )
                warned = True
            time.sleep(0.005)

    def _abandon(self, idx: int, seq: int) -> None:
        with locked(self.files.lock):
            ctl = self._control()
            if ctl.slots[idx].seq == seq:
                ctl.slots[idx] = SlotRecord(capacity=ctl.slots[idx].capacity)
                write_control(self.files.control, ctl)

    def _slot_view(self, idx: int, need: int, pin: bool) -> SlotView:
        """This slot mapped with at least ``need`` bytes. The first save reserves both
        slots at once, so a state that does not fit fails before anything is overwritten and
        memory stays flat from then on."""
        capacity = -(-need // (2 * _MIB)) * (2 * _MIB)
        extra = 0
        for i in range(2):
            current = self._slots[i]
            if current is None:
                extra += max(0, capacity - _file_size(self.files.slot(i)))
            elif i == idx and current.capacity < need:
                extra += capacity - current.capacity
        check_space(self.files.root, extra, f"a {need / 2**30:.2f} GiB checkpoint (two slots)")
        for i in range(2):
            if self._slots[i] is None:
                have = _file_size(self.files.slot(i))
                self._slots[i] = Slot(self.files.slot(i), max(have, capacity), create=True)
        slot = self._slots[idx]
        assert slot is not None
        view = self._views[idx]
        if slot.capacity < need:
            if view is not None:
                view.close()
                self._views[idx] = view = None
            slot.grow(capacity)
            log.info("rank %d: slot %d grown to %.1f MiB", self.rank, idx, capacity / _MIB)
        if view is None or (pin and not view.pinned):
            if view is not None:
                view.close()
            view = self._views[idx] = SlotView(slot.map, pin)
        return view

    def _pickle_into(self, idx: int, start: int, skeleton: Any, pin: bool) -> int:
        """Pickle the skeleton straight into the slot after the tensors; if it outgrows the
        slot, pickle to bytes, grow, copy."""
        slot = self._slots[idx]
        assert slot is not None
        out = _Bounded(slot.map, start)
        try:
            pickle.Pickler(out, protocol=pickle.HIGHEST_PROTOCOL).dump(skeleton)
            return out.pos - start
        except _Overflow:
            data = pickle.dumps(skeleton, protocol=pickle.HIGHEST_PROTOCOL)
            self._slot_view(idx, start + len(data) + _PKL_HEADROOM, pin)
            slot = self._slots[idx]
            assert slot is not None
            slot.map[start : start + len(data)] = data
            return len(data)

    # ------------------------------------------------------------------ wait / status

    def wait(self, timeout: float | None = None) -> int | None:
        """Block until this process's newest save is persisted (and, with one rank,
        committed); return its step. Raise PersistError if persisting it failed, and
        TimeoutError after ``timeout`` seconds."""
        target = self._last_seq
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with locked(self.files.lock):
                ctl = read_control(self.files.control)
                if ctl is None or ctl.persisted_seq >= target:
                    return self._last_step if target else None
                if ctl.error is not None and ctl.error.seq >= target:
                    raise PersistError(ctl.error.step, ctl.error.message)
            self._ensure_persister()
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"step {self._last_step} not persisted after {timeout} s")
            time.sleep(0.005)

    def status(self) -> Status:
        with locked(self.files.lock):
            ctl = self._control()
        newest = newest_ready(ctl)
        return Status(
            saved_step=ctl.slots[newest].step if newest is not None else None,
            persisted_step=ctl.persisted_step,
            persisting=ctl.persisting is not None,
            error=ctl.error.message if ctl.error else None,
            superseded=tuple(ctl.superseded),
        )

    @property
    def log_file(self) -> Path:
        """Where this rank's persister writes its log."""
        return log_path(self.root, self.rank)

    # ------------------------------------------------------------------ load

    def load(
        self, template: Mapping[str, Any] | None = None, *, step: int | None = None
    ) -> Restored | None:
        """Restore the newest step that every rank can load intact, from shared memory if it
        holds that step, else from disk; None if there is none. A step that is missing,
        incomplete or fails its checksums on any rank is passed over (logged, and listed in
        ``Restored.skipped``). Sharded (DTensor) state needs ``template``: a state of the
        same structure whose DTensors have the layout wanted now; they are filled in place
        (through torch.distributed.checkpoint when the layout or world size changed).
        ``step`` restores that step only. With several ranks, every rank calls it."""
        if self._closed:
            raise CheckpointError("load() on a closed Checkpointer")
        with locked(self.files.lock):
            ctl = self._control()
        mappings = [slot.map if slot is not None else None for slot in self._slots]
        buddy = BuddySource(self.peer, self.rank) if self.peer and self.peer.sources else None
        loader = Loader(
            self.root, self.rank, self.world_size, self.files, self.process_group, mappings, buddy
        )
        restored = loader.load(ctl, template, step)
        if loader.timeline is not None:
            self.timeline = loader.timeline
        return restored


class _Overflow(Exception):
    pass


class _Bounded(io.RawIOBase):
    """A write-only file over a slot's mapping from ``start`` that refuses to run past it."""

    def __init__(self, mm: Any, start: int) -> None:
        self.mm = mm
        self.pos = start

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        n = len(memoryview(b).cast("B"))
        if self.pos + n > len(self.mm):
            raise _Overflow
        self.mm[self.pos : self.pos + n] = b
        self.pos += n
        return n


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
