"""A backend that runs nothing: replicas "run" as a script says, on a clock it is given.

Declared, not hidden: it ships with the package so that benchmarks and demos can drive the
real control plane at a scale no test machine has processes for (10,000 nodes, 5,000 jobs),
and so that tests can rehearse failures without ``mock.patch`` — exactly as httpx ships
``MockTransport``, which takes a handler. Here the handler is ``script``: given a
:class:`~baige.backends.base.ReplicaLaunch`, it says how that replica behaves —

* :class:`Run` ``(seconds, exit_code)``: runs that long (forever with ``None``), then exits
  with that code;
* :class:`Vanish` ``(after)``: disappears without an exit status (a lost node, a killed shim);
* :class:`Refuse` ``(reason)``: cannot be started at all.

Without a script every replica runs for ``duration`` seconds and succeeds (forever with
None). Time comes from ``clock``, so a test can step it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from baige.backends.base import ReplicaLaunch, ReplicaObservation, ReplicaState

__all__ = ["Behaviour", "FakeBackend", "Refuse", "Run", "Vanish"]


@dataclass(frozen=True, slots=True)
class Run:
    seconds: float | None = None
    exit_code: int = 0


@dataclass(frozen=True, slots=True)
class Vanish:
    after: float = 0.0


@dataclass(frozen=True, slots=True)
class Refuse:
    reason: str = "refused by the script"


Behaviour = Run | Vanish | Refuse


class FakeBackend:
    """Replicas behave as ``script`` says (default: succeed ``duration`` seconds after launch,
    or run until stopped if None)."""

    name = "fake"

    def __init__(
        self,
        duration: float | None = None,
        clock: Callable[[], float] = time.time,
        script: Callable[[ReplicaLaunch], Behaviour] | None = None,
    ):
        self.duration = duration
        self.clock = clock
        self.script = script
        self.started: dict[str, float] = {}
        self.stopped: dict[str, float] = {}
        self.behaviour: dict[str, Behaviour] = {}
        self.launches: list[str] = []
        self.launched: dict[str, ReplicaLaunch] = {}

    def launch(self, replica: ReplicaLaunch) -> ReplicaObservation:
        if replica.id not in self.started:
            behaviour = self.script(replica) if self.script else Run(self.duration)
            if isinstance(behaviour, Refuse):
                return ReplicaObservation(replica.id, ReplicaState.FAILED, exit_code=127,
                                          reason=behaviour.reason)  # fmt: skip
            self.started[replica.id] = self.clock()
            self.behaviour[replica.id] = behaviour
            self.launches.append(replica.id)
            self.launched[replica.id] = replica
        return self._observe(replica.id)

    def stop(self, replica_id: str) -> None:
        self.stopped.setdefault(replica_id, self.clock())

    def running(self) -> list[str]:
        """Replicas running now (launched, not ended, not stopped)."""
        return [r for r in self.started if self._observe(r).state is ReplicaState.RUNNING]

    def _observe(self, replica_id: str) -> ReplicaObservation:
        started = self.started.get(replica_id)
        if started is None:
            return ReplicaObservation(replica_id, ReplicaState.LOST, reason="never launched")
        now = self.clock()
        behaviour = self.behaviour.get(replica_id, Run(self.duration))
        ends = None
        if isinstance(behaviour, Vanish):
            ends = started + behaviour.after
        elif isinstance(behaviour, Run) and behaviour.seconds is not None:
            ends = started + behaviour.seconds
        stopped = self.stopped.get(replica_id)
        if stopped is not None and (ends is None or stopped < ends):
            return ReplicaObservation(replica_id, ReplicaState.STOPPED, exit_code=-15,
                                      started_at=started, finished_at=stopped)  # fmt: skip
        if ends is None or now < ends:
            return ReplicaObservation(replica_id, ReplicaState.RUNNING, started_at=started)
        if isinstance(behaviour, Vanish):
            return ReplicaObservation(replica_id, ReplicaState.LOST, started_at=started,
                                      finished_at=ends, reason="vanished (scripted)")  # fmt: skip
        code = behaviour.exit_code if isinstance(behaviour, Run) else -1
        state = ReplicaState.SUCCEEDED if code == 0 else ReplicaState.FAILED
        return ReplicaObservation(replica_id, state, exit_code=code,
                                  started_at=started, finished_at=ends)  # fmt: skip

    def observe(self, replica_ids: Iterable[str]) -> dict[str, ReplicaObservation]:
        return {rid: self._observe(rid) for rid in replica_ids}
