"""A lab network on one machine: N "nodes" (network namespaces) on one switch (a bridge in a
namespace of its own), every port shaped to a link rate, and the means to slow one node's
port or the path between two nodes. The diagnosis test and ``bench/diagnose_links.py`` use
it; it needs root and ``iproute2`` (``ip``, ``tc``).

Nothing here touches the machine's own network namespace: the bridge, the veth pairs and the
coordinator's port all live in namespaces the lab creates and deletes (deleting a namespace
deletes its interfaces), so a test cannot break the host's networking.

Shaping uses HTB classes: each port's egress (node side and switch side) has a default class
at the link rate; a slow node has both its sides at ``rate / factor``; a slow path between
nodes a and b gets a class at ``rate / factor`` on a's and b's node-side egress, chosen by a
u32 filter on the destination address. ``netem`` would add delay as well, but it is a
module many small kernels (this machine's included) lack; HTB and u32 are everywhere.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["PROBE_PORT", "LabError", "NetLab", "lab_available", "namespaces_left"]

_SUBNET = "10.77.0"
_CTL_HOST = 250
PROBE_PORT = 7077


class LabError(RuntimeError):
    """A lab that could not be built; the message has the command and its error."""


def lab_available() -> str | None:
    """Why a lab cannot be built here, or None if it can."""
    if os.geteuid() != 0:
        return "needs root (network namespaces and tc)"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"needs {tool} (Debian package iproute2)"
    return None


def _run(*args: str) -> None:
    done = subprocess.run(list(args), capture_output=True, text=True, check=False)
    if done.returncode:
        raise LabError(f"{' '.join(args)}: {done.stderr.strip() or done.stdout.strip()}")


@dataclass
class NetLab:
    """``with NetLab(4) as lab: lab.start_probes(); lab.slow_link(0, 1, 5)``."""

    n_nodes: int
    rate_mbit: float = 200.0
    tag: str = field(default_factory=lambda: f"bgd{os.getpid() % 100000}")
    _namespaces: list[str] = field(default_factory=list)
    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _shaped: dict[tuple[str, str], float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 2 <= self.n_nodes <= 200:
            raise ValueError("a lab has 2..200 nodes")

    # ------------------------------------------------------------------ names

    @property
    def switch(self) -> str:
        return f"{self.tag}-sw"

    @property
    def ctl(self) -> str:
        """The coordinator's namespace: run ``baige diagnose`` here (``exec_prefix``)."""
        return f"{self.tag}-ctl"

    def node(self, i: int) -> str:
        return f"{self.tag}-n{i}"

    def ip(self, i: int) -> str:
        return f"{_SUBNET}.{i + 1}"

    def address(self, i: int) -> str:
        return f"{self.ip(i)}:{PROBE_PORT}"

    def name(self, i: int) -> str:
        return f"node{i}"

    def exec_prefix(self, namespace: str) -> list[str]:
        return ["ip", "netns", "exec", namespace]

    # ------------------------------------------------------------------ building

    def __enter__(self) -> NetLab:
        try:
            self.build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def build(self) -> None:
        why = lab_available()
        if why is not None:
            raise LabError(f"cannot build a network lab: {why}")
        self._add_ns(self.switch)
        _run("ip", "-n", self.switch, "link", "add", "br0", "type", "bridge")
        _run("ip", "-n", self.switch, "link", "set", "br0", "up")
        for i in range(self.n_nodes):
            self._attach(self.node(i), f"p{i}", self.ip(i), shaped=True)
        self._attach(self.ctl, "pctl", f"{_SUBNET}.{_CTL_HOST}", shaped=False)

    def _add_ns(self, name: str) -> None:
        with contextlib.suppress(LabError):  # left over from a run killed with SIGKILL
            _run("ip", "netns", "del", name)
        _run("ip", "netns", "add", name)
        self._namespaces.append(name)
        _run("ip", "-n", name, "link", "set", "lo", "up")

    def _attach(self, ns: str, port: str, ip: str, *, shaped: bool) -> None:
        """A namespace with ``eth0`` plugged into switch port ``port``."""
        self._add_ns(ns)
        tmp = f"{self.tag}{port}"[:15]
        _run("ip", "link", "add", tmp, "type", "veth", "peer", "name", f"{tmp}x"[:15])
        _run("ip", "link", "set", tmp, "netns", self.switch, "name", port)
        _run("ip", "link", "set", f"{tmp}x"[:15], "netns", ns, "name", "eth0")
        _run("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
        _run("ip", "-n", ns, "link", "set", "eth0", "up")
        _run("ip", "-n", self.switch, "link", "set", port, "master", "br0")
        _run("ip", "-n", self.switch, "link", "set", port, "up")
        if shaped:
            for where, dev in ((ns, "eth0"), (self.switch, port)):
                _run("tc", "-n", where, "qdisc", "add", "dev", dev, "root", "handle", "1:",
                     "htb", "default", "10", "r2q", "100")  # fmt: skip
                self._class(where, dev, "1:10", self.rate_mbit, add=True)

    def _class(self, ns: str, dev: str, classid: str, mbit: float, *, add: bool) -> None:
        rate = f"{mbit * 1000:.0f}kbit"
        _run("tc", "-n", ns, "class", "add" if add else "change", "dev", dev, "parent", "1:",
             "classid", classid, "htb", "rate", rate, "ceil", rate, "burst", "16k",
             "cburst", "16k")  # fmt: skip

    # ------------------------------------------------------------------ faults

    def slow_node(self, i: int, factor: float) -> None:
        """Node ``i``'s port runs at ``rate / factor``, both ways."""
        rate = self.rate_mbit / factor
        self._class(self.node(i), "eth0", "1:10", rate, add=False)
        self._class(self.switch, f"p{i}", "1:10", rate, add=False)

    def slow_link(self, a: int, b: int, factor: float) -> None:
        """The path between nodes ``a`` and ``b`` runs at ``rate / factor``, both ways."""
        for src, dst in ((a, b), (b, a)):
            ns = self.node(src)
            classid = f"1:{100 + dst}"
            self._class(ns, "eth0", classid, self.rate_mbit / factor, add=True)
            _run("tc", "-n", ns, "filter", "add", "dev", "eth0", "parent", "1:", "protocol",
                 "ip", "prio", "1", "u32", "match", "ip", "dst", f"{self.ip(dst)}/32",
                 "flowid", classid)  # fmt: skip
            self._shaped[(ns, classid)] = factor

    def heal(self) -> None:
        """Every link back to the lab's rate."""
        for i in range(self.n_nodes):
            self._class(self.node(i), "eth0", "1:10", self.rate_mbit, add=False)
            self._class(self.switch, f"p{i}", "1:10", self.rate_mbit, add=False)
            with contextlib.suppress(LabError):
                _run("tc", "-n", self.node(i), "filter", "del", "dev", "eth0", "parent", "1:")
        for ns, classid in self._shaped:
            with contextlib.suppress(LabError):
                _run("tc", "-n", ns, "class", "del", "dev", "eth0", "classid", classid)
        self._shaped.clear()

    # ------------------------------------------------------------------ probes

    def start_probes(self, timeout: float = 30.0) -> list[str]:
        """A ``baige diagnose --serve`` in every node; their addresses once all answer."""
        for i in range(self.n_nodes):
            cmd = [*self.exec_prefix(self.node(i)), sys.executable, "-m", "baige.cli.main",
                   "diagnose", "--serve", self.address(i), "--name", self.name(i)]  # fmt: skip
            self._procs.append(
                subprocess.Popen(
                    cmd,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    start_new_session=True,
                )
            )
        deadline = time.monotonic() + timeout
        for i in range(self.n_nodes):
            while True:
                try:
                    self._call_from_ctl(self.address(i))
                    break
                except LabError as err:
                    if self._procs[i].poll() is not None or time.monotonic() > deadline:
                        stderr = self._procs[i].stderr
                        text = stderr.read().decode(errors="replace") if stderr else ""
                        raise LabError(f"the probe in {self.node(i)} did not start: {err}\n"
                                       f"{text[-2000:]}") from None  # fmt: skip
                    time.sleep(0.2)
        return [self.address(i) for i in range(self.n_nodes)]

    def _call_from_ctl(self, address: str) -> None:
        """Is the probe at ``address`` answering? (Asked from the coordinator's namespace.)"""
        code = (
            "import sys; from baige.diag.probe import call; "
            f"call({address!r}, {{'op': 'hello'}}, timeout=2)"
        )
        done = subprocess.run(
            [*self.exec_prefix(self.ctl), sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode:
            raise LabError(done.stderr.strip().splitlines()[-1] if done.stderr else "failed")

    def close(self) -> None:
        for proc in self._procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
            if proc.stderr is not None:
                proc.stderr.close()
        self._procs.clear()
        for ns in reversed(self._namespaces):
            with contextlib.suppress(LabError):
                _run("ip", "netns", "del", ns)
        self._namespaces.clear()


def namespaces_left(tag: str) -> Sequence[str]:
    """Namespaces of a lab with this tag that still exist (a test checks none is left)."""
    done = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    return [line.split()[0] for line in done.stdout.splitlines() if line.startswith(f"{tag}-")]
