"""``baige up``: the API, the controller loop and the local node agent.

Two controllers on one database would launch everything twice. On SQLite (one process's
embedded database) everything runs in one process (``part="all"``): the first `baige up`
takes a file lock and a second one is refused and told who holds it. On PostgreSQL every
`baige up` serves the API and the node agent, and one leads the controller
(``control.leadership``): the others stand by and take over within the lease when it dies or
stops answering. There `baige up` runs its parts as supervised processes
(``control.processes``): the controller with the node agent (``part="controller"``) and one
or more API processes (``part="api"``), which share nothing but the store: submissions wake
the controller by NOTIFY, the gateway's load and the controller's status travel in tables
(``control.shared_load``, ``control.shared_status``).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from sqlalchemy import select

from baige.api.nodes import AcceleratorGroup, NodeSpec
from baige.api.queues import QueueSpec
from baige.backends.base import Backend
from baige.backends.fake import FakeBackend
from baige.backends.identity import TenantUsers
from baige.backends.local import LocalBackend
from baige.backends.slurm import SlurmBackend
from baige.control.auth import Principal, ensure_admin_token
from baige.control.controller import Controller
from baige.control.engine_metrics import EngineScraper
from baige.control.health_policy import HealthPolicy
from baige.control.leadership import DEFAULT_LEASE_S, Leadership, Role
from baige.control.load_board import LoadBoard
from baige.control.local_probes import LocalProbes
from baige.control.node_health import NodeHealthReports
from baige.control.preflight_gate import PreflightGate, PreflightSettings
from baige.control.service import ControlService
from baige.control.shared_load import LoadPublisher, SharedLoad
from baige.control.shared_status import StatusPublisher, StatusReader
from baige.control.slurm_sync import SlurmSync
from baige.control.wakeup import Listener, Notifier
from baige.hw.catalog import get_chip
from baige.hw.discovery import Accelerators, fake_speed
from baige.hw.health import HealthSource, health_source
from baige.sched import BAIGE, Profile
from baige.store.db import Database
from baige.store.tables import QueueRow

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["Part", "Platform", "PlatformOptions", "already_running", "instance_name"]

log = logging.getLogger("baige.up")
SYSTEM = Principal("system", None, admin=True)
HEARTBEAT_S = 2.0

# What a Platform runs: everything in this process (SQLite, tests), or one side of a
# `baige up` split into processes (PostgreSQL, ``control.processes``).
Part = Literal["all", "controller", "api"]


def instance_name(pid: int | None = None) -> str:
    """How a `baige up` names itself: in the leader lease, in its controller's status row."""
    return f"baige up pid {pid or os.getpid()} on {socket.gethostname()}"


def host_capacity() -> tuple[int, int]:
    """This machine's CPU (cores) and memory (bytes), as a local node declares them (a node
    spec reads a bare number as cores and as bytes)."""
    cpu = os.cpu_count() or 1
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        memory = 0  # not known here: memory is then not tracked on the node
    return cpu, memory


