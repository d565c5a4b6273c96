"""``baige run``: torchrun's launch sequence with ``BaigeAgent`` in place of its agent.

What torchrun's ``launch_agent`` does (rendezvous parameters, a ``WorkerSpec``, metrics, the
agent's run, shutting the rendezvous down) is done here the same way, with three differences:
the agent is ``BaigeAgent``; the run gets a directory (event log, per-rank logs, stacks, fault
ledger) and a tmpfs beacon folder; and the outcome is an exit code and a sentence, not a
``ChildFailedError`` traceback.

Where the rendezvous comes from: ``--rdzv-endpoint`` if given (c10d, multi-node elastic); else,
when the control plane started this replica (``BAIGE_WORKLOAD_ID`` with ``RANK``,
``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``), a c10d rendezvous at the master address
with one node per replica; else a standalone one on this machine (torchrun ``--standalone``).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import sys
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from baige.runtime.events import EventLog
from baige.runtime.faults import FaultSpecError, describe_all, parse_faults
from baige.runtime.layout import (
    ENV_BEACON_DIR,
    ENV_FAULT,
    ENV_RUN_DIR,
    ENV_RUN_ID,
    ENV_RUN_START,
    beacon_dir_for,
    default_run_dir,
    events_path,
)
from baige.runtime.report import reporter_from_env
from baige.runtime.warm import ensure_forkserver, run_python, warm_args
from baige.runtime.watch import WatchConfig

if TYPE_CHECKING:  # baige.ckpt imports torch: only once a run really starts
    from baige.runtime.peer import PeerRun

__all__ = [
    "EXIT_EXCLUDED",
    "EXIT_FAILED",
    "EXIT_USAGE",
    "RunConfig",
    "RunOutcome",
    "UsageError",
    "resolve",
    "run",
]

log = logging.getLogger("baige.runtime")

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_EXCLUDED = 3


class UsageError(ValueError):
    """A command line or environment that cannot start a run; the message says why."""


@dataclass(frozen=True, slots=True)
class RunConfig:
    command: tuple[str, ...]
    nproc_per_node: int = 1
    nnodes: str = "1"
    node_rank: int | None = None
    max_restarts: int = 3
    rdzv_backend: str = ""
    rdzv_endpoint: str = ""
    run_id: str = ""
    run_dir: Path | None = None
    monitor_interval_s: float = 0.25
    stop_timeout_s: int = 5
    watch: WatchConfig = field(default_factory=WatchConfig)
    max_node_failures: int | None = None
    progress_every_s: float = 30.0
    fault: str | None = None
    tee: bool = True
    # --peer-*: a buddy server on this node and where the ranks push (None: no peers)
    peer: PeerRun | None = None
    # how long a silent node stays in the rendezvous (torch's keep-alive: 3 beats)
    node_timeout_s: float = 15.0
    # start every attempt's workers as new processes, never forked warm (baige.runtime.warm)
    cold: bool = False


@dataclass(frozen=True, slots=True)
class RunOutcome:
    exit_code: int
    message: str
    run_dir: Path
    events: Path
    restarts: int = 0
    last_step: int = -1


def _nnodes(text: str) -> tuple[int, int]:
    low, sep, high = text.partition(":")
    try:
        lo = int(low)
        hi = int(high) if sep else lo
    except ValueError:
        raise UsageError(f"--nnodes {text!r}: expected N or MIN:MAX") from None
    if not 0 < lo <= hi:
        raise UsageError(f"--nnodes {text!r}: need 0 < MIN <= MAX")
    return lo, hi


def _entrypoint(command: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    if not command:
        raise UsageError("no command: give one after --, e.g. baige run -- python train.py")
    first, rest = command[0], command[1:]
    if first.endswith(".py"):
        if not Path(first).is_file():
            raise UsageError(f"script not found: {first}")
        return sys.executable, ("-u", first, *rest)
    found = shutil.which(first)
    if found is None:
        raise UsageError(f"command not found: {first}")
    return found, rest


def _from_control_plane() -> bool:
    return all(
        os.environ.get(k)
        for k in ("BAIGE_WORKLOAD_ID", "RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    )


class _DropWorkerFailure(logging.Filter):
    """torch's own "failed (exitcode: …) local_rank: …" and "Sending process … closing
    signal" lines repeat the fault the agent reports in one line of its own (with the step,
    the signal and the exception)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(("failed (exitcode", "Sending process"))


