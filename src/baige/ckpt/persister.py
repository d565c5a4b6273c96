"""The persister: a detached process per checkpoint directory and rank that writes saves
from shared memory to disk, so the training step never waits for the disk.

It runs in its own session (``start_new_session``), so a trainer killed by SIGKILL, a
crashed rank or a Ctrl-C leaves it running: it finishes persisting what is in memory and
keeps the memory for a restarted trainer to load. It does no collective communication and
needs no process group, so it can never hang a job. One persister per (directory, rank) on
a node is enforced by an flock on its pid file; a dead one holds no lock, which is how the
trainer notices and starts another. When no trainer comes back within ``linger_s`` seconds
it frees the shared memory and exits.

Run as ``python -m baige.ckpt.persister``; it imports torch only for sharded (DCP) state.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import mmap
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from baige.ckpt.control import Control, ErrorRecord, slot_to_persist
from baige.ckpt.manifest import MANIFEST, empty_trash, list_step_dirs, shard_file
from baige.ckpt.peer_client import PeerConfig, PeerPusher, slot_snapshot
from baige.ckpt.peer_protocol import PeerError, read_secret
from baige.ckpt.persist import persist_slot, try_commit
from baige.ckpt.shm import (
    RankFiles,
    locked,
    open_wake,
    process_start,
    read_control,
    try_lock,
    write_control,
)
from baige.ckpt.writer import DiskWriter, writer_from_spec

__all__ = ["Persister", "is_running", "log_path", "main", "spawn"]

log = logging.getLogger("baige.ckpt.persister")

# Idle, the persister sleeps on the wake-up FIFO; this bounds how late it notices a dead
# trainer, a retry time or a lost wake-up.
_IDLE_S = 0.5
_MAX_BACKOFF_S = 30.0


def log_path(root: Path, rank: int) -> Path:
    return root / ".baige-logs" / f"persister-r{rank:05d}.log"


def is_running(files: RankFiles) -> bool:
    """Whether a persister holds this rank's pid lock (a dead process holds none)."""
    fd = try_lock(files.pid)
    if fd is None:
        return True
    os.close(fd)
    return False


def spawn(
    files: RankFiles,
    root: Path,
    keep: int,
    linger_s: float,
    writer: DiskWriter,
    peer: PeerConfig | None = None,
) -> subprocess.Popen[bytes]:
    """Start a persister detached from the trainer's session; its output goes to
    ``log_path``. Returns once it holds its lock, or raises with the log's tail."""
    logfile = log_path(root, files.rank)
    logfile.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "baige.ckpt.persister",
        "--runtime",
        str(files.root),
        "--rank",
        str(files.rank),
        "--dir",
        str(root),
        "--keep",
        str(keep),
        "--linger",
        str(linger_s),
        "--writer",
        json.dumps(writer.spec()),
        *(["--peer", peer.to_json()] if peer is not None else []),
    ]
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p)
    with logfile.open("ab") as out:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env=env,
        )
    deadline = time.monotonic() + 30
    while not is_running(files):
        if proc.poll() is not None and is_running(files):
            break  # another persister won the race; it serves this rank
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = logfile.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the persister for rank {files.rank} did not start:\n{tail}")
        time.sleep(0.005)
    return proc


