"""The two lines a training loop adds: ``progress = attach()`` and ``progress.step(step)``.

Under ``baige run`` each call to ``step`` overwrites the rank's beacon (a few stores into
mapped memory: no system call that can block, no lock, no I/O) and checks the fault plan.
Outside ``baige run`` (plain ``python``, plain ``torchrun``) there is no beacon and ``step``
only checks the fault plan, so the same script runs anywhere and rehearsals work with any
launcher.

What ``attach`` also does, once per process: registers faulthandler on SIGUSR1 (and for
fatal signals, if nothing else did) so the agent can read every thread's stack before it
kills a hung rank.
"""

from __future__ import annotations

import contextlib
import faulthandler
import math
import os
import signal
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Protocol

from baige.runtime.beacon import BeaconWriter, Source, State, beacon_path
from baige.runtime.faults import Injector, ledger_dir, parse_faults
from baige.runtime.layout import ENV_BEACON_DIR, ENV_FAULT, ENV_RUN_DIR, ENV_RUN_START
from baige.runtime.stacks import STACKS_SIGNAL, stacks_path

__all__ = ["Progress", "attach"]


class _Scalar(Protocol):
    def item(self) -> float | int | bool: ...


_current: Progress | None = None


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def _loss_value(loss: float | _Scalar | None) -> float:
    """A float for the beacon, never a device synchronisation: an accelerator tensor is not
    read (pass ``loss.item()`` where you read it anyway)."""
    if loss is None:
        return math.nan
    if isinstance(loss, int | float):
        return float(loss)
    device = getattr(loss, "device", None)
    if device is not None and getattr(device, "type", "cpu") != "cpu":
        return math.nan
    try:
        return float(loss.item())
    except (TypeError, ValueError, RuntimeError):
        return math.nan


class Progress:
    """A rank's progress reporter; get it with ``attach()``."""

    def __init__(
        self,
        *,
        rank: int,
        world_size: int,
        attempt: int,
        total_steps: int | None,
        writer: BeaconWriter | None,
        injector: Injector | None,
        stacks_file: IO[str] | None,
    ) -> None:
        self.rank = rank
        self.world_size = world_size
        self.attempt = attempt
        self._writer = writer
        self._injector = injector if injector is not None and not injector.idle else None
        self._stacks_file = stacks_file
        self._cpu = time.process_time()
        self._comm = _CommTimer(writer, self._injector)
        # set on SIGTERM for a job that declared ``checkpoint:`` (see ``_catch_stop``): save
        # and return from the training loop
        self.stop_requested = False
        self.total_steps: int | None = None
        self.set_total_steps(total_steps)
        if writer is not None:
            writer.t_attach = time.monotonic()
            writer.state = State.ATTACHED
            writer.publish()

    @property
    def watched(self) -> bool:
        """Whether an agent reads this rank's beacon (the script runs under ``baige run``)."""
        return self._writer is not None

    def set_total_steps(self, total_steps: int | None) -> None:
        if total_steps is not None and total_steps < 0:
            raise ValueError(f"total_steps must be >= 0, got {total_steps}")
        self.total_steps = total_steps
        if self._writer is not None:
            self._writer.total_steps = -1 if total_steps is None else total_steps
            self._writer.publish()

    def comm(self) -> _CommTimer:
        """Time a collective: ``with progress.comm(): dist.all_reduce(grads)``.

        Each timed collective's entry and exit go into the beacon, so the agent can tell a
        rank that waits for late peers (they are slow) from one whose own transfers are
        slow (its network is): a rank whose collectives slow down while its compute does
        not is reported as ``network_suspect``, not as a straggler. Costs two clock reads
        and a beacon write (microseconds). Time only blocking collectives (or wait on the
        work handle inside the block)."""
        return self._comm

    def step(
        self,
        step: int,
        loss: float | _Scalar | None = None,
        *,
        busy_s: float | None = None,
        comm_s: float | None = None,
    ) -> None:
        """Report that ``step`` is done. ``busy_s`` is the rank's own compute time for it,
        for straggler detection; by default the process CPU time since the last call
        (right on CPU; on accelerators pass e.g. CUDA-event time). ``comm_s``: seconds the
        step spent in collectives, for a script that times them itself instead of with
        ``comm()``."""
        cpu = time.process_time()
        busy = cpu - self._cpu if busy_s is None else busy_s
        injector = self._injector
        if injector is not None and injector.check(step, busy) > 0 and busy_s is None:
            cpu = time.process_time()
            busy = cpu - self._cpu
        self._cpu = cpu
        w = self._writer
        if w is None:
            return
        now = time.monotonic()
        if w.n_steps == 0:
            w.t_first = now
            w.wall_last = now - w.t_attach
        else:
            w.wall_last = now - w.t_last
        w.t_last = now
        w.step = step
        w.n_steps += 1
        w.busy_total += busy
        if comm_s is not None and comm_s > 0:
            w.comm_total += comm_s
        w.loss = _loss_value(loss)
        if w.state != State.FINISHED:
            w.state = State.RUNNING
        w.publish()

    def restored(self, step: int, source: str = "memory") -> None:
        """Say which step the script restored (and from ``memory``, ``disk`` or elsewhere),
        so the agent can count the steps a fault cost."""
        if self._writer is not None:
            self._writer.restored_step = step
            self._writer.source = Source.parse(source)
            self._writer.publish()

    def finish(self) -> None:
        """Say training is complete: exiting after this is success, before it a fault."""
        if self._writer is not None:
            self._writer.state = State.FINISHED
            self._writer.publish()

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.finish()


