"""The local backend: replicas as real processes on this machine.

Each replica gets a run directory (``RUNS/<replica id>``) holding its output, the pid of its
shim and, once it ends, its exit status. Because those files — not this process's memory —
are the record, a control plane killed with ``kill -9`` and restarted re-adopts every
running replica and learns how the ones that ended meanwhile ended. Accelerators reach a
replica only through its vendor's visibility variable, set by the controller.

Isolation: a replica starts from a clean environment (never the control plane's), and with
``users`` (what ``baige up`` as root passes) its command runs as its tenant's unprivileged
user, whose HOME is its own and who can read neither the admin token, nor the database, nor
any run directory. A replica's processes share its shim's process group and carry its id in
``BAIGE_REPLICA_ID``: a replica reported lost or stopped has every such process killed first,
so a relaunch never finds the previous generation still on the cards.
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

from baige.api.workloads import InferenceServiceSpec, TrainingJobSpec
from baige.backends.base import ReplicaLaunch, ReplicaObservation, ReplicaState
from baige.backends.identity import Identity, TenantUsers, clean_env, own_identity

__all__ = ["LocalBackend", "replica_processes"]

STOP_GRACE_S = 10.0
LAUNCH_GRACE_S = 15.0  # a shim that has not written its pid by then is considered lost
REAP_WAIT_S = 5.0  # how long a lost replica's leftovers may take to die before a relaunch


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


def replica_processes(replica_id: str, pgid: int | None = None) -> list[int]:
    """Processes of this replica still running: in its shim's process group, or carrying its
    id in their environment (a child that left the group)."""
    marker = f"BAIGE_REPLICA_ID={replica_id}".encode()
    found = []
    me = os.getpid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        pid = int(entry.name)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
            if stat[0] == "Z":
                continue
            if pgid is not None and int(stat[2]) == pgid:
                found.append(pid)
                continue
            if marker in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                found.append(pid)
        except (OSError, ValueError, IndexError):
            continue
    return found


def _kill_all(replica_id: str, pgid: int | None, wait: float) -> bool:
    """SIGKILL every process of the replica; True once none is left (within ``wait``)."""
    deadline = time.monotonic() + wait
    while True:
        pids = replica_processes(replica_id, pgid)
        if not pids:
            return True
        if pgid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


class LocalBackend:
    """Runs replicas on this machine, recording everything under ``runs``."""

    name = "local"

    def __init__(
        self,
        runs: Path,
        *,
        users: TenantUsers | None = None,
        allowed_workdirs: list[Path] | None = None,
        launch_grace_s: float = LAUNCH_GRACE_S,
        fake_speeds: dict[str, float] | None = None,
    ) -> None:
        self.launch_grace_s = launch_grace_s
        # fake cards by type -> their declared speed, given to replicas as BAIGE_FAKE_SPEED
        self.fake_speeds = dict(fake_speeds or {})
        self.runs = runs
        self.runs.mkdir(parents=True, exist_ok=True)
        self.users = users  # None: replicas run as this process's user
        self.allowed_workdirs = [Path(os.path.realpath(p)) for p in allowed_workdirs or []]
        if users is not None:
            self.runs.chmod(0o711)  # replicas may not list other replicas' run directories
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._stopping: dict[str, float] = {}

    def rundir(self, replica_id: str) -> Path:
        return self.runs / replica_id

    def log_path(self, replica_id: str) -> Path:
        return self.rundir(replica_id) / "output.log"

    def check_launchable(
        self, spec: TrainingJobSpec | InferenceServiceSpec
    ) -> list[dict[str, object]]:
        """What would keep ``spec`` from starting here (checked at submission)."""
        if spec.working_dir is None:
            return []
        return [
            {"field": "working_dir", "message": m} for m in self._workdir_problems(spec.working_dir)
        ]

    def _workdir_problems(self, working_dir: str) -> list[str]:
        if not os.path.isabs(working_dir):
            return [f"working_dir {working_dir!r} must be an absolute path"]
        if not os.path.isdir(working_dir):
            return [
                f"working_dir {working_dir} does not exist on this machine (or is not a directory)"
            ]
        if self.allowed_workdirs:
            real = Path(os.path.realpath(working_dir))
            if not any(real == root or root in real.parents for root in self.allowed_workdirs):
                roots = ", ".join(str(r) for r in self.allowed_workdirs)
                return [f"working_dir {working_dir} is outside the allowed directories ({roots})"]
        return []

    def _fail_launch(self, rundir: Path, replica_id: str, reason: str) -> ReplicaObservation:
        (rundir / "reason").write_text(reason)
        with open(rundir / "output.log", "a", encoding="utf-8") as log:
            log.write(f"baige: {reason}\n")
        (rundir / "exit").write_text("127")
        return ReplicaObservation(
            replica_id, ReplicaState.FAILED, exit_code=127, finished_at=time.time(), reason=reason
        )

    def launch(self, replica: ReplicaLaunch) -> ReplicaObservation:
        rundir = self.rundir(replica.id)
        if (rundir / "launch.json").exists():  # launched before (maybe by a previous life)
            return self._observe_one(replica.id)
        rundir.mkdir(parents=True, exist_ok=True)
        if self.users is not None:
            rundir.chmod(0o700)  # output and status are the shim's (root's), not the job's
        identity: Identity = own_identity()
        if self.users is not None:
            try:
                identity = self.users.identity(replica.tenant)
            except OSError as err:
                self._write_meta(rundir, replica, None, time.time())
                return self._fail_launch(
                    rundir, replica.id, f"cannot run as the tenant's user: {err}"
                )
        env = clean_env(identity, {**replica.env, "BAIGE_REPLICA_ID": replica.id})
        if replica.accel_type in self.fake_speeds:  # paced by baige.train.pacing
            env["BAIGE_FAKE_SPEED"] = f"{self.fake_speeds[replica.accel_type]:g}"
            env["BAIGE_FAKE_SPEED_FASTEST"] = f"{max(self.fake_speeds.values()):g}"
        if replica.hetero_plan:  # the split baige.train.hetero reads (a job spanning types)
            # an isolated replica cannot enter its run directory (0700, the shim's): its
            # plan sits beside it, in the runs directory it may traverse but not list
            plan = (
                rundir / "hetero-plan.json"
                if self.users is None
                else self.runs / f"{replica.id}.hetero-plan.json"
            )
            plan.write_text(replica.hetero_plan, encoding="utf-8")
            plan.chmod(0o644)  # it says only which rank is which chip and its batch share
            env["BAIGE_HETERO_PLAN"] = str(plan)
        port = None
        if replica.want_port:
            port = _free_port()
            env["PORT"] = env["BAIGE_PORT"] = str(port)
        started = time.time()
        self._write_meta(rundir, replica, port, started)
        cwd = replica.working_dir
        if cwd is not None:
            problems = self._workdir_problems(cwd)
            if problems:  # never fall back to the control plane's own directory
                return self._fail_launch(rundir, replica.id, problems[0])
        elif identity.uid is not None:
            cwd = identity.home  # not the control plane's directory
        else:
            cwd = os.getcwd()  # no isolation: where `baige up` runs, as always
        options = ["--cwd", cwd]
        if identity.uid is not None:
            options += ["--as", f"{identity.uid}:{identity.gid}"]
        shim = [sys.executable, "-m", "baige.backends.shim", str(rundir), *options, "--"]
        try:
            child = subprocess.Popen(
                [*shim, *replica.command],
                env=env,
                cwd="/",  # the shim passes the working directory on to the command
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

    @staticmethod
    def _write_meta(rundir: Path, replica: ReplicaLaunch, port: int | None, started: float) -> None:
        meta = {"workload": replica.workload_id, "node": replica.node, "port": port,
                "started_at": started, "command": list(replica.command)}  # fmt: skip
        temporary = rundir / "launch.tmp"
        temporary.write_text(json.dumps(meta))
        os.replace(temporary, rundir / "launch.json")

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
        starting = started is not None and time.time() - started < self.launch_grace_s
        child = self._children.get(replica_id)
        if starting or (child is not None and child.poll() is None):
            # between fork and exec /proc shows the parent's command line: not lost yet
            return ReplicaObservation(
                replica_id, ReplicaState.RUNNING, None, None, port, log, started
            )
        # the shim is gone: whatever it started must be too before anyone relaunches
        if not _kill_all(replica_id, pid, REAP_WAIT_S):
            return ReplicaObservation(
                replica_id, ReplicaState.RUNNING, None, None, port, log, started,
                reason="the replica's shim vanished; its processes are being killed",
            )  # fmt: skip
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
        try:
            reason = (self.rundir(replica_id) / "reason").read_text()
        except OSError:
            reason = ""
        if self._stopping.pop(replica_id, None) is not None:
            state = ReplicaState.STOPPED
            _kill_all(replica_id, None, 0.0)  # a stopped replica leaves nothing behind
        else:
            state = ReplicaState.SUCCEEDED if code == 0 else ReplicaState.FAILED
        return ReplicaObservation(
            replica_id, state, None, code, port, log, started, finished, reason=reason
        )

    def observe(self, replica_ids: Iterable[str]) -> dict[str, ReplicaObservation]:
        return {rid: self._observe_one(rid) for rid in replica_ids}
