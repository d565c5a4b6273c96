"""Deciding, from beacons alone, whether a worker group is hung, never started, or has a slow
rank. Pure: time comes in as an argument and nothing here touches a process, so every rule is
tested with made-up beacons (``tests/unit/runtime/test_watch.py``).

Hang: a rank whose last step is older than ``max(hang_timeout, 3 × median step time)``; before
a rank's first step in an attempt (imports, rendezvous, restore) the limit is the start-up
timeout instead. In data parallelism every rank stops when one does, so the suspects are the
ranks that got least far: the lowest step, then the oldest beacon.

Straggler: wall time per step is the same on every rank of a synchronous job (the fast ones
wait in the collective), so it cannot say who is slow; compute per step can. Beacons carry
the process CPU seconds spent per step (or what the script reports as ``busy_s``); a rank
waiting in gloo or NCCL uses almost none. Over a window of a few seconds each rank's busy
time per step is compared with the median of the *other* ranks (with two ranks the median of
all would halve the signal).
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from baige.runtime.beacon import Beacon, State

__all__ = ["Hang", "NoProgress", "Straggler", "Watch", "WatchConfig"]


@dataclass(frozen=True, slots=True)
class WatchConfig:
    hang_timeout_s: float = 20.0
    hang_step_factor: float = 3.0
    startup_timeout_s: float = 300.0
    straggler_factor: float = 1.5
    straggler_window_s: float = 5.0
    straggler_min_steps: int = 3
    straggler_report_after: int = 3

    def __post_init__(self) -> None:
        if self.hang_timeout_s < 0 or self.startup_timeout_s < 0:
            raise ValueError("timeouts must be >= 0 (0 switches the check off)")
        if self.straggler_factor <= 1:
            raise ValueError("the straggler factor must be > 1")
        if self.straggler_report_after < 1:
            raise ValueError("straggler_report_after must be >= 1")


@dataclass(frozen=True, slots=True)
class Hang:
    """Ranks with no step for longer than ``threshold_s``; ``suspects`` stopped first."""

    ranks: tuple[int, ...]
    suspects: tuple[int, ...]
    step: int
    age_s: float
    threshold_s: float


@dataclass(frozen=True, slots=True)
class NoProgress:
    """Ranks that reported no step within the start-up timeout of this attempt."""

    ranks: tuple[int, ...]
    unattached: tuple[int, ...]
    waited_s: float
    threshold_s: float


@dataclass(frozen=True, slots=True)
class Straggler:
    rank: int
    ratio: float
    busy_s: float
    others_s: float
    step: int
    count: int  # consecutive windows flagged, this one included


Finding = Hang | NoProgress | Straggler


@dataclass
class _Window:
    start: float
    base: dict[int, tuple[int, float]] = field(default_factory=dict)  # rank -> (n_steps, busy)


class Watch:
    """State kept between looks: step times, the straggler window, consecutive flags."""

    def __init__(self, config: WatchConfig) -> None:
        self.config = config
        self.attempt_start = 0.0
        self._step_times: deque[float] = deque(maxlen=256)
        self._last: dict[int, tuple[int, float]] = {}  # rank -> (n_steps, t_last)
        self._window: _Window | None = None
        self._flags: dict[int, int] = {}

    def new_attempt(self, now: float) -> None:
        self.attempt_start = now
        self._last.clear()
        self._window = None

    @property
    def median_step_s(self) -> float | None:
        return statistics.median(self._step_times) if self._step_times else None

    @property
    def hang_threshold_s(self) -> float:
        median = self.median_step_s or 0.0
        return max(self.config.hang_timeout_s, self.config.hang_step_factor * median)

    def check(self, now: float, beacons: Mapping[int, Beacon]) -> list[Finding]:
        """Everything wrong at ``now``: at most one Hang or NoProgress, any Stragglers."""
        self._sample_step_times(beacons)
        found: list[Finding] = list(self._stragglers(now, beacons))
        stall = self._stall(now, beacons)
        if stall is not None:
            found.insert(0, stall)
        return found

    # ------------------------------------------------------------------ step times

    def _sample_step_times(self, beacons: Mapping[int, Beacon]) -> None:
        for rank, b in beacons.items():
            prev = self._last.get(rank)
            if b.n_steps <= 0:
                continue
            if prev is not None and b.n_steps > prev[0] and prev[0] >= 1:
                self._step_times.append((b.t_last - prev[1]) / (b.n_steps - prev[0]))
            if prev is None or b.n_steps != prev[0]:
                self._last[rank] = (b.n_steps, b.t_last)

    # ------------------------------------------------------------------ hangs

    def _stall(self, now: float, beacons: Mapping[int, Beacon]) -> Hang | NoProgress | None:
        cfg = self.config
        if cfg.startup_timeout_s == 0:
            return None
        live = {r: b for r, b in beacons.items() if not b.finished}  # final save, teardown
        if not live:
            return None
        waiting = {r: b for r, b in live.items() if b.n_steps == 0}
        stepping = {r: b for r, b in live.items() if b.n_steps > 0}
        threshold = self.hang_threshold_s
        if cfg.hang_timeout_s > 0 and stepping:
            ages = {r: now - b.t_last for r, b in stepping.items()}
            stalled = sorted(r for r, age in ages.items() if age > threshold)
            if stalled:
                low = min(b.step for b in stepping.values())
                lowest = [r for r, b in stepping.items() if b.step == low]
                oldest = max(ages[r] for r in lowest)
                suspects = sorted({r for r in lowest if ages[r] >= oldest - 1e-3} | set(waiting))
                return Hang(
                    ranks=tuple(sorted(set(stalled) | set(waiting))),
                    suspects=tuple(suspects),
                    step=low,
                    age_s=max(ages.values()),
                    threshold_s=threshold,
                )
        waited = now - self.attempt_start
        if waiting and waited > cfg.startup_timeout_s:
            return NoProgress(
                ranks=tuple(sorted(waiting)),
                unattached=tuple(sorted(r for r, b in waiting.items() if not b.attached)),
                waited_s=waited,
                threshold_s=cfg.startup_timeout_s,
            )
        return None

    # ------------------------------------------------------------------ stragglers

    def _stragglers(self, now: float, beacons: Mapping[int, Beacon]) -> list[Straggler]:
        cfg = self.config
        running = {r: b for r, b in beacons.items() if b.state == State.RUNNING}
        if len(running) < 2:
            self._window = None
            return []
        window = self._window
        if window is None or set(window.base) != set(running):
            self._window = _Window(now, {r: (b.n_steps, b.busy_total) for r, b in running.items()})
            return []
        steps = {r: b.n_steps - window.base[r][0] for r, b in running.items()}
        if now - window.start < cfg.straggler_window_s or min(steps.values()) < max(
            1, cfg.straggler_min_steps
        ):
            return []
        per_step = {r: (b.busy_total - window.base[r][1]) / steps[r] for r, b in running.items()}
        self._window = _Window(now, {r: (b.n_steps, b.busy_total) for r, b in running.items()})
        found: list[Straggler] = []
        for rank, busy in sorted(per_step.items()):
            others = statistics.median(v for r, v in per_step.items() if r != rank)
            ratio = busy / others if others > 0 else 0.0
            if ratio >= cfg.straggler_factor:
                self._flags[rank] = self._flags.get(rank, 0) + 1
                found.append(
                    Straggler(
                        rank=rank,
                        ratio=ratio,
                        busy_s=busy,
                        others_s=others,
                        step=running[rank].step,
                        count=self._flags[rank],
                    )
                )
            else:
                self._flags.pop(rank, None)
        return found