class _CommTimer:
    """``Progress.comm()``'s context manager: one per process, reused (no allocation)."""

    __slots__ = ("_enter", "_injector", "_writer")

    def __init__(self, writer: BeaconWriter | None, injector: Injector | None) -> None:
        self._writer = writer
        self._injector = injector
        self._enter = 0.0

    def __enter__(self) -> None:
        self._enter = time.monotonic()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        leave = time.monotonic()
        if self._injector is not None:  # netslow: this rank's transfers take longer
            extra = self._injector.comm_delay(leave - self._enter)
            if extra > 0:
                time.sleep(extra)  # waiting on a slow link burns no CPU
                leave = time.monotonic()
        if self._writer is not None and exc_type is None:
            self._writer.mark_comm(self._enter, leave)
            self._writer.publish()


def _stacks_file(run_dir: Path, attempt: int, rank: int) -> IO[str] | None:
    path = stacks_path(run_dir, attempt, rank)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        out = path.open("a", encoding="utf-8")
    except OSError:
        return None
    faulthandler.register(STACKS_SIGNAL, file=out, all_threads=True, chain=False)
    if not faulthandler.is_enabled():
        faulthandler.enable(file=out, all_threads=True)
    return out


def attach(total_steps: int | None = None) -> Progress:
    """This process's ``Progress`` (made on the first call; later calls return it and may set
    ``total_steps``). With ``total_steps``, reaching step ``total_steps - 1`` means finished;
    without it, call ``progress.finish()`` or use ``with attach() as progress:``.

    Raises ``FaultSpecError`` if ``BAIGE_FAULT`` does not parse or names a rank the job
    lacks."""
    global _current  # noqa: PLW0603 - one Progress per process is the point
    if _current is not None:
        if total_steps is not None:
            _current.set_total_steps(total_steps)
        return _current
    rank = _env_int("RANK", 0)
    world_size = _env_int("WORLD_SIZE", 1)
    attempt = _env_int("TORCHELASTIC_RESTART_COUNT", 0)
    run_dir_env = os.environ.get(ENV_RUN_DIR)
    run_dir = Path(run_dir_env) if run_dir_env else None

    plan = parse_faults(os.environ.get(ENV_FAULT))
    beacon_dir = os.environ.get(ENV_BEACON_DIR)
    injector: Injector | None = None
    if plan:
        try:
            run_start = float(os.environ.get(ENV_RUN_START, ""))
        except ValueError:
            run_start = time.time()
        injector = Injector(
            rank=rank,
            # under baige run the agent checked the ranks against the largest world
            faults=plan.resolve(world_size, strict=not beacon_dir),
            ledger=ledger_dir(run_dir) if run_dir is not None else None,
            run_start=run_start,
        )

    writer: BeaconWriter | None = None
    if beacon_dir:
        path = beacon_path(Path(beacon_dir), rank)
        with contextlib.suppress(FileNotFoundError):
            writer = BeaconWriter(path)
    if writer is not None:
        attempt = writer.attempt  # the agent's count, which is where it looks for stacks
    stacks = _stacks_file(run_dir, attempt, rank) if run_dir is not None else None
    _current = Progress(
        rank=rank,
        world_size=world_size,
        attempt=attempt,
        total_steps=total_steps,
        writer=writer,
        injector=injector,
        stacks_file=stacks,
    )
    if os.environ.get(ENV_SAVE_ON_STOP) == "1":
        _catch_stop(_current, _env_float(ENV_STOP_GRACE, DEFAULT_STOP_GRACE_S))
    return _current


# The control plane sets these for a job that declares ``checkpoint:``: on SIGTERM (it is
# being preempted, shrunk or drained) the script gets ``stop_grace`` seconds to save first.
ENV_SAVE_ON_STOP = "BAIGE_SAVE_ON_STOP"
ENV_STOP_GRACE = "BAIGE_STOP_GRACE_S"
DEFAULT_STOP_GRACE_S = 8.0


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, ""))
    except ValueError:
        return default


def _catch_stop(progress: Progress, grace: float) -> None:
    """Turn SIGTERM into ``progress.stop_requested`` so the training loop can save a last
    checkpoint and leave (the work since the last interval is then not lost to a
    preemption); a script that does not look within ``grace`` seconds is ended as SIGTERM
    would have ended it. A handler the script installed itself is left alone."""
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return
    if threading.current_thread() is not threading.main_thread():
        return

    def on_term(signum: int, _frame: object) -> None:
        if progress.stop_requested:  # the agent passes on the backend's SIGTERM: one grace
            return
        progress.stop_requested = True
        timer = threading.Timer(grace, os._exit, args=(128 + signum,))
        timer.daemon = True
        timer.start()

    signal.signal(signal.SIGTERM, on_term)
