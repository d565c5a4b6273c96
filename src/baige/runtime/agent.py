"""``BaigeAgent``: torchrun's ``LocalElasticAgent`` with eyes on the training loop.

The elastic agent already does the hard parts: rendezvous, ranks, starting and stopping the
worker group as one unit, restarting it up to ``max_restarts`` times, and noticing a worker
process that exits. It cannot tell a hung worker from a slow one or a busy one: a process
stuck in a collective is, to it, alive and well. This subclass adds what only progress can
tell, in its monitoring hook, every ``monitor_interval``:

- beacons: read each local rank's memory-mapped record (no I/O on either side);
- hangs: no step for ``max(hang_timeout, 3 × median step)`` → dump every rank's Python stacks
  (faulthandler), then report the group UNHEALTHY, which the agent's own loop turns into a
  restart; hung ranks get SIGKILL, since SIGTERM cannot be trusted to reach a process stuck in
  C code;
- crashes: as the agent sees them, but the surviving ranks are killed at once instead of
  being waited for, and the event says who died, how, at which step, and the stderr tail;
- early exit, and never any progress: failures a restart would only repeat, so the run
  stops with a message that says what the script must do;
- stragglers: flagged per window; after ``straggler_report_after`` windows in a row the node
  is reported (for cordoning);
- network suspects: a rank whose collectives slow down while its compute does not (from
  the collective times ``Progress.comm()`` puts in the beacons) is reported as
  ``network_suspect``, not as a straggler;
- recovery: the first step of a restarted group is the ``restored`` event, with the steps
  lost and the seconds from detection to training again;
- exclusion: after ``max_node_failures`` faults attributable to this node (a rank killed by a
  signal; with one node, also a hang), the agent leaves the job so the others can go on
  without it.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing.connection
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch.distributed import TCPStore  # type: ignore[attr-defined]  # not re-exported in its stubs
from torch.distributed.elastic.agent.server.api import (
    RunResult,
    WorkerGroup,
    WorkerSpec,
    WorkerState,
)
from torch.distributed.elastic.agent.server.local_elastic_agent import LocalElasticAgent
from torch.distributed.elastic.multiprocessing import LogsSpecs
from torch.distributed.elastic.multiprocessing.api import (
    MultiprocessContext,
    SubprocessContext,
)

from baige.runtime.beacon import (
    Beacon,
    BeaconError,
    BeaconReader,
    beacon_path,
    create_beacon,
)
from baige.runtime.events import EventLog
from baige.runtime.faults import fired_faults, ledger_dir
from baige.runtime.relay import StderrRelay, exception_line
from baige.runtime.stable_ranks import StableRanks
from baige.runtime.stacks import dump_stacks, innermost_frame, stacks_path
from baige.runtime.watch import (
    Hang,
    NetworkSuspect,
    NoProgress,
    Straggler,
    Watch,
    WatchConfig,
)

__all__ = ["AgentSettings", "BaigeAgent"]

log = logging.getLogger("baige.runtime")

_MATCH = {"crash": "kill", "hang": "hang", "straggler": "slow", "network_suspect": "netslow"}
_TAIL_BYTES = 4096


@dataclass(frozen=True, slots=True)
class AgentSettings:
    run_dir: Path
    beacon_dir: Path
    watch: WatchConfig
    stop_timeout_s: int = 5
    max_node_failures: int = 0  # 0: never leave the job
    progress_every_s: float = 30.0
    relay_stderr: bool = False  # copy ranks' stderr to the terminal, tracebacks folded away


def _signal_name(exitcode: int) -> str | None:
    if exitcode >= 0:
        return None
    try:
        return signal.Signals(-exitcode).name
    except ValueError:
        return f"signal {-exitcode}"


def _tail(path: str | None, lines: int = 15) -> str:
    if not path:
        return ""
    try:
        with open(path, "rb") as src:
            src.seek(0, os.SEEK_END)
            size = src.tell()
            src.seek(max(0, size - _TAIL_BYTES))
            text = src.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class _Worker:
    """One worker process, a ``subprocess.Popen`` or a ``multiprocessing.Process``, seen the
    same way: its exit code so far, a bounded wait, and a signal to its process group (each
    worker leads its own: a new session for either kind)."""

    def __init__(self, proc: Any) -> None:
        self.proc = proc

    def poll(self) -> int | None:
        if isinstance(self.proc, subprocess.Popen):
            code: int | None = self.proc.poll()
            return code
        return self.proc.exitcode  # type: ignore[no-any-return]

    def wait(self, timeout: float) -> None:
        if isinstance(self.proc, subprocess.Popen):
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout)
        else:
            self.proc.join(timeout)

    def kill(self, sig: signal.Signals) -> None:
        pid = self.proc.pid
        if pid is None:
            return
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):  # not (yet) a group leader
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)


class BaigeAgent(LocalElasticAgent):
    """See the module docstring. ``fatal``, ``excluded`` and ``last_fault`` say how a failed
    run ended; ``restarts`` and ``last_step`` how far it got."""

    def __init__(
        self,
        spec: WorkerSpec,
        logs_specs: LogsSpecs,
        settings: AgentSettings,
        events: EventLog,
        *,
        log_line_prefix_template: str | None = None,
        shutdown_timeout: int = 30,
        start_method: str = "spawn",
    ) -> None:
        # "forkserver" with a function entrypoint: warm starts (baige.runtime.warm)
        super().__init__(
            spec,
            logs_specs,
            start_method=start_method,
            log_line_prefix_template=log_line_prefix_template,
            shutdown_timeout=shutdown_timeout,
        )
        self.settings = settings
        self.events = events
        self.watch = Watch(settings.watch)
        self.fatal: str | None = None
        self.excluded = False
        self.last_fault: str | None = None
        self.restarts = 0
        self.last_step = -1
        self.node_failures = 0
        self._attempt = 0
        self._starts = 0
        self._nodes = 1
        self._readers: dict[int, BeaconReader] = {}
        self._pids: dict[int, int] = {}
        self._local: dict[int, int] = {}  # global rank -> local rank
        self._death_sig = signal.SIGTERM
        self._reason = "nodes joined or left"
        self._ever_stepped = False
        self._started_reported = False
        self._detected_at: float | None = None  # monotonic, of the fault awaiting recovery
        self._fault_ts: float | None = None  # Unix time the fault was injected, if known
        self._injected_ts: float | None = None
        self._step_before = -1
        self._injected: dict[int, dict[str, Any]] = {}
        self._matched: set[int] = set()
        self._next_ledger_scan = 0.0
        self._straggler_reported = False
        self._next_progress = 0.0
        self._progress_ref: tuple[float, int] | None = None
        self._exited_first: dict[int, int] = {}
        self._deaths: dict[int, float] = {}  # local rank -> monotonic time it ended (warm)
        self._worker_store: TCPStore | None = None
        self._relay = StderrRelay() if settings.relay_stderr else None

    # ------------------------------------------------------------------ lifecycle hooks

    def _rendezvous(self, worker_group: WorkerGroup) -> None:
        super()._rendezvous(worker_group)
        self._fresh_worker_store(worker_group)

    def _fresh_worker_store(self, worker_group: WorkerGroup) -> None:
        """Give each attempt's workers a store of their own.

        Since torch 2.4 the workers share the agent's rendezvous TCPStore server, and nothing
        separates one attempt's keys from the next: a restarted gloo group reads its
        predecessor's addresses and fails to connect, or hangs (pytorch/pytorch#135712 and
        #167288; plain torchrun --max-restarts fails this way in torch 2.13). Group rank 0's
        agent starts a new server per attempt and publishes its address through the
        rendezvous store, under a key that is new each round (dynamic rendezvous prefixes its
        store with the round) or each restart (static)."""
        handler = worker_group.spec.rdzv_handler
        store = worker_group.store
        if not handler.use_agent_store or store is None:
            return
        key = "baige/worker-store"
        if handler.get_backend() == "static":
            key += f"/{worker_group.spec.max_restarts - self._remaining_restarts}"
        if worker_group.group_rank == 0:
            old, self._worker_store = self._worker_store, None
            del old
            host = str(worker_group.master_addr)  # torch's rank 0: this node, unless…
            if isinstance(handler, StableRanks) and handler.torch_rank != 0:
                host = socket.getfqdn()  # …ranks were kept across rounds (as torch names it)
            server = TCPStore(
                host_name=host,
                port=0,
                is_master=True,
                multi_tenant=True,
                wait_for_workers=False,
            )
            self._worker_store = server
            store.set(key, f"{host}:{server.port}")
        addr, _, port = store.get(key).decode().rpartition(":")
        worker_group.master_addr, worker_group.master_port = addr, int(port)

    def _start_workers(self, worker_group: WorkerGroup) -> dict[int, Any]:
        # Our own count: membership changes restart the group without using up a restart,
        # so TORCHELASTIC_RESTART_COUNT repeats; the beacon header carries this number.
        self._attempt = self._starts
        self._starts += 1
        self._close_readers()
        for worker in worker_group.workers:
            create_beacon(self.settings.beacon_dir, worker.global_rank, self._attempt)
        pids: dict[int, Any] = super()._start_workers(worker_group)
        self._local = {w.global_rank: w.local_rank for w in worker_group.workers}
        self._nodes = worker_group.group_world_size or 1
        self._pids = {w.global_rank: int(pids[w.local_rank]) for w in worker_group.workers}
        self._readers = {
            rank: BeaconReader(beacon_path(self.settings.beacon_dir, rank)) for rank in self._pids
        }
        self._exited_first = {}
        self._watch_deaths()
        if self._relay is not None:
            stderrs = getattr(self._pcontext, "stderrs", {}) or {}
            self._relay.follow(
                (stderrs[w.local_rank], f"[rank{w.global_rank}]:")
                for w in worker_group.workers
                if stderrs.get(w.local_rank)
            )
        self.watch.new_attempt(time.monotonic())
        self.events.emit(
            "workers_started",
            attempt=self._attempt,
            pids={str(r): p for r, p in sorted(self._pids.items())},
            world_size=worker_group.workers[0].world_size if worker_group.workers else 0,
            master=f"{worker_group.master_addr}:{worker_group.master_port}",
        )
        return pids

    def _stop_workers(self, worker_group: WorkerGroup) -> None:
        sig, self._death_sig = self._death_sig, signal.SIGTERM
        self._shutdown(sig, timeout=self.settings.stop_timeout_s)

    def _restart_workers(self, worker_group: WorkerGroup) -> None:
        self.restarts += 1
        if self._detected_at is None:  # not after a fault seen here: the membership changed
            self._injected_ts = None
            self._await_recovery(time.monotonic(), self._reason)
        self.events.emit(
            "restart",
            attempt=self._attempt + 1,
            restarts_left=self._remaining_restarts,
            reason=self._reason,
        )
        self._reason = "nodes joined or left"
        super()._restart_workers(worker_group)

    def close(self) -> None:
        if self._relay is not None:
            self._relay.close()
        self._close_readers()
        shutil.rmtree(self.settings.beacon_dir, ignore_errors=True)

    def _close_readers(self) -> None:
        for reader in self._readers.values():
            reader.close()
        self._readers = {}

    # ------------------------------------------------------------------ monitoring

    def _monitor_workers(self, worker_group: WorkerGroup) -> RunResult:
        self._reap_fast()
        result: RunResult = super()._monitor_workers(worker_group)
        now = time.monotonic()
        beacons = self._read_beacons()
        self._scan_ledger(now)
        self._track(now, beacons)
        if result.state == WorkerState.FAILED:
            self._on_crash(result, beacons, now)
            return result
        if result.state == WorkerState.SUCCEEDED:
            unfinished = {r: b for r, b in beacons.items() if b.attached and not b.finished}
            if unfinished:
                return self._early_exit(unfinished, now)
            return result
        if result.state != WorkerState.HEALTHY:
            return result
        early = {
            rank: beacons[rank]
            for rank, code in self._exit_codes().items()
            if code == 0 and rank in beacons and beacons[rank].attached
            and not beacons[rank].finished
        }  # fmt: skip
        if early:
            return self._early_exit(early, now)
        verdict: RunResult | None = None
        for finding in self.watch.check(now, beacons):
            if isinstance(finding, Straggler):
                self._on_straggler(finding)
            elif isinstance(finding, NetworkSuspect):
                self._on_network_suspect(finding)
            elif isinstance(finding, Hang):
                verdict = self._on_hang(finding, beacons, now)
            elif isinstance(finding, NoProgress):
                verdict = self._on_no_progress(finding, beacons, now)
        return verdict or result

    def _read_beacons(self) -> dict[int, Beacon]:
        out: dict[int, Beacon] = {}
        for rank, reader in self._readers.items():
            with contextlib.suppress(BeaconError, ValueError, OSError):
                out[rank] = reader.read()
        return out

    def _handlers(self) -> dict[int, _Worker]:
        """The current workers by local rank, whether started as new processes or forked
        warm (:mod:`baige.runtime.warm`)."""
        pc = self._pcontext
        if isinstance(pc, SubprocessContext):
            return {local: _Worker(h.proc) for local, h in pc.subprocess_handlers.items()}
        if isinstance(pc, MultiprocessContext) and pc._pc is not None:
            return {local: _Worker(p) for local, p in enumerate(pc._pc.processes)}
        return {}

    def _watch_deaths(self) -> None:
        """Warm workers (multiprocessing processes) have sentinels: a thread notes when each
        one ends, so that of several found dead at one look the first is blamed, not the
        peers whose collectives failed because of it."""
        deaths: dict[int, float] = {}
        self._deaths = deaths
        pc = self._pcontext
        if not isinstance(pc, MultiprocessContext) or pc._pc is None:
            return
        pending = {p.sentinel: local for local, p in enumerate(pc._pc.processes)}

        def watch() -> None:
            while pending:
                try:
                    ready = multiprocessing.connection.wait(list(pending), timeout=5.0)
                except (OSError, ValueError):  # the attempt is over: its sentinels closed
                    return
                now = time.monotonic()
                for sentinel in ready:
                    deaths.setdefault(pending.pop(sentinel), now)

        threading.Thread(target=watch, name="baige-worker-deaths", daemon=True).start()

    def _first_dead(self, dead: dict[int, int]) -> dict[int, int]:
        """Of the workers found dead at one look, the cause: those a signal killed (a peer
        of a killed rank fails its next collective and exits with an error), else the first
        to end (warm workers' deaths are timed), else all of them."""
        if len(dead) < 2:
            return dead
        signalled = {local: code for local, code in dead.items() if code < 0}
        if signalled:
            return signalled
        if all(local in self._deaths for local in dead):
            first = min(self._deaths[local] for local in dead)
            return {r: c for r, c in dead.items() if self._deaths[r] - first <= 0.002}
        return dead

    def _exit_codes(self) -> dict[int, int | None]:
        by_local = {local: h.poll() for local, h in self._handlers().items()}
        return {rank: by_local.get(local) for rank, local in self._local.items()}

    def _reap_fast(self) -> None:
        """When a worker has died, kill the rest now: they can only fail in their next
        collective, and torch's own cleanup would give them 30 s to do so."""
        handlers = self._handlers()
        codes = {local: h.poll() for local, h in handlers.items()}
        dead = {local: c for local, c in codes.items() if c is not None and c != 0}
        if not dead:
            return
        for local, code in self._first_dead(dead).items():
            self._exited_first.setdefault(local, code)
        live = [h for local, h in handlers.items() if codes[local] is None]
        for handler in live:
            handler.kill(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.stop_timeout_s
        for handler in live:
            handler.wait(max(0.0, deadline - time.monotonic()))
            if handler.poll() is None:
                handler.kill(signal.SIGKILL)
                # bounded: a process in uninterruptible sleep survives even SIGKILL
                handler.wait(self.settings.stop_timeout_s)

    # ------------------------------------------------------------------ progress

    def _track(self, now: float, beacons: Mapping[int, Beacon]) -> None:
        if not beacons:
            return
        stepped = [b for b in beacons.values() if b.n_steps > 0]
        if stepped:
            self._ever_stepped = True
            self.last_step = max(self.last_step, *(b.step for b in stepped))
        all_stepped = len(stepped) == len(beacons)
        if all_stepped and self._attempt == 0 and not self._started_reported:
            self._started_reported = True
            self.events.emit(
                "training_started",
                attempt=0,
                step=min(b.step for b in stepped),
                startup_s=round(now - self.watch.attempt_start, 3),
            )
            if any(b.restored_step >= 0 for b in stepped) and self._detected_at is None:
                # a node that joined a running job (a spare in place of a lost node): its
                # ranks restored someone's state; its recovery counts from its own start
                self._detected_at = self.watch.attempt_start
        if all_stepped and self._detected_at is not None:
            self._on_restored(now, stepped)
        every = self.settings.progress_every_s
        if every > 0 and stepped and now >= self._next_progress:
            step = min(b.step for b in stepped)
            rate = None
            if self._progress_ref is not None and now > self._progress_ref[0]:
                rate = (step - self._progress_ref[1]) / (now - self._progress_ref[0])
            if self._progress_ref is not None:
                median = self.watch.median_step_s
                self.events.emit(
                    "progress",
                    attempt=self._attempt,
                    step=step,
                    steps_per_s=None if rate is None else round(rate, 4),
                    median_step_s=median if median is None else round(median, 4),
                    loss=min(stepped, key=lambda b: b.rank).loss,
                )
            self._progress_ref = (now, step)
            self._next_progress = now + every

    def _on_restored(self, now: float, stepped: list[Beacon]) -> None:
        assert self._detected_at is not None
        restored = [b.restored_step for b in stepped if b.restored_step >= 0]
        first = min(b.step - b.n_steps + 1 for b in stepped)
        step = min(restored) if restored else first - 1
        sources = {b.source.name.lower() for b in stepped if b.restored_step >= 0}
        lost = max(0, self._step_before - step) if self._step_before >= 0 else None
        self.events.emit(
            "restored",
            attempt=self._attempt,
            step=step,
            first_step=first,
            source=",".join(sorted(sources)) or None,
            lost_steps=lost,
            recovery_s=round(now - self._detected_at, 3),
            since_fault_s=(round(time.time() - self._fault_ts, 3) if self._fault_ts else None),
        )
        self._detected_at = None
        self._fault_ts = None
        self._progress_ref = None

    def _scan_ledger(self, now: float, force: bool = False) -> None:
        if not force and now < self._next_ledger_scan:
            return
        self._next_ledger_scan = now + 0.5
        for index, record in fired_faults(ledger_dir(self.settings.run_dir)).items():
            if index in self._injected:
                continue
            self._injected[index] = record
            self.events.emit(
                "fault_injected",
                index=index,
                kind=record.get("kind"),
                rank=record.get("rank"),
                step=record.get("step"),
                fault=record.get("fault"),
                injected_ts=record.get("ts"),
            )

    def _injection(self, kind: str, ranks: tuple[int, ...]) -> dict[str, Any] | None:
        """The injected fault that explains what was detected, if one does."""
        self._scan_ledger(0.0, force=True)
        want = _MATCH.get(kind)
        for index, record in sorted(self._injected.items()):
            if index in self._matched or record.get("kind") != want:
                continue
            if record.get("rank") in ranks:
                self._matched.add(index)
                return record
        return None

    # ------------------------------------------------------------------ faults

    def _detected(
        self, kind: str, ranks: tuple[int, ...], message: str, **fields: Any
    ) -> dict[str, Any]:
        injected = self._injection(kind, ranks)
        detect_s = None
        self._injected_ts = None
        if injected is not None and isinstance(injected.get("ts"), int | float):
            self._injected_ts = float(injected["ts"])
            detect_s = round(time.time() - self._injected_ts, 3)
        self.last_fault = message
        log.warning("baige run: %s", message)
        return self.events.emit(
            "fault_detected",
            kind=kind,
            attempt=self._attempt,
            ranks=list(ranks),
            message=message,
            detect_s=detect_s,
            injected=injected.get("fault") if injected else None,
            last_step=self.last_step,
            **fields,
        )

    def _await_recovery(self, now: float, reason: str) -> None:
        self._detected_at = now
        self._fault_ts = self._injected_ts
        self._step_before = self.last_step
        self._reason = reason

    def _count_node_fault(self) -> None:
        limit = self.settings.max_node_failures
        self.node_failures += 1
        if limit > 0 and self.node_failures >= limit and not self.excluded:
            self.excluded = True
            self._remaining_restarts = 0
            self.events.emit(
                "node_excluded",
                failures=self.node_failures,
                limit=limit,
                message=f"{self.node_failures} faults on node {self.events.node}; "
                "it leaves the job so the other nodes can go on without it",
            )

    def _on_crash(self, result: RunResult, beacons: Mapping[int, Beacon], now: float) -> None:
        firsts = {
            rank: self._exited_first[local]
            for rank, local in self._local.items()
            if local in self._exited_first
        }
        failures = {r: f.exitcode for r, f in result.failures.items()}
        culprits = firsts or failures
        parts = []
        for rank in sorted(culprits):
            code = culprits[rank]
            step = beacons[rank].step if rank in beacons else -1
            how = f"was killed by {_signal_name(code)}" if code < 0 else f"exited with code {code}"
            where = f" after step {step}" if step >= 0 else " before its first step"
            parts.append(f"rank {rank} (pid {self._pids.get(rank, '?')}) {how}{where}")
        tails: dict[str, str] = {}
        pc = self._pcontext
        stderrs = getattr(pc, "stderrs", {}) if pc is not None else {}
        for rank in culprits:
            local = self._local.get(rank)
            if local is not None and local in stderrs:
                tail = _tail(stderrs[local])
                if tail:
                    tails[str(rank)] = tail
        # the terminal shows this one line, not the ranks' tracebacks: name the culprit's
        # exception and where the full output is
        message = "; ".join(parts) or "a worker failed"
        raised = [
            line for rank in sorted(culprits) if (line := exception_line(tails.get(str(rank), "")))
        ]
        if raised:
            message += f": {raised[0][:300]}"
        logs = {os.path.dirname(str(path)) for path in stderrs.values()}
        if logs:
            where = os.path.dirname(sorted(logs)[0])
            message += f" (each rank's full output: {where}/<local rank>/stderr.log)"
        self._detected(
            "crash",
            tuple(sorted(culprits)),
            message,
            exit_codes={str(r): c for r, c in sorted(failures.items())},
            signals={str(r): _signal_name(c) for r, c in sorted(culprits.items()) if c < 0},
            stderr_tail=tails,
        )
        self._await_recovery(now, "crash")
        if any(code < 0 for code in culprits.values()):
            self._count_node_fault()

    def _on_hang(self, hang: Hang, beacons: Mapping[int, Beacon], now: float) -> RunResult:
        stacks = self._dump(beacons)
        self._detected(
            "hang",
            hang.suspects,
            f"no step from rank{'s' if len(hang.ranks) > 1 else ''} "
            f"{', '.join(map(str, hang.ranks))} for {hang.age_s:.1f} s "
            f"(limit {hang.threshold_s:.1f} s); suspect: rank "
            f"{', '.join(map(str, hang.suspects))} at step {hang.step}",
            stalled=list(hang.ranks),
            step=hang.step,
            age_s=round(hang.age_s, 3),
            threshold_s=round(hang.threshold_s, 3),
            stacks_ranks=sorted(stacks),
        )
        self._await_recovery(now, "hang")
        self._death_sig = signal.SIGKILL
        if self._nodes == 1:
            # With several nodes every agent sees its own ranks stall; which node stopped
            # first is not known here, so a hang counts against no node.
            self._count_node_fault()
        return RunResult(state=WorkerState.UNHEALTHY)

    def _on_no_progress(
        self, stall: NoProgress, beacons: Mapping[int, Beacon], now: float
    ) -> RunResult:
        stacks = self._dump(beacons)
        ranks = ", ".join(map(str, stall.ranks))
        if self._ever_stepped:
            self._detected(
                "hang",
                stall.ranks,
                f"rank {ranks} reported no step within {stall.threshold_s:g} s of restarting",
                phase="startup",
                stacks_ranks=sorted(stacks),
            )
            self._await_recovery(now, "hang")
            self._death_sig = signal.SIGKILL
            return RunResult(state=WorkerState.UNHEALTHY)
        if stall.unattached:
            what = (
                f"rank {', '.join(map(str, stall.unattached))} did not call "
                f"baige.runtime.attach() within {stall.threshold_s:g} s of starting"
            )
        else:
            what = (
                f"rank {ranks} called attach() but reported no step within "
                f"{stall.threshold_s:g} s of starting"
            )
        self.fatal = (
            f"{what}. baige run watches training through its beacons: call "
            "`progress = baige.runtime.attach()` before the loop and `progress.step(step)` "
            "after every step; raise --startup-timeout if start-up takes longer, or pass "
            "--startup-timeout 0 to run without progress checks. Not restarting."
        )
        self._detected(
            "no_progress", stall.ranks, self.fatal, phase="startup", stacks_ranks=sorted(stacks)
        )
        self._remaining_restarts = 0
        self._death_sig = signal.SIGKILL
        return RunResult(state=WorkerState.UNHEALTHY)

    def _early_exit(self, ranks: Mapping[int, Beacon], now: float) -> RunResult:
        parts = []
        for rank, b in sorted(ranks.items()):
            if b.total_steps >= 0:
                goal = f"of {b.total_steps} (attach(total_steps={b.total_steps}))"
            else:
                goal = "without progress.finish()"
            at = f"after step {b.step}" if b.step >= 0 else "before its first step"
            parts.append(f"rank {rank} exited with code 0 {at} {goal}")
        self.fatal = (
            f"{'; '.join(parts)}: it stopped before its training finished. A script run by "
            "baige run must reach its last step (attach(total_steps=N)) or call "
            "progress.finish() (or use `with attach() as progress:`) before exiting; "
            "not restarting, since a restart would stop early again."
        )
        self._detected("early_exit", tuple(sorted(ranks)), self.fatal)
        self._remaining_restarts = 0
        return RunResult(state=WorkerState.FAILED)

    def _first_sighting(
        self, kind: str, rank: int, count: int
    ) -> tuple[dict[str, Any] | None, float | None]:
        """On a condition's first window: the fault injected for it, if any, and the seconds
        from that injection to now (the detection time the event reports)."""
        injected = self._injection(kind, (rank,)) if count == 1 else None
        if injected is not None and isinstance(injected.get("ts"), int | float):
            return injected, round(time.time() - float(injected["ts"]), 3)
        return injected, None

    def _on_straggler(self, s: Straggler) -> None:
        report_after = self.settings.watch.straggler_report_after
        if s.count not in (1, report_after) and s.count % 12:
            return  # still slow: said when it started, when reported, and every 12th window
        injected, detect_s = self._first_sighting("straggler", s.rank, s.count)
        self.events.emit(
            "straggler",
            attempt=self._attempt,
            rank=s.rank,
            ratio=round(s.ratio, 3),
            busy_s=round(s.busy_s, 6),
            others_s=round(s.others_s, 6),
            step=s.step,
            count=s.count,
            detect_s=detect_s,
            injected=injected.get("fault") if injected else None,
        )
        log.warning(
            "baige run: rank %d is a straggler: %.1fx the others' compute per step (%d in a row)",
            s.rank,
            s.ratio,
            s.count,
        )
        if s.count >= report_after and not self._straggler_reported:
            self._straggler_reported = True
            self.events.emit(
                "node_reported",
                rank=s.rank,
                reason="straggler",
                message=f"rank {s.rank} on node {self.events.node} was {s.ratio:.1f}x slower "
                f"than the others for {s.count} windows in a row; cordon the node",
            )

    def _on_network_suspect(self, s: NetworkSuspect) -> None:
        report_after = self.settings.watch.straggler_report_after
        if s.count not in (1, report_after) and s.count % 12:
            return  # as for stragglers: when it starts, when it persists, then every 12th
        injected, detect_s = self._first_sighting("network_suspect", s.rank, s.count)
        message = (
            f"rank {s.rank} on node {self.events.node}: its collectives take {s.ratio:.1f}x "
            f"the others' ({s.own_s * 1e3:.2f} ms against {s.others_s * 1e3:.2f} ms each, "
            f"waiting for peers left out) while its compute is {s.busy_ratio:.2f}x theirs: "
            "suspect its network link, not its chip"
        )
        self.events.emit(
            "network_suspect",
            attempt=self._attempt,
            rank=s.rank,
            ratio=round(s.ratio, 3),
            own_s=round(s.own_s, 6),
            others_s=round(s.others_s, 6),
            busy_ratio=round(s.busy_ratio, 3),
            comm_per_step_s=round(s.comm_per_step_s, 6),
            samples=s.samples,
            step=s.step,
            count=s.count,
            detect_s=detect_s,
            injected=injected.get("fault") if injected else None,
            message=message,
        )
        log.warning("baige run: %s (%d in a row)", message, s.count)

    def _dump(self, beacons: Mapping[int, Beacon]) -> dict[int, str]:
        pids = {r: self._pids[r] for r, b in beacons.items() if b.attached and r in self._pids}
        if not pids:
            return {}
        files = {r: stacks_path(self.settings.run_dir, self._attempt, r) for r in pids}
        stacks = dump_stacks(pids, files)
        self.events.emit(
            "stacks", attempt=self._attempt, stacks={str(r): t for r, t in sorted(stacks.items())}
        )
        for rank, text in sorted(stacks.items()):  # one line each: the rest is in the file
            lines = text.strip().splitlines()
            where = innermost_frame(text) or (lines[-1] if lines else "(no stacks)")
            log.warning("baige run: rank %d was at %s (all stacks: %s)", rank, where, files[rank])
        return stacks
