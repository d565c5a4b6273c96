"""`baige up` on PostgreSQL as supervised processes: one controller, one or more API servers.

One process for everything shares one interpreter lock: at 10,000 nodes a controller pass
competes with the requests it should be serving. On PostgreSQL (where the store is shared by
processes anyway) `baige up` is therefore a small supervisor (:class:`Supervisor`) of

- a **controller process** (``Platform(part="controller")``): the leadership, the controller
  loop, the engines' scraper and this machine's node agent; it exits 3 when another
  `baige up` deposes it, and is started again as a standby;
- **API processes** (``Platform(part="api")``), ``--api-workers`` of them, all accepting on
  the one listening socket the supervisor opened (so a restarted worker keeps the port).

They share nothing but the store: a submission wakes the leading controller by NOTIFY
(``control.wakeup``), the gateway's load and the controller's status travel in tables
(``control.shared_load``, ``control.shared_status``). A child that dies is started again
(after 0.5 s, doubling to 10 s while it keeps dying young) without touching the others; each
child dies with the supervisor (``PR_SET_PDEATHSIG``), so a killed `baige up` leaves no
controller behind that would go on leading.

Each child is ``python -m baige.control.processes``, given its :class:`Launch` (pickled, on
its standard input, from its own parent: nothing else writes there).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Literal

from baige.control.platform import Platform, PlatformOptions

__all__ = ["DEPOSED_EXIT", "Child", "Launch", "Supervisor", "main"]

log = logging.getLogger("baige.up")

DEPOSED_EXIT = 3  # a controller process that another `baige up` deposed
FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 10.0
HEALTHY_S = 30.0  # a child that ran this long starts again without waiting


@dataclass(frozen=True, slots=True)
class Launch:
    """What one child process runs."""

    options: PlatformOptions
    instance: str  # the `baige up` it belongs to (``platform.instance_name``)
    part: Literal["controller", "api"]
    fd: int | None = None  # the API's listening socket, inherited


@dataclass(slots=True)
class Child:
    """One supervised process and its restart state."""

    name: str
    launch: Launch
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    backoff: float = FIRST_BACKOFF_S
    restart_at: float | None = None
    restarts: int = 0
    exits: list[int] = field(default_factory=list)

    def start(self) -> None:
        fds = (self.launch.fd,) if self.launch.fd is not None else ()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "baige.control.processes", self.name],
            stdin=subprocess.PIPE,
            pass_fds=fds,
        )
        assert self.process.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.process.stdin.write(pickle.dumps(self.launch))
            self.process.stdin.close()
        self.started = time.monotonic()
        self.restart_at = None


class Supervisor:
    """Starts the children, starts again whichever dies, stops them all on :meth:`stop`."""

    def __init__(self, children: list[Child], poll_s: float = 0.2) -> None:
        self.children = children
        self.poll_s = poll_s
        self._stop = threading.Event()

    def run(self) -> None:
        """Until :meth:`stop` (a signal handler may call it): watch, restart."""
        for child in self.children:
            child.start()
        try:
            while not self._stop.wait(self.poll_s):
                for child in self.children:
                    self._watch(child)
        finally:
            self._stop_children()

    def stop(self) -> None:
        self._stop.set()

    def _watch(self, child: Child) -> None:
        now = time.monotonic()
        if child.restart_at is not None:
            if now >= child.restart_at:
                child.restarts += 1
                child.start()
            return
        assert child.process is not None
        code = child.process.poll()
        if code is None:
            return
        child.exits.append(code)
        ran = now - child.started
        if code == DEPOSED_EXIT and child.launch.part == "controller":
            wait = 0.0
            log.warning("%s: deposed by another `baige up`; starting it again as a standby",
                        child.name)  # fmt: skip
        else:
            child.backoff = FIRST_BACKOFF_S if ran >= HEALTHY_S else child.backoff
            wait = child.backoff
            child.backoff = min(MAX_BACKOFF_S, child.backoff * 2)
            log.error("%s (pid %d) exited with status %d after %.1f s; starting it again in "
                      "%.1f s", child.name, child.process.pid, code, ran, wait)  # fmt: skip
        child.restart_at = now + wait

    def _stop_children(self) -> None:
        running = [c.process for c in self.children if c.process and c.process.poll() is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
        deadline = time.monotonic() + 15
        for process in running:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _die_with_parent() -> None:
    """Be killed when the supervisor dies, however it dies (Linux; elsewhere a thread notices
    the parent is gone). SIGKILL, as a killed one-process `baige up` died: an API worker left
    draining would answer for a `baige up` that is gone and hold the port its successor is
    started on; the controller's lock goes with its connection either way."""
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # it died before prctl took
        os.kill(os.getpid(), signal.SIGKILL)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def run_controller(launch: Launch) -> int:
    """The controller process: until SIGTERM, or deposed (exit 3)."""
    platform = Platform(launch.options, part="controller", instance=launch.instance)
    done = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: done.set())
    platform.on_deposed = done.set
    try:
        platform.start()
        while not done.wait(1.0):
            pass
    finally:
        platform.stop()
    return DEPOSED_EXIT if platform.deposed.is_set() else 0


def run_api(launch: Launch) -> int:
    """An API process: uvicorn on the inherited socket, until SIGTERM."""
    import socket  # noqa: PLC0415

    import uvicorn  # noqa: PLC0415

    from baige.server.app import server_config  # noqa: PLC0415

    assert launch.fd is not None
    platform = Platform(launch.options, part="api", instance=launch.instance)
    try:
        platform.start()
        server = uvicorn.Server(server_config(platform.app()))
        signal.signal(signal.SIGTERM, lambda *_: setattr(server, "should_exit", True))
        server.run(sockets=[socket.socket(fileno=launch.fd)])
    finally:
        platform.stop()
    return 0


def main() -> int:
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s %(levelname)s %(name)s [{sys.argv[1] if len(sys.argv) > 1 else '?'}]"
        ": %(message)s",
    )
    _die_with_parent()
    launch = pickle.load(sys.stdin.buffer)
    if getattr(launch, "part", None) not in ("controller", "api"):  # (run as __main__)
        print("baige.control.processes: no launch on standard input", file=sys.stderr)
        return 2
    return run_controller(launch) if launch.part == "controller" else run_api(launch)


if __name__ == "__main__":
    sys.exit(main())