class Persister:
    """The persister's loop; ``run`` returns when it is told to stop or gives up waiting."""

    def __init__(
        self,
        files: RankFiles,
        root: Path,
        keep: int,
        linger_s: float,
        writer: DiskWriter,
        peer: PeerConfig | None = None,
    ) -> None:
        self.files = files
        self.root = root
        self.keep = keep
        self.linger_s = linger_s
        self.writer = writer
        self.backoff = 1.0
        self.terminating = False
        self._maps: dict[int, tuple[tuple[int, int], mmap.mmap]] = {}
        self.peer = peer
        self.pusher: PeerPusher | None = None

    def run(self) -> int:
        # A trainer probing liveness (``is_running``) holds the lock for an instant; only a
        # lock held for longer is another persister.
        pid_fd = try_lock(self.files.pid)
        deadline = time.monotonic() + 1.0
        while pid_fd is None and time.monotonic() < deadline:
            time.sleep(0.01)
            pid_fd = try_lock(self.files.pid)
        if pid_fd is None:
            log.info("another persister holds %s; exiting", self.files.pid)
            return 0
        os.ftruncate(pid_fd, 0)
        os.write(pid_fd, f"{os.getpid()}\n".encode())
        wake_fd = open_wake(self.files.wake)
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self.pusher = self._start_pusher()
        try:
            self._recover()
            alone_since: float | None = None
            while True:
                now = time.time()
                picked: tuple[int, Control] | None = None
                with locked(self.files.lock):
                    ctl = read_control(self.files.control)
                    if ctl is None:
                        log.info("no control record in %s; exiting", self.files.root)
                        return 0
                    slot = None if self.terminating else slot_to_persist(ctl, now)
                    if slot is not None:
                        ctl.persisting = slot
                        write_control(self.files.control, ctl)
                        picked = (slot, ctl)
                    else:
                        alone_since = self._idle(ctl, now, alone_since)
                        if alone_since is not None and alone_since < 0:
                            return 0
                if picked is not None:
                    self._persist(*picked)
                elif self.terminating:
                    return 0
                else:
                    ready, _, _ = select.select([wake_fd], [], [], _IDLE_S)
                    if ready:
                        with contextlib.suppress(BlockingIOError):
                            os.read(wake_fd, 4096)
        finally:
            if self.pusher is not None:
                self.pusher.close()
            self._unmap()
            os.close(wake_fd)
            os.close(pid_fd)

    def _on_term(self, signum: int, frame: object) -> None:
        self.terminating = True

    def _recover(self) -> None:
        """Undo what a predecessor killed mid-persist left: its claim on a slot, its
        temporary files, and steps whose last shard landed but were never committed."""
        with locked(self.files.lock):
            ctl = read_control(self.files.control)
            if ctl is not None and ctl.persisting is not None:
                log.warning("previous persister died while persisting slot %d", ctl.persisting)
                ctl.persisting = None
                write_control(self.files.control, ctl)
        empty_trash(self.root)
        prefix = f".{shard_file(self.files.rank, '')}"
        for _, folder in list_step_dirs(self.root):
            try:
                for entry in os.scandir(folder):
                    if entry.name.startswith(prefix) and ".tmp" in entry.name:
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(entry.path)
                mine = folder / shard_file(self.files.rank, "json")
                if mine.exists() and not (folder / MANIFEST).exists():
                    try_commit(folder, self.writer)
            except OSError as exc:  # another rank's retention may remove folders meanwhile
                log.warning("recovering %s: %s", folder, exc)

    def _idle(self, ctl: Control, now: float, alone_since: float | None) -> float | None:
        """Decide, under the lock, whether to keep waiting. Returns the time since which no
        trainer is attached, None while one is, or -1 after freeing the memory."""
        pending = any(s.state == "ready" and s.seq > ctl.persisted_seq for s in ctl.slots)
        if ctl.stop and not pending:
            self._free_memory("the trainer closed the checkpointer")
            return -1
        alive = ctl.trainer_pid is not None and (
            process_start(ctl.trainer_pid) == ctl.trainer_start
        )
        if alive and not ctl.stop:
            return None
        since = alone_since if alone_since is not None else now
        if now - since >= self.linger_s:
            if pending:
                log.error(
                    "giving up: no trainer for %.0f s and step %s could not be persisted (%s)",
                    self.linger_s,
                    ctl.error.step if ctl.error else "?",
                    ctl.error.message if ctl.error else "?",
                )
            self._free_memory(f"no trainer attached for {self.linger_s:.0f} s")
            return -1
        return since

    def _free_memory(self, why: str) -> None:
        log.info("freeing shared memory in %s: %s", self.files.root, why)
        self._unmap()
        for path in [*self.files.memory_files(), self.files.pid, self.files.lock]:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        with contextlib.suppress(OSError):
            self.files.root.rmdir()

    def _persist(self, slot: int, ctl: Control) -> None:
        rec = ctl.slots[slot]
        started = time.monotonic()
        try:
            mm = self._mapping(slot, rec.image_len + rec.pkl_len)
            with memoryview(mm) as view:
                result = persist_slot(
                    view, rec, self.root, self.files.rank, self.writer, self.keep,
                    defer_deletes=True,
                )  # fmt: skip
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}"
            log.error("persisting step %d (save %d) failed: %s", rec.step, rec.seq, message)
            with locked(self.files.lock):
                now_ctl = read_control(self.files.control) or ctl
                now_ctl.persisting = None
                now_ctl.error = ErrorRecord(rec.seq, rec.step, message, time.time() + self.backoff)
                write_control(self.files.control, now_ctl)
            self.backoff = min(self.backoff * 2, _MAX_BACKOFF_S)
            return
        self.backoff = 1.0
        elapsed = time.monotonic() - started
        log.info(
            "step %d (save %d) persisted in %.2f s%s%s",
            rec.step,
            rec.seq,
            elapsed,
            "; committed" if result.committed else "",
            f"; deleted steps {list(result.deleted)}" if result.deleted else "",
        )
        with locked(self.files.lock):
            now_ctl = read_control(self.files.control) or ctl
            now_ctl.persisting = None
            skipped = [
                s.step
                for s in now_ctl.slots
                if s.state == "ready" and now_ctl.persisted_seq < s.seq < rec.seq
            ]
            now_ctl.superseded = (now_ctl.superseded + skipped)[-100:]
            now_ctl.persisted_seq = max(now_ctl.persisted_seq, rec.seq)
            now_ctl.persisted_step = rec.step
            if now_ctl.error is not None and now_ctl.error.seq <= rec.seq:
                now_ctl.error = None
            current = now_ctl.slots[slot]
            if current.seq == rec.seq:
                now_ctl.slots[slot] = replace(
                    current, crc_image=result.crc_image, crc_pkl=result.crc_pkl
                )
            write_control(self.files.control, now_ctl)
        empty_trash(self.root)  # the step is committed and recorded; now free old ones
        if self.pusher is not None and self.peer is not None:  # to the buddy, in the background
            rec = replace(rec, crc_image=result.crc_image, crc_pkl=result.crc_pkl)
            item = slot_snapshot(self.files, slot, rec, self.peer.job)
            if item is not None:
                self.pusher.push(*item)

    def _start_pusher(self) -> PeerPusher | None:
        if self.peer is None or self.peer.buddy is None:
            return None
        try:
            secret = read_secret(self.peer.secret_file)
        except PeerError as exc:
            log.error("not pushing to a buddy: %s", exc)
            return None
        client = self.peer.client(self.peer.buddy, secret)
        fallbacks = tuple(self.peer.client(a, secret) for a in self.peer.fallbacks)
        return PeerPusher(client, self.peer.queue, fallbacks)

    def _mapping(self, slot: int, need: int) -> mmap.mmap:
        """The slot mapped read-only, kept from one persist to the next so its pages are
        faulted in once, not on every write; mapped again when the trainer replaced or
        grew the file."""
        with open(self.files.slot(slot), "rb") as f:
            st = os.fstat(f.fileno())
            cached = self._maps.get(slot)
            if cached is not None and cached[0] == (st.st_ino, st.st_size):
                return cached[1]
            if st.st_size < need:
                raise OSError(f"{self.files.slot(slot)}: {st.st_size} bytes, record needs {need}")
            mm = mmap.mmap(f.fileno(), st.st_size, prot=mmap.PROT_READ)
        if cached is not None:
            with contextlib.suppress(BufferError):  # views die with their traceback
                cached[1].close()
        self._maps[slot] = ((st.st_ino, st.st_size), mm)
        return mm

    def _unmap(self) -> None:
        for _, mm in self._maps.values():
            with contextlib.suppress(BufferError):
                mm.close()
        self._maps.clear()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m baige.ckpt.persister")
    parser.add_argument("--runtime", required=True, type=Path)
    parser.add_argument("--rank", required=True, type=int)
    parser.add_argument("--dir", required=True, type=Path)
    parser.add_argument("--keep", required=True, type=int)
    parser.add_argument("--linger", required=True, type=float)
    parser.add_argument("--writer", default='{"kind": "disk"}')
    parser.add_argument("--peer", default=None, help="PeerConfig as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s persister r{args.rank} pid {os.getpid()} %(levelname)s %(message)s",
    )
    writer = writer_from_spec(json.loads(args.writer))
    files = RankFiles(args.runtime, args.rank)
    peer = PeerConfig.from_json(args.peer) if args.peer else None
    return Persister(files, args.dir, args.keep, args.linger, writer, peer).run()


if __name__ == "__main__":
    sys.exit(main())
