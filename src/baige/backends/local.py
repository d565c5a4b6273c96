"""The local backend: replicas as real processes on this machine.

Each replica gets a run directory (``RUNS/<replica id>``) holding its output, the pid of its
shim and, once it ends, its exit status. Because those files — not this process's memory —
are the record, a control plane killed with ``kill -9`` and restarted re-adopts every
running replica and learns how the ones that ended meanwhile ended. Accelerators reach a
replica only through its vendor's visibility variable, set by the controller.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from baige.backends.base import ReplicaLaunch, ReplicaObservation, ReplicaState

__all__ = ["LocalBackend"]

STOP_GRACE_S = 10.0
LAUNCH_GRACE_S = 15.0  # a shim that has not written its pid by then is considered lost


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _alive(pid: int, rundir: Path) -> bool:
    """The pid is running and is the shim of this run directory (pids are reused)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    if str(rundir).encode() not in cmdline:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"  # a zombie has ended


class LocalBackend:
    """Runs replicas on this machine, recording everything under ``runs``."""

    name = "local"

    def __init__(self, runs: Path) -> None:
        self.runs = runs
        self.runs.mkdir(parents=True, exist_ok=True)
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._stopping: dict[str, float] = {}

    def rundir(self, replica_id: str) -> Path:
        return self.runs / replica_id

    def log_path(self, replica_id: str) -> Path:
        return self.rundir(replica_id) / "output.log"

    def launch(self, replica: ReplicaLaunch) -> ReplicaObservation:
        rundir = self.rundir(replica.id)
        if (rundir / "launch.json").exists():  # launched before (maybe by a previous life)
            return self._observe_one(replica.id)
        rundir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **replica.env}
        port = None
        if replica.want_port:
            port = _free_port()
            env["PORT"] = env["BAIGE_PORT"] = str(port)
        started = time.time()
        meta = {"workload": replica.workload_id, "node": replica.node, "port": port,
                "started_at": started, "command": list(replica.command)}  # fmt: skip
        temporary = rundir / "launch.tmp"
        temporary.write_text(json.dumps(meta))
        os.replace(temporary, rundir / "launch.json")
        cwd = (
            replica.working_dir
            if replica.working_dir and Path(replica.working_dir).is_dir()
            else None
        )
        try:
            child = subprocess.Popen(
                [sys.executable, "-m", "baige.backends.shim", str(rundir), "--", *replica.command],
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as err:
            (rundir / "exit").write_text("127")
            return ReplicaObservation(
                replica.id, ReplicaState.FAILED, reason=f"cannot start: {err}"
            )
        self._children[replica.id] = child
        if not (rundir / "pid").exists():
            (rundir / "pid.tmp").write_text(str(child.pid))
            with contextlib.suppress(OSError):
                os.replace(rundir / "pid.tmp", rundir / "pid")
        return ReplicaObservation(
            replica.id,
            ReplicaState.RUNNING,
            pid=child.pid,
            port=port,
            log_path=str(rundir / "output.log"),
            started_at=started,
        )

    def stop(self, replica_id: str) -> None:
        pid = self._pid(replica_id)
        self._stopping.setdefault(replica_id, time.time())
        child = self._children.get(replica_id)
        ours = child is not None and child.poll() is None
        if pid is not None and (ours or _alive(pid, self.rundir(replica_id))):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)

    def _pid(self, replica_id: str) -> int | None:
        try:
            return int((self.rundir(replica_id) / "pid").read_text())
        except (OSError, ValueError):
            return None

    def _observe_one(self, replica_id: str) -> ReplicaObservation:
        rundir = self.rundir(replica_id)
        child = self._children.get(replica_id)
        if child is not None and child.poll() is not None:  # reap our own children
            del self._children[replica_id]
        try:
            meta = json.loads((rundir / "launch.json").read_text())
        except (OSError, ValueError):
            return ReplicaObservation(replica_id, ReplicaState.LOST, reason="never launched here")
        port = meta.get("port")
        started = meta.get("started_at")
        log = str(rundir / "output.log")
        stopping = replica_id in self._stopping
        ended = self._ended(replica_id, port, log, started)
        if ended is not None:
            return ended
        pid = self._pid(replica_id)
        alive = pid is not None and _alive(pid, rundir)
        if not alive:
            # the shim writes the exit status and then exits: look again, in case it did
            # both between the first look and the liveness check
            ended = self._ended(replica_id, port, log, started)
            if ended is not None:
                return ended
        if pid is not None and alive:
            since = self._stopping.get(replica_id)
            if since is not None and time.time() - since > STOP_GRACE_S:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
            return ReplicaObservation(
                replica_id, ReplicaState.RUNNING, pid, None, port, log, started
            )
        starting = started is not None and time.time() - started < LAUNCH_GRACE_S
        child = self._children.get(replica_id)
        if starting or (child is not None and child.poll() is None):
            # between fork and exec /proc shows the parent's command line: not lost yet
            return ReplicaObservation(
                replica_id, ReplicaState.RUNNING, None, None, port, log, started
            )
        self._stopping.pop(replica_id, None)
        state = ReplicaState.STOPPED if stopping else ReplicaState.LOST
        return ReplicaObservation(
            replica_id, state, pid, None, port, log, started, time.time(),
            reason="" if stopping else "the replica's process vanished without an exit status",
        )  # fmt: skip

    def _ended(
        self, replica_id: str, port: int | None, log: str, started: float | None
    ) -> ReplicaObservation | None:
        """The replica's exit status, if its shim has written one."""
        exit_file = self.rundir(replica_id) / "exit"
        try:
            text = exit_file.read_text()
            finished = exit_file.stat().st_mtime
        except OSError:
            return None
        try:
            code = int(text)
        except ValueError:
            code = -1
        if self._stopping.pop(replica_id, None) is not None:
            state = ReplicaState.STOPPED
        else:
            state = ReplicaState.SUCCEEDED if code == 0 else ReplicaState.FAILED
        return ReplicaObservation(replica_id, state, None, code, port, log, started, finished)

    def observe(self, replica_ids: Iterable[str]) -> dict[str, ReplicaObservation]:
        return {rid: self._observe_one(rid) for rid in replica_ids}
