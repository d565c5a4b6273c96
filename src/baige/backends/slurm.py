"""The Slurm backend: Baige decides, Slurm executes on the nodes Baige names.

Each replica is one Slurm job (``sbatch --nodelist=NODE --gres=gpu:TYPE:N``) named
``baige-<replica id>``, whose batch script runs the same shim as the local backend: the
shim records the command's output and exit status in the replica's run directory (on a
cluster, a shared filesystem), so exit codes are known without Slurm accounting. Slurm binds
the cards itself and sets ``CUDA_VISIBLE_DEVICES``; Baige's own device indices are dropped.

Robust to slurmctld restarting: every call is retried with backoff, a launch first looks the
job up by name (a retried ``sbatch`` never submits twice), and a controller that cannot reach
Slurm reports "no news" rather than "lost". A Slurm job that vanishes without an exit status
is reported lost, and the workload is restarted by the control plane.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from baige.backends.base import ReplicaLaunch, ReplicaObservation, ReplicaState
from baige.backends.identity import TenantUsers, clean_env, own_identity
from baige.backends.peers import peer_env
from baige.hw.catalog import UnknownAcceleratorError, get_chip

__all__ = ["SlurmBackend", "SlurmError", "SlurmNodeInfo"]

_TRANSIENT = (
    "Unable to contact slurm controller",
    "Socket timed out",
    "Connection refused",
    "Zero Bytes were transmitted",
    "slurm_load_",
    "Communication connection failure",
)
_LIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING"}


class SlurmError(RuntimeError):
    """Slurm refused a request, or stayed unreachable through every retry."""


@dataclass(frozen=True, slots=True)
class SlurmNodeInfo:
    """A Slurm node as Baige registers it."""

    name: str
    accel_type: str  # catalog key ("" when it has no GPU GRES Baige knows)
    slurm_gpu_type: str
    gpus: int
    cpus: int
    memory_mb: int
    drained: bool
    down: bool
    reason: str


def _json_errors(text: str) -> str:
    """The errors a ``--json`` answer carries, as one line ("" when there are none)."""
    try:
        data = json.loads(text or "{}")
    except ValueError:
        return f"unreadable JSON from Slurm: {text[:200]!r}"
    errors = data.get("errors") if isinstance(data, dict) else None
    if not errors:
        return ""
    return "; ".join(
        f"{e.get('source', '?')}: {e.get('description') or e.get('error', '?')}"
        if isinstance(e, dict)
        else str(e)
        for e in errors
    )


class SlurmBackend:
    """Launch, stop and observe replicas as Slurm jobs."""

    name = "slurm"

    def __init__(
        self,
        runs: Path,
        env: Mapping[str, str] | None = None,
        *,
        partition: str | None = None,
        retry_seconds: float = 60.0,
        users: TenantUsers | None = None,
    ) -> None:
        self.runs = runs
        self.runs.mkdir(parents=True, exist_ok=True)
        self.env = dict(os.environ if env is None else env)
        self.users = users  # None: jobs run as this process's user
        if users is not None:
            self.runs.chmod(0o711)  # each job reaches its own run directory, lists none
        self.partition = partition
        self.retry_seconds = retry_seconds
        self._gres: dict[str, str] = {}  # catalog key -> the GRES type name Slurm uses
        self._address: dict[str, str] = {}  # node name -> the address Slurm reaches it at
        self._stopping: set[str] = set()

    # -- calling Slurm -------------------------------------------------------------------

    def _call(self, *args: str, retry: bool = True) -> str:
        """Run a Slurm command; retry transient failures with backoff, then raise."""
        deadline = time.monotonic() + (self.retry_seconds if retry else 0)
        delay = 0.5
        while True:
            try:
                done = subprocess.run(
                    args, env=self.env, capture_output=True, text=True, timeout=60, check=False
                )
            except (OSError, subprocess.TimeoutExpired) as err:
                message = str(err)
            else:
                # Slurm 22.05's --json commands exit 0 with an "errors" list and no data when
                # the controller is down: that is "unreachable", not "no jobs".
                problem = _json_errors(done.stdout) if "--json" in args else ""
                if done.returncode == 0 and not problem:
                    return done.stdout
                message = problem or (done.stderr or done.stdout).strip()
                if not any(marker in message for marker in _TRANSIENT):
                    raise SlurmError(f"{args[0]}: {message}")
            if time.monotonic() + delay > deadline:
                raise SlurmError(f"{args[0]}: Slurm unreachable ({message})")
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _jobs(self, retry: bool) -> dict[str, dict[str, object]]:
        """Baige's jobs Slurm still knows, by job name."""
        data = json.loads(self._call("squeue", "--json", retry=retry) or "{}")
        return {
            str(job.get("name")): job
            for job in data.get("jobs", [])
            if str(job.get("name", "")).startswith("baige-")
        }

    def inventory(self) -> list[SlurmNodeInfo]:
        """Slurm's nodes, with GPU GRES mapped to catalog types."""
        data = json.loads(self._call("sinfo", "--json") or "{}")
        nodes = []
        for node in data.get("nodes", []):
            gres = str(node.get("gres") or "")
            accel, slurm_type, gpus = "", "", 0
            for item in gres.split(","):
                parts = item.split("(")[0].split(":")
                if parts[0] == "gpu" and len(parts) == 3:
                    slurm_type, gpus = parts[1], int(parts[2])
                    with contextlib.suppress(UnknownAcceleratorError):
                        accel = get_chip(slurm_type).key
            if accel:
                self._gres[accel] = slurm_type
            self._address[str(node["name"])] = str(
                node.get("address") or node.get("hostname") or node["name"]
            )
            state = str(node.get("state") or "").lower()
            flags = [str(f).upper() for f in node.get("state_flags") or []]
            nodes.append(
                SlurmNodeInfo(
                    name=str(node["name"]),
                    accel_type=accel,
                    slurm_gpu_type=slurm_type,
                    gpus=gpus,
                    cpus=int(node.get("cpus") or 0),
                    memory_mb=int(node.get("real_memory") or 0),
                    drained="DRAIN" in flags or state in ("drain", "drained", "draining"),
                    down=state in ("down", "fail", "unknown") or "NOT_RESPONDING" in flags,
                    reason=str(node.get("reason") or ""),
                )
            )
        return nodes

    def set_drain(self, node: str, drained: bool, reason: str) -> None:
        if drained:
            self._call("scontrol", "update", f"nodename={node}", "state=drain", f"reason={reason}")
        else:
            self._call("scontrol", "update", f"nodename={node}", "state=resume")

    # -- the backend protocol ------------------------------------------------------------

    def rundir(self, replica_id: str) -> Path:
        return self.runs / replica_id

    def launch(self, replica: ReplicaLaunch) -> ReplicaObservation:
        rundir = self.rundir(replica.id)
        rundir.mkdir(parents=True, exist_ok=True)
        name = f"baige-{replica.id}"
        if not (rundir / "slurm_job_id").exists():
            existing = self._jobs(retry=True).get(name)  # a retried launch never submits twice
            job_id = str(existing["job_id"]) if existing else self._submit(replica, rundir, name)
            (rundir / "slurm_job_id").write_text(job_id)
        return self.observe([replica.id])[replica.id]

    def _submit(self, replica: ReplicaLaunch, rundir: Path, name: str) -> str:
        identity = own_identity()
        if self.users is not None:
            try:
                identity = self.users.identity(replica.tenant)
            except OSError as err:
                raise SlurmError(f"cannot run as the tenant's user: {err}") from err
        # the job's environment travels in a file only it reads, never as sbatch's (the
        # control plane's) environment: the shim gives the command exactly this, plus the
        # variables Slurm sets
        env = clean_env(identity, {**replica.env, "BAIGE_REPLICA_ID": replica.id})
        if replica.master_node and "MASTER_ADDR" in env:
            # the replicas meet on replica 0's node, wherever Slurm runs this one
            if replica.master_node not in self._address:
                self.inventory()
            env["MASTER_ADDR"] = self._address.get(replica.master_node, replica.master_node)
        if replica.peer is not None:
            # the replicas' buddy servers, at the addresses Slurm reaches their nodes at
            nodes = {replica.peer.node, *(n for n, _ in replica.peer.fetch_from)}
            if not nodes <= self._address.keys():
                self.inventory()
            env.update(peer_env(replica.peer, lambda node: self._address.get(node, node)))
        if replica.visibility_env:
            env.pop(replica.visibility_env, None)  # Slurm binds the cards and sets it
        env_file = rundir / "env.json"
        descriptor = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            json.dump(env, handle)
        script = rundir / "job.sh"
        shim = [sys.executable, "-m", "baige.backends.shim", str(rundir), "--env", str(env_file)]
        if replica.working_dir:
            shim += ["--cwd", replica.working_dir]  # gone by then: fails, never elsewhere
        script.write_text(
            f'#!/bin/sh\nexec {" ".join(shlex.quote(a) for a in [*shim, "--"])} "$@"\n'
        )
        script.chmod(0o755)
        if identity.uid is not None:
            for path in (rundir, env_file, script):  # the job (its shim) writes here
                os.chown(path, identity.uid, identity.gid if identity.gid is not None else -1)
        gres_type = self._gres.get(replica.accel_type)
        if gres_type is None:
            self.inventory()
            gres_type = self._gres.get(replica.accel_type, replica.accel_type)
        args = [
            "sbatch", "--parsable", f"--job-name={name}", f"--comment={replica.workload_id}",
            f"--nodelist={replica.node}", "--nodes=1", "--ntasks=1",
            f"--output={rundir / 'slurm.out'}",
            # Baige reschedules a replica whose node fails; Slurm requeueing it too (its
            # default) would start it twice once the node is back
            "--no-requeue",
            # the job gets PATH and Slurm's own variables, not the control plane's environment
            "--export=PATH",
        ]  # fmt: skip
        if identity.uid is not None:  # as root: the tenant's user (sbatch --uid needs root)
            args += [f"--uid={identity.uid}", f"--gid={identity.gid}"]
        if replica.devices:
            args.append(f"--gres=gpu:{gres_type}:{len(replica.devices)}")
        if replica.cpu_milli:  # Slurm allocates whole CPUs; Baige already counted them
            args.append(f"--cpus-per-task={-(-replica.cpu_milli // 1000)}")
        if replica.memory_mib:
            args.append(f"--mem={replica.memory_mib}M")
        if self.partition:
            args.append(f"--partition={self.partition}")
        if replica.working_dir:
            args.append(f"--chdir={replica.working_dir}")
        args += [str(script), *replica.command]
        return self._call(*args).strip().split(";")[0]

    def stop(self, replica_id: str) -> None:
        self._stopping.add(replica_id)
        with contextlib.suppress(SlurmError):
            self._call("scancel", f"--name=baige-{replica_id}")

    def _exit(self, replica_id: str) -> ReplicaObservation | None:
        rundir = self.rundir(replica_id)
        try:
            code = int((rundir / "exit").read_text())
            finished = (rundir / "exit").stat().st_mtime
        except (OSError, ValueError):
            return None
        if replica_id in self._stopping:
            state = ReplicaState.STOPPED
        else:
            state = ReplicaState.SUCCEEDED if code == 0 else ReplicaState.FAILED
        log = str(rundir / "output.log")
        return ReplicaObservation(replica_id, state, None, code, None, log, None, finished)

    def observe(self, replica_ids: Iterable[str]) -> dict[str, ReplicaObservation]:
        ids = list(replica_ids)
        try:
            jobs: dict[str, dict[str, object]] | None = self._jobs(retry=False)
        except (SlurmError, ValueError):
            jobs = None  # Slurm is unreachable: no news, not "lost"
        out: dict[str, ReplicaObservation] = {}
        for replica_id in ids:
            rundir = self.rundir(replica_id)
            log = str(rundir / "output.log")
            ended = self._exit(replica_id)
            if ended is not None:
                out[replica_id] = ended
                continue
            job = None if jobs is None else jobs.get(f"baige-{replica_id}")
            if jobs is None or (job is not None and str(job.get("job_state")) in _LIVE):
                out[replica_id] = ReplicaObservation(replica_id, ReplicaState.RUNNING, log_path=log)
                continue
            if not (rundir / "slurm_job_id").exists():
                out[replica_id] = ReplicaObservation(
                    replica_id, ReplicaState.LOST, reason="never launched"
                )
                continue
            ended = self._exit(replica_id)  # it may have finished between the two looks
            if ended is not None:
                out[replica_id] = ended
                continue
            stopped = replica_id in self._stopping
            why = "" if stopped else "the Slurm job vanished without an exit status"
            if job is not None:
                why = f"Slurm job ended {job.get('job_state')} ({job.get('state_reason')})"
            out[replica_id] = ReplicaObservation(
                replica_id,
                ReplicaState.STOPPED if stopped else ReplicaState.LOST,
                log_path=log,
                finished_at=time.time(),
                reason=why,
            )
        return out
