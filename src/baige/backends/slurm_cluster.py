"""A real Slurm cluster on this machine, with fake typed GPUs: for tests and development.

Several logical nodes (one ``slurmd -N`` each) with GPU GRES backed by null character devices,
so Slurm allocates cards and sets ``CUDA_VISIBLE_DEVICES`` exactly as on real hardware. It
installs nothing: ``make test`` (as root) installs Debian's Slurm 22.05 and munge. Daemons are
stopped by the pids in their pidfiles, in reverse order — never by process name, so a machine
running another Slurm is not touched. Recipe: shared/docs/slurm-on-one-machine.md.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["SlurmCluster", "SlurmNode", "slurm_available"]


@dataclass(frozen=True, slots=True)
class SlurmNode:
    name: str
    gpu_type: str = "h100"
    gpus: int = 8
    cpus: int = 32
    memory_mb: int = 64_000


def slurm_available() -> str | None:
    """None when a local cluster can be started here, else the reason it cannot."""
    if os.geteuid() != 0:
        return "starting Slurm daemons needs root"
    missing = [b for b in ("slurmctld", "slurmd", "sbatch", "munged") if shutil.which(b) is None]
    if missing:
        names = ", ".join(missing)
        return f"Slurm is not installed (missing {names}): apt-get install slurm-wlm munge"
    if not Path("/etc/munge/munge.key").exists():
        return "munge has no key (/etc/munge/munge.key)"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class SlurmCluster:
    """Start with :meth:`start`, stop with :meth:`stop`; ``env`` holds ``SLURM_CONF``."""

    root: Path
    nodes: tuple[SlurmNode, ...] = (SlurmNode("gpu1"), SlurmNode("gpu2"))
    host: str = field(default_factory=lambda: socket.gethostname().split(".")[0])

    @property
    def conf(self) -> Path:
        return self.root / "etc" / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def _write_config(self) -> None:
        for sub in ("etc", "state", "run", "log", *(f"spool/{n.name}" for n in self.nodes)):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        ctl_port, node_ports = _free_port(), [_free_port() for _ in self.nodes]
        lines = [
            "ClusterName=baige",
            f"SlurmctldHost={self.host}(127.0.0.1)",
            "SlurmUser=root",
            "AuthType=auth/munge",
            f"SlurmctldPort={ctl_port}",
            f"StateSaveLocation={self.root}/state",
            f"SlurmdSpoolDir={self.root}/spool/%n",
            f"SlurmctldPidFile={self.root}/run/slurmctld.pid",
            f"SlurmdPidFile={self.root}/run/slurmd-%n.pid",
            f"SlurmctldLogFile={self.root}/log/slurmctld.log",
            f"SlurmdLogFile={self.root}/log/slurmd-%n.log",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SchedulerType=sched/backfill",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "DefMemPerCPU=1000",
            "SlurmdParameters=config_overrides",
            "GresTypes=gpu",
            "ReturnToService=2",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/filetxt",
            f"JobCompLoc={self.root}/log/jobcomp.txt",
            "MpiDefault=none",
            "SlurmdTimeout=10",
            "MessageTimeout=5",
        ]
        gres = ["AutoDetect=off"]
        for node, port in zip(self.nodes, node_ports, strict=True):
            lines.append(
                f"NodeName={node.name} NodeHostname={self.host} NodeAddr=127.0.0.1 Port={port} "
                f"CPUs={node.cpus} RealMemory={node.memory_mb} "
                f"Gres=gpu:{node.gpu_type}:{node.gpus} State=UNKNOWN"
            )
            devices = self.root / "fakedev" / node.name
            devices.mkdir(parents=True, exist_ok=True)
            for index in range(node.gpus):
                device = devices / f"nvidia{index}"
                if not device.exists():
                    os.mknod(device, 0o666 | 0o020000, os.makedev(1, 3))  # like /dev/null
            gres.append(
                f"NodeName={node.name} Name=gpu Type={node.gpu_type} "
                f"File={devices}/nvidia[0-{node.gpus - 1}]"
            )
        lines.append("PartitionName=gpu Nodes=ALL Default=YES MaxTime=INFINITE State=UP")
        self.conf.write_text("\n".join(lines) + "\n")
        (self.root / "etc" / "gres.conf").write_text("\n".join(gres) + "\n")

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args, env=self.env, capture_output=True, text=True, check=check, timeout=60
        )

    def start(self) -> SlurmCluster:
        reason = slurm_available()
        if reason:
            raise RuntimeError(reason)
        self._write_config()
        self._start_munge()
        self.start_controller()
        for node in self.nodes:
            self._run("slurmd", "-f", str(self.conf), "-N", node.name)
        self.wait_idle()
        return self

    def _start_munge(self) -> None:
        if subprocess.run(["munge", "-n"], capture_output=True, check=False).returncode == 0:
            return  # a munged is already answering
        Path("/run/munge").mkdir(parents=True, exist_ok=True)
        shutil.chown("/run/munge", "munge", "munge")
        subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"], check=True)

    def start_controller(self) -> None:
        self._run("slurmctld", "-f", str(self.conf))
        deadline = time.monotonic() + 30
        while self._run("scontrol", "ping", check=False).stdout.count("UP") == 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"slurmctld did not come up; see {self.root}/log/slurmctld.log")
            time.sleep(0.2)

    def stop_node(self, name: str) -> None:
        """Stop one node's slurmd (its jobs' processes live on, as on a real node that lost
        its daemon); slurmctld marks it down after SlurmdTimeout."""
        self._kill(self.root / "run" / f"slurmd-{name}.pid")

    def start_node(self, name: str) -> None:
        """Start a node's slurmd again; it returns to service when it registers."""
        self._run("slurmd", "-f", str(self.conf), "-N", name)

    def stop_controller(self) -> None:
        self._kill(self.root / "run" / "slurmctld.pid")

    def wait_idle(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        names = {n.name for n in self.nodes}
        while True:
            out = self._run("sinfo", "-h", "-N", "-o", "%N %t", check=False).stdout.split()
            states = dict(zip(out[::2], out[1::2], strict=False))
            if names <= {n for n, s in states.items() if s in ("idle", "mix", "alloc")}:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"Slurm nodes not ready: {states}")
            time.sleep(0.3)

    def _kill(self, pid_file: Path) -> None:
        try:
            pid = int(pid_file.read_text())
        except (OSError, ValueError):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        """Cancel every job, then stop slurmd's and slurmctld by their pids."""
        self._run("scancel", "--full", "-u", "root", check=False)
        for node in reversed(self.nodes):
            self._kill(self.root / "run" / f"slurmd-{node.name}.pid")
        self.stop_controller()