def _quiet_torch_failure_log() -> None:
    target = logging.getLogger("torch.distributed.elastic.multiprocessing.api")
    if not any(isinstance(f, _DropWorkerFailure) for f in target.filters):
        target.addFilter(_DropWorkerFailure())


def resolve(config: RunConfig) -> RunConfig:
    """Fill in what the config leaves to the environment, and check everything that can be
    checked before starting anything (``BAIGE_FAULT`` included)."""
    if config.nproc_per_node < 1:
        raise UsageError(f"--nproc-per-node must be >= 1, got {config.nproc_per_node}")
    if config.max_restarts < 0:
        raise UsageError(f"--max-restarts must be >= 0, got {config.max_restarts}")
    if config.monitor_interval_s <= 0:
        raise UsageError("--monitor-interval must be > 0")
    if config.node_timeout_s < 3:
        raise UsageError(f"--node-timeout must be >= 3 s, got {config.node_timeout_s:g}")
    _entrypoint(config.command)
    nnodes, backend, endpoint = config.nnodes, config.rdzv_backend, config.rdzv_endpoint
    node_rank, run_id = config.node_rank, config.run_id
    if not endpoint and not backend and _from_control_plane() and nnodes == "1":
        # One node per replica, meeting at the job's master address. A c10d rendezvous, not
        # a static one: when one replica's group restarts, the others' agents see it waiting
        # and restart theirs to join it (a static rendezvous cannot run a second round).
        # a job with spares runs on BAIGE_NNODES of its replicas; the others wait on the
        # rendezvous's redundancy list, each admitted when a participant's node is lost
        nnodes = os.environ.get("BAIGE_NNODES") or os.environ["WORLD_SIZE"]
        node_rank = int(os.environ["RANK"])
        backend = "c10d"
        endpoint = f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
        run_id = run_id or os.environ["BAIGE_WORKLOAD_ID"]
    lo, hi = _nnodes(nnodes)
    if not endpoint:
        if hi > 1:
            raise UsageError(
                f"--nnodes {nnodes} needs --rdzv-endpoint HOST:PORT (the same on every node)"
            )
        backend, endpoint = backend or "c10d", "localhost:0"
    backend = backend or "c10d"
    if backend == "static" and node_rank is None:
        raise UsageError("a static rendezvous needs --node-rank")
    if not run_id:
        run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    fault = config.fault if config.fault is not None else os.environ.get(ENV_FAULT, "")
    try:
        parse_faults(fault).resolve(hi * config.nproc_per_node)
    except FaultSpecError as err:
        raise UsageError(str(err)) from None
    run_dir = (config.run_dir or default_run_dir(run_id)).resolve()
    peer = config.peer
    if peer is None and _from_control_plane():  # the controller wired peer memory
        from baige.runtime.peer import peer_from_env  # noqa: PLC0415

        peer = peer_from_env(run_dir)
    if peer is not None:
        try:
            peer.check()
        except ValueError as err:
            raise UsageError(str(err)) from None
    max_node_failures = config.max_node_failures
    if max_node_failures is None:
        max_node_failures = 3 if hi > 1 else 0
    return replace(
        config,
        nnodes=f"{lo}:{hi}",
        node_rank=node_rank,
        rdzv_backend=backend,
        rdzv_endpoint=endpoint,
        run_id=run_id,
        run_dir=run_dir,
        fault=fault,
        peer=peer,
        max_node_failures=max_node_failures,
    )