class AlreadyRunning(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class PlatformOptions:
    db_url: str
    home: Path
    accelerators: Accelerators | None
    nodes: int = 1
    profile: Profile | None = None
    heartbeat_timeout: float = 10.0
    interval: float = 1.0
    # PostgreSQL: how long a leader that stopped answering keeps the lead (control.leadership)
    lease_s: float = DEFAULT_LEASE_S
    backend: str = "local"
    # Where replicas reach the API (BAIGE_URL for `baige run`'s reports); None: no reports.
    api_url: str | None = None
    # Run each tenant's replicas as its own unprivileged user (local and Slurm backends;
    # needs root). None: as this process's user (no isolation between tenants).
    tenant_users: Mapping[str, str] | None = None
    # Directories a working_dir must lie under (empty: any existing directory).
    allowed_workdirs: tuple[Path, ...] = ()
    # What device conditions do to a node (None: the default policy, see health_policy).
    health_policy: HealthPolicy | None = None
    # Fake nodes of several types (a mixed cluster): ``nodes`` of each; overrides
    # ``accelerators`` when given (``--fake-accelerators h100:8,ascend-910b:8``).
    accelerator_groups: tuple[Accelerators, ...] = ()
    # The pre-flight of big gangs on this machine's nodes (control.preflight_gate);
    # ``min_nodes=0`` turns it off. Slurm's nodes have no probe here: not checked.
    preflight: PreflightSettings = field(default_factory=PreflightSettings)

    @property
    def groups(self) -> tuple[Accelerators, ...]:
        if self.accelerator_groups:
            return self.accelerator_groups
        return () if self.accelerators is None else (self.accelerators,)


def _lock_down(home: Path, db_url: str) -> None:
    """Keep replicas (other users) out of the control plane's files: they may pass through
    ``home`` (to their own HOME under it) but list or read nothing else there."""
    home.mkdir(parents=True, exist_ok=True)
    home.chmod(0o711)
    for name in ("admin-token", "baige.lock"):
        with contextlib.suppress(FileNotFoundError):
            (home / name).chmod(0o600)
    if db_url.startswith("sqlite:///"):
        db_file = Path(db_url.removeprefix("sqlite:///"))
        for path in (db_file, Path(f"{db_file}-wal"), Path(f"{db_file}-shm")):
            with contextlib.suppress(FileNotFoundError):
                path.chmod(0o600)


def local_node_names(count: int) -> list[str]:
    host = "".join(c if c.isalnum() or c in "-." else "-" for c in socket.gethostname().lower())
    host = host.strip("-.")[:40] or "localhost"
    return [host] if count == 1 else [f"{host}-{i}" for i in range(count)]


def local_nodes(groups: tuple[Accelerators, ...], count: int) -> list[tuple[str, Accelerators]]:
    """This machine's nodes: ``count`` per group; with several groups (a mixed fake
    cluster) each name says its type (``host-h100-0``, ``host-ascend-910b-0``)."""
    if len(groups) == 1:
        return [(name, groups[0]) for name in local_node_names(count)]
    host = local_node_names(1)[0]
    return [(f"{host}-{g.type}-{i}", g) for g in groups for i in range(count)]


@contextlib.contextmanager
def already_running(db: Database, home: Path) -> Iterator[None]:
    """Hold the one-`baige up`-per-database lock for the life of the block: SQLite only (on
    PostgreSQL several share the database and one leads, ``control.leadership``)."""
    if db.dialect != "sqlite":
        yield
        return
    lock_path = home / "baige.lock"
    home.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise AlreadyRunning(
                f"another `baige up` (pid {handle.read().strip() or '?'}) uses {db.safe_url}"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield


class Platform:
    """Everything ``baige up`` runs (``part="all"``), or one of its processes' share,
    startable and stoppable from tests."""

    def __init__(
        self, options: PlatformOptions, part: Part = "all", instance: str | None = None
    ) -> None:
        self.options = options
        self.part = part
        self.instance = instance or instance_name()
        self.db = Database(options.db_url)
        if part != "all" and self.db.dialect != "postgresql":
            self.db.dispose()
            raise ValueError(f"a {part} process shares its store with the others: PostgreSQL "
                             "only (SQLite runs `baige up` as one process)")  # fmt: skip
        self.backend: Backend
        self.slurm: SlurmSync | None = None
        users = None
        if options.tenant_users is not None:
            users = TenantUsers(options.home / "tenants", options.tenant_users)
            os.umask(0o077)  # the control plane's files are its own (replicas reset it)
            _lock_down(options.home, options.db_url)
        if options.backend == "slurm":
            slurm = SlurmBackend(options.home / "runs", users=users)
            self.backend = slurm
        elif options.backend == "fake":
            self.backend = FakeBackend()
        else:
            speeds = {g.type: fake_speed(g.type) for g in options.groups if g.fake}
            self.backend = LocalBackend(
                options.home / "runs",
                users=users,
                allowed_workdirs=list(options.allowed_workdirs),
                fake_speeds=speeds if len(speeds) > 1 else None,
            )
            if users is None:
                log.warning(
                    "replicas run as uid %d, the user of this process: the local backend "
                    "offers no isolation between tenants nor from the control plane's files "
                    "(%s)",
                    os.geteuid(),
                    "no tenant → user mapping was given"
                    if os.geteuid() == 0
                    else "`baige up` as root runs each tenant as its own user",
                )
        # the service gateway's load, read by the controller's autoscaler: in this process's
        # board, or (split) summed over the API processes' published boards
        self.board = LoadBoard()
        self.shared_load = SharedLoad(self.db, self.board) if part != "all" else None
        runs_controller = part != "api"
        local = bool(options.groups) and options.backend != "slurm"
        self.local_nodes = local_nodes(options.groups, options.nodes) if local else []
        self.node_names = [name for name, _ in self.local_nodes]
        self.probes: LocalProbes | None = None
        gate = None
        if (
            runs_controller
            and self.local_nodes
            and options.backend == "local"
            and options.preflight.min_nodes
        ):
            self.probes = LocalProbes({
                name: self.health_file(name) if group.fake else None
                for name, group in self.local_nodes
            })  # fmt: skip
            gate = PreflightGate(
                self.probes.run, options.preflight, options.health_policy or HealthPolicy()
            )
        # PostgreSQL: this process's controller runs only while it leads, on connections of
        # its own whose every transaction checks the lead (a paused one's is ended after the
        # lease); SQLite: always, on the shared one
        self.leadership: Leadership | None = None
        self.deposed = threading.Event()
        self.on_deposed: Callable[[], None] | None = None  # `baige up` exits
        self.controller_db = self.db
        if self.db.dialect == "postgresql" and runs_controller:
            self.leadership = Leadership(
                options.db_url, lease_s=options.lease_s, on_lost=self._lose_lead,
                name=self.instance,
            )  # fmt: skip
            self.controller_db = Database(  # one loop, a few threads: a small pool
                options.db_url, migrate=False, idle_in_transaction_s=options.lease_s, pool_size=4
            )
            self.controller_db.fence = self.leadership.fence
        load: LoadBoard | SharedLoad = self.shared_load or self.board
        self.controller: Controller | None = None
        if runs_controller:
            self.controller = Controller(
                self.controller_db,
                self.backend,
                options.profile or BAIGE,
                heartbeat_timeout=options.heartbeat_timeout,
                interval=options.interval,
                api_url=options.api_url,
                load=load.sample,
                in_flight=load.replica_in_flight,
                figures=load.figures,
                preflight=gate,
            )
            self.controller.on_deposed = self._lose_lead
        # split: what the API processes and the controller process tell each other
        self.status_reader = StatusReader(self.db, self.instance) if part == "api" else None
        self.status: StatusPublisher | None = None
        self.load_publisher: LoadPublisher | None = None
        # PostgreSQL: a wake-up also reaches the leading controller of another `baige up`
        self.notifier: Notifier | None = None
        self.listener: Listener | None = None
        self.health = NodeHealthReports(self.db, options.health_policy, wake=self.wake)
        check = getattr(self.backend, "check_launchable", None)
        self.service = ControlService(self.db, wake=self.wake, check_launchable=check)
        if isinstance(self.backend, SlurmBackend):
            self.slurm = SlurmSync(self.service, self.backend, SYSTEM)
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._lead_stop = threading.Event()  # the leader-only threads'
        self.admin_token: str | None = None

    def prepare(self) -> None:
        """First-start set-up: the admin token, a default queue, this machine's nodes."""
        self.admin_token = ensure_admin_token(self.db, self.options.home / "admin-token")
        if self.options.tenant_users is not None:
            _lock_down(self.options.home, self.options.db_url)
        with self.db.session() as session:
            has_queue = session.scalars(select(QueueRow.name)).first() is not None
        if not has_queue:
            note = "made on first start; the admin token submits here"
            self.service.apply_queue(SYSTEM, QueueSpec(name="default", description=note))
        if self.slurm is not None:
            self.slurm.run_once()  # Slurm's nodes are the cluster
        elif self.local_nodes:
            # the local nodes share this machine: each offers all of its CPU and memory, so
            # that CPU-only jobs have somewhere to run and no job asks for more than is here
            cpu, memory = host_capacity()
            specs = [
                NodeSpec(
                    name=name,
                    accelerators=AcceleratorGroup(type=group.type, count=group.count),
                    cpu=cpu,
                    memory=memory,
                    topology=("local", f"rack-{index // 4}"),
                    labels={"baige.io/fake": str(group.fake).lower()},
                )
                for index, (name, group) in enumerate(self.local_nodes)
            ]
            self.service.register_nodes(SYSTEM, specs, agent="local")

    def health_file(self, node: str) -> Path:
        """Where the declared fake health source of a fake node reads its conditions
        (``baige fault inject`` writes there)."""
        return self.options.home / "health" / f"{node}.json"

    def _health_sources(self) -> dict[str, HealthSource]:
        if self.slurm is not None:
            return {}
        sources: dict[str, HealthSource] = {}
        for name, group in self.local_nodes:
            fake = self.health_file(name) if group.fake else None
            vendor = get_chip(group.type).vendor if not group.fake else ""
            sources[name] = health_source(vendor, group.count, fake)
        return sources

    def _agent(self) -> None:
        """The node agent: heartbeats for this machine's nodes (or Slurm's inventory), and
        their cards' health, checked and reported every beat."""
        sources = self._health_sources()
        while not self._stop.wait(HEARTBEAT_S):
            try:
                if self.slurm is not None:
                    self.slurm.run_once()
                elif self.node_names:
                    self.service.heartbeat(SYSTEM, self.node_names)
                if sources:
                    self.health.report_many({n: s.check() for n, s in sources.items()})
            except Exception:  # the next beat retries; a silent agent fails its nodes
                log.exception("heartbeat failed")

    def wake(self) -> None:
        """Run the controller's next pass now, wherever it leads."""
        if self.controller is not None:
            self.controller.wake()
        if self.notifier is not None:
            self.notifier.wake()

    def start(self) -> None:
        """Start this part's threads; ``part="all"`` first does :meth:`prepare` (a split
        `baige up` prepares once, in its supervisor, before it starts the processes)."""
        if self.db.dialect == "postgresql":
            self.notifier = Notifier(self.options.db_url)
        if self.part == "api":
            worker = f"{self.instance} api pid {os.getpid()}"
            self.load_publisher = LoadPublisher(self.db, self.board, worker).start()
            return
        if self.part == "all":
            self.prepare()
        else:
            self.status = StatusPublisher(
                self.db, self.instance, self.role, self.recent_pass_seconds
            ).start()
        if self.probes is not None:
            self.probes.start()
        self._spawn(self._agent, "agent")
        if self.leadership is None:
            self._lead_threads()
        else:
            self._spawn(self._lead, "leadership")

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _lead_threads(self) -> None:
        """What only the leading `baige up` runs: the controller, the engines' scraper."""
        assert self.controller is not None
        scraper = EngineScraper(self.db, self.board)
        if self.leadership is not None:  # woken by the other instances' APIs too
            self.listener = Listener(self.options.db_url, self.controller.wake).start()
        self._spawn(self.controller.run_forever, "controller")
        self._spawn(lambda: scraper.run_forever(self._lead_stop), "engine-metrics")

    def _lead(self) -> None:
        """Stand by until this process leads, then run the controller."""
        assert self.leadership is not None

        lease = self.leadership.lease_s

        def standby(holder: str) -> None:
            log.info("standby: %s leads the controller; taking over when its %g s lease "
                     "lapses", holder, lease)  # fmt: skip

        term = self.leadership.wait(self._stop, on_standby=standby)
        if term is not None and not self._stop.is_set():
            self._lead_threads()

    def role(self) -> Role:
        """This instance's controller: "leading", "standby" or "stopped" (deposed)."""
        if self.status_reader is not None:
            return self.status_reader.role()
        if self.deposed.is_set():
            return "stopped"
        return "leading" if self.leading else "standby"

    @property
    def leading(self) -> bool:
        """Whether this process runs the controller now."""
        if self.controller is None:
            return False
        if self.leadership is None:
            return not self._stop.is_set()
        return self.leadership.term is not None and not self.deposed.is_set()

    def _lose_lead(self) -> None:
        """Deposed (another controller leads) or the lead's connection lost: stop the
        controller for good; `baige up` exits so its supervisor restarts it as a standby."""
        if self.deposed.is_set():
            return
        self.deposed.set()
        self._lead_stop.set()
        if self.controller is not None:
            self.controller.stop()
        log.error("this `baige up` no longer leads the controller; stopping it")
        if self.on_deposed is not None:
            self.on_deposed()

    def stop(self) -> None:
        self._stop.set()
        self._lead_stop.set()
        if self.controller is not None:
            self.controller.stop()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=10)
        if self.probes is not None:
            self.probes.stop()
        for closing in (
            self.status,
            self.load_publisher,
            self.listener,
            self.notifier,
            self.leadership,
        ):
            if closing is not None:
                closing.close()
        if self.controller_db is not self.db:
            self.controller_db.dispose()
        self.db.dispose()

    def recent_pass_seconds(self) -> list[float]:
        """The controller's recent pass times: this process's, or (an API process) those
        its instance's controller process last published."""
        if self.status_reader is not None:
            return self.status_reader.pass_seconds()
        return list(self.controller.pass_seconds) if self.controller is not None else []

    def app(self) -> FastAPI:
        """The API over this platform (an API process's, or the one process's)."""
        from baige.server.app import create_app  # noqa: PLC0415 - the API's imports

        return create_app(
            self.db,
            self.service,
            pass_seconds=self.recent_pass_seconds,
            board=self.board,
            role=self.role,
            figures=self.load_figures,
        )

    def load_figures(self) -> dict[str, dict[str, float]]:
        """The gateway's per-service figures: this process's board, or the sum of every
        API process's when they run apart."""
        if self.shared_load is not None:
            return self.shared_load.figures()
        return self.board.figures()


def wait_until(predicate: object, timeout: float = 30.0, interval: float = 0.1) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` passes (for tests and the CLI)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return True
        time.sleep(interval)
    return False
