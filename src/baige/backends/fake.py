"""A backend that runs nothing: replicas "run" for a set time and then succeed.

Declared, not hidden: it ships with the package so that benchmarks and demos can drive the
real control plane at a scale no test machine has processes for (10,000 nodes, 5,000 jobs),
exactly as httpx ships ``MockTransport``. It is never used unless asked for by name.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from baige.backends.base import ReplicaLaunch, ReplicaObservation, ReplicaState

__all__ = ["FakeBackend"]


class FakeBackend:
    """Replicas succeed ``duration`` seconds after launch (or run until stopped if None)."""

    name = "fake"

    def __init__(self, duration: float | None = None, clock: Callable[[], float] = time.time):
        self.duration = duration
        self.clock = clock
        self.started: dict[str, float] = {}
        self.stopped: dict[str, float] = {}
        self.launches: list[str] = []

    def launch(self, replica: ReplicaLaunch) -> ReplicaObservation:
        if replica.id not in self.started:
            self.started[replica.id] = self.clock()
            self.launches.append(replica.id)
        return self._observe(replica.id)

    def stop(self, replica_id: str) -> None:
        self.stopped.setdefault(replica_id, self.clock())

    def _observe(self, replica_id: str) -> ReplicaObservation:
        started = self.started.get(replica_id)
        if started is None:
            return ReplicaObservation(replica_id, ReplicaState.LOST, reason="never launched")
        if replica_id in self.stopped:
            return ReplicaObservation(
                replica_id,
                ReplicaState.STOPPED,
                exit_code=-15,
                started_at=started,
                finished_at=self.stopped[replica_id],
            )
        if self.duration is not None and self.clock() - started >= self.duration:
            return ReplicaObservation(
                replica_id,
                ReplicaState.SUCCEEDED,
                exit_code=0,
                started_at=started,
                finished_at=started + self.duration,
            )
        return ReplicaObservation(replica_id, ReplicaState.RUNNING, started_at=started)

    def observe(self, replica_ids: Iterable[str]) -> dict[str, ReplicaObservation]:
        return {rid: self._observe(rid) for rid in replica_ids}