def run(config: RunConfig) -> RunOutcome:
    """Run the command under ``BaigeAgent`` until it finishes or gives up. Raises UsageError
    before starting anything if the config cannot work."""
    config = resolve(config)
    # torch is imported only now, so that a usage error costs nothing
    from torch.distributed.elastic.agent.server.api import (  # noqa: PLC0415
        WorkerSpec,
        WorkerState,
    )
    from torch.distributed.elastic.metrics import initialize_metrics  # noqa: PLC0415
    from torch.distributed.elastic.metrics.api import MetricsConfig  # noqa: PLC0415
    from torch.distributed.elastic.multiprocessing import (  # noqa: PLC0415
        DefaultLogsSpecs,
        SignalException,
        Std,
    )
    from torch.distributed.elastic.rendezvous import registry  # noqa: PLC0415
    from torch.distributed.elastic.rendezvous.api import RendezvousParameters  # noqa: PLC0415

    from baige.runtime.agent import AgentSettings, BaigeAgent  # noqa: PLC0415
    from baige.runtime.stable_ranks import StableRanks  # noqa: PLC0415

    assert config.run_dir is not None and config.fault is not None
    run_dir = config.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    node = os.environ.get("BAIGE_NODE") or socket.gethostname()
    events = EventLog(events_path(run_dir), run_id=config.run_id, node=node)
    reporter = reporter_from_env(node)
    if reporter is not None:
        events.sinks.append(reporter)
    beacon_dir = beacon_dir_for(run_dir, os.getpid())
    lo, hi = _nnodes(config.nnodes)
    entrypoint, args = _entrypoint(config.command)

    os.environ[ENV_RUN_DIR] = str(run_dir)
    os.environ[ENV_BEACON_DIR] = str(beacon_dir)
    os.environ[ENV_RUN_ID] = config.run_id
    os.environ.setdefault(ENV_RUN_START, repr(time.time()))
    if config.fault:
        os.environ[ENV_FAULT] = config.fault
    if config.nproc_per_node > 1:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ["TORCHELASTIC_SIGNALS_TO_HANDLE"] = "SIGTERM,SIGINT,SIGHUP,SIGQUIT"
    # With the shared store (torch >= 2.4) a rank-0 agent that survives a round keeps its
    # first round's bootstrap info and never publishes it again: a node joining later (a
    # spare in place of a lost one) waits for MASTER_ADDR until it times out. BaigeAgent
    # gives each attempt's workers a store of its own anyway (_fresh_worker_store).
    os.environ.setdefault("TORCH_DISABLE_SHARE_RDZV_TCP_STORE", "1")
    peer_server = None
    if config.peer is not None:
        from baige.runtime.peer import start_peer  # noqa: PLC0415

        try:
            peer_server = start_peer(config.peer, config.run_id)
        except OSError as err:
            raise UsageError(f"--peer-bind {config.peer.bind}: {err.strerror or err}") from None

    params = RendezvousParameters(
        backend=config.rdzv_backend,
        endpoint=config.rdzv_endpoint,
        run_id=config.run_id,
        min_nodes=lo,
        max_nodes=hi,
        timeout=900,
        # a dead node is dropped after 3 missed beats; the survivors' next round waits for
        # a replacement (a spare) only once it is gone
        keep_alive_interval=max(1, round(config.node_timeout_s / 3)),
        keep_alive_max_attempt=3,
    )
    if config.rdzv_backend == "static":
        params.config["rank"] = config.node_rank
    master_addr = master_port = None
    if config.rdzv_backend == "static":
        host, _, port = config.rdzv_endpoint.rpartition(":")
        master_addr, master_port = host, int(port)
    handler = registry.get_rendezvous_handler(params)
    if config.rdzv_backend != "static":  # a node keeps its rank across rounds
        handler = StableRanks(handler)
    warm = None if config.cold else warm_args(entrypoint, args)
    if warm is not None:
        ensure_forkserver()  # preloads torch once, while the rendezvous proceeds
    spec = WorkerSpec(
        role="trainer",
        local_world_size=config.nproc_per_node,
        entrypoint=run_python if warm is not None else entrypoint,
        args=warm if warm is not None else args,
        rdzv_handler=handler,
        max_restarts=config.max_restarts,
        monitor_interval=config.monitor_interval_s,
        master_addr=master_addr,
        master_port=master_port,
    )
    logs = DefaultLogsSpecs(
        log_dir=str(run_dir / "logs"),
        redirects=Std.ALL,
        # stdout is tee'd as is; stderr goes through the agent's relay, which folds the
        # tracebacks a fault sets off in every rank (they stay whole in the log files)
        tee=Std.OUT if config.tee else Std.NONE,
    )
    _quiet_torch_failure_log()
    settings = AgentSettings(
        run_dir=run_dir,
        beacon_dir=beacon_dir,
        watch=config.watch,
        stop_timeout_s=config.stop_timeout_s,
        max_node_failures=config.max_node_failures or 0,
        progress_every_s=config.progress_every_s,
        relay_stderr=config.tee,
    )
    agent = BaigeAgent(
        spec,
        logs,
        settings,
        events,
        log_line_prefix_template="[rank${rank}]:",
        shutdown_timeout=config.stop_timeout_s,
        start_method="forkserver" if warm is not None else "spawn",
    )
    plan = parse_faults(config.fault)
    events.emit(
        "run_started",
        command=list(config.command),
        nproc_per_node=config.nproc_per_node,
        nnodes=config.nnodes,
        max_restarts=config.max_restarts,
        rdzv=f"{config.rdzv_backend}:{config.rdzv_endpoint}",
        hang_timeout_s=config.watch.hang_timeout_s,
        startup_timeout_s=config.watch.startup_timeout_s,
        fault=plan.text or None,
        faults=describe_all(plan.resolve(hi * config.nproc_per_node))[:2000] or None,
        run_dir=str(run_dir),
        pid=os.getpid(),
        warm=warm is not None,
        peer=None
        if config.peer is None
        else {
            "serving": peer_server.address if peer_server is not None else None,
            "buddy": config.peer.buddy or None,
            "fetch_from": list(config.peer.fetch_from) or None,
        },
    )
    log.info("baige run: run %s, events in %s", config.run_id, events.path)
    started = time.monotonic()
    code, message, state = EXIT_FAILED, "", "failed"
    shutdown_rdzv = True
    try:
        initialize_metrics(MetricsConfig())
        result = agent.run()
        if result is None:  # torch: the rendezvous closed while this node stood by
            code, state = 0, "released"
            message = "the job finished while this node stood by as a spare"
        elif result.state == WorkerState.SUCCEEDED and agent.fatal is None:
            code, state = 0, "succeeded"
            message = (
                f"finished at step {agent.last_step} after {agent.restarts} "
                f"restart{'s' if agent.restarts != 1 else ''}"
            )
        elif agent.excluded:
            code, state = EXIT_EXCLUDED, "excluded"
            message = (
                f"node {node} left the job after {agent.node_failures} faults on it "
                f"(--max-node-failures {config.max_node_failures}); last: {agent.last_fault}"
            )
        elif agent.fatal is not None:
            message = agent.fatal
        else:
            message = (
                f"gave up after {agent.restarts} restart{'s' if agent.restarts != 1 else ''} "
                f"(--max-restarts {config.max_restarts}); last fault: {agent.last_fault}"
            )
    except SignalException as err:
        shutdown_rdzv = False
        sig = signal.Signals(err.sigval)
        code, state, message = 128 + int(sig), "signalled", f"stopped by {sig.name}"
    except Exception as err:
        code, state = EXIT_FAILED, "error"
        message = f"the agent failed: {err.__class__.__name__}: {err}"
        log.exception("baige run: agent error")
    finally:
        if shutdown_rdzv:
            spec.rdzv_handler.shutdown()
        agent.close()
        if peer_server is not None:
            peer_server.close()
        events.emit(
            "run_finished",
            state=state,
            exit_code=code,
            restarts=agent.restarts,
            last_step=agent.last_step,
            wall_s=round(time.monotonic() - started, 3),
            message=message,
        )
        if reporter is not None:
            reporter.close()
        events.close()
    return RunOutcome(
        exit_code=code,
        message=message,
        run_dir=run_dir,
        events=events.path,
        restarts=agent.restarts,
        last_step=agent.last_step,
    )
