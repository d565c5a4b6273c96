"""Training progress on a simulated clock, in closed form.

A training job needs ``work`` replica-seconds: with ``r`` replicas it progresses ``r`` per
second (an elastic job at half size runs at half speed). A *segment* is a stretch of running
at a fixed size: it starts with an ``overhead`` (launch, initialization, checkpoint load)
with no progress, then alternates ``interval`` seconds of progress and a ``stall`` of
``stall`` seconds while a checkpoint is written; the checkpoint holds the progress made up
to the start of its stall and is durable at the end of it. A failure loses the progress
since the last durable checkpoint.

Everything here is a pure function of the segment and a time, so the simulator never steps
time: it asks when a segment will finish, and what it has done and saved at an instant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Checkpointing", "Segment"]


@dataclass(frozen=True, slots=True)
class Checkpointing:
    interval: float  # progress seconds between checkpoints; 0: never checkpoints
    stall: float

    def progress_time(self, run: float) -> float:
        """Seconds of progress in ``run`` seconds after the overhead."""
        if run <= 0:
            return 0.0
        if self.interval <= 0:
            return run
        period = self.interval + self.stall
        cycles = math.floor(run / period)
        return cycles * self.interval + min(run - cycles * period, self.interval)

    def saved_time(self, run: float) -> float:
        """Seconds of progress held by durable checkpoints after ``run`` seconds."""
        if run <= 0 or self.interval <= 0:
            return 0.0
        return math.floor(run / (self.interval + self.stall)) * self.interval

    def saved_at(self, run: float) -> float:
        """When (seconds after the overhead) the last durable checkpoint was completed."""
        if run <= 0 or self.interval <= 0:
            return 0.0
        return math.floor(run / (self.interval + self.stall)) * (self.interval + self.stall)

    def run_for(self, progress: float) -> float:
        """Seconds of running (after the overhead) to make ``progress`` seconds of progress:
        no checkpoint is written after the last piece."""
        if progress <= 0:
            return 0.0
        if self.interval <= 0:
            return progress
        stalls = math.ceil(progress / self.interval - 1e-12) - 1
        return progress + max(0, stalls) * self.stall


@dataclass(frozen=True, slots=True)
class Segment:
    """A job running at ``replicas`` from ``start``; progress begins at ``start + overhead``.
    ``done`` and ``saved`` are the job's totals (replica-seconds) when it began."""

    start: float
    overhead: float
    replicas: int
    done: float
    saved: float

    @property
    def progress_from(self) -> float:
        return self.start + self.overhead

    def done_at(self, t: float, ckpt: Checkpointing) -> float:
        return self.done + self.replicas * ckpt.progress_time(t - self.progress_from)

    def saved_at(self, t: float, ckpt: Checkpointing) -> float:
        """Durable progress at ``t`` (what survives a failure at ``t``)."""
        return max(self.saved, self.done + self.replicas * ckpt.saved_time(t - self.progress_from))

    def last_save(self, t: float, ckpt: Checkpointing) -> float:
        """When the progress that survives a failure at ``t`` was last made durable."""
        run = t - self.progress_from
        if ckpt.saved_time(run) <= 0:
            return self.progress_from
        return self.progress_from + ckpt.saved_at(run)

    def finish(self, work: float, ckpt: Checkpointing) -> float:
        """When the job completes ``work`` if nothing interrupts it."""
        if self.replicas <= 0:
            return math.inf
        return self.progress_from + ckpt.run_for((work - self.done) / self.replicas)
