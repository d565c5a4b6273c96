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

Network suspect: a slow link does not show in compute, and every rank's time in collectives
rises with it (the fast ones wait for the slow one), so neither busy time nor comm time per
rank says who it is. The order of events does: ranks that time their collectives
(``Progress.comm()``) put each one's entry and exit in their beacons; for one collective,
the time after the *last* rank entered is transfer, not waiting for a late peer, and a rank
whose own transfers take far longer than the others' — while its compute per step does not
— is a network suspect, not a straggler. Entry times compare across ranks on one host (one
monotonic clock), so each node's agent judges its own ranks.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from baige.runtime.beacon import Beacon, State

__all__ = ["Hang", "NetworkSuspect", "NoProgress", "Straggler", "Watch", "WatchConfig"]


@dataclass(frozen=True, slots=True)
class WatchConfig:
    hang_timeout_s: float = 20.0
    hang_step_factor: float = 3.0
    startup_timeout_s: float = 300.0
    straggler_factor: float = 1.5
    straggler_window_s: float = 5.0
    straggler_min_steps: int = 3
    straggler_report_after: int = 3
    # a network suspect's own transfer time per collective must exceed the others' by this
    # much as well as by ``straggler_factor`` (50 µs against 20 µs is noise, not a link)
    network_floor_s: float = 0.0005
    network_min_samples: int = 3

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


@dataclass(frozen=True, slots=True)
class NetworkSuspect:
    """A rank whose own time in collectives (after the last peer arrived) is ``ratio`` times
    the others' median, while its compute per step is not slow (``busy_ratio``)."""

    rank: int
    ratio: float
    own_s: float  # mean transfer time per collective, waiting for peers left out
    others_s: float
    busy_ratio: float
    comm_per_step_s: float  # all its time in collectives per step, waiting included
    samples: int
    step: int
    count: int  # consecutive windows flagged, this one included


Finding = Hang | NoProgress | Straggler | NetworkSuspect


@dataclass
class _Window:
    start: float
    base: dict[int, tuple[int, float]] = field(default_factory=dict)  # rank -> (n_steps, busy)
    comm: dict[int, float] = field(default_factory=dict)  # rank -> comm_total at the start


class Watch:
    """State kept between looks: step times, the straggler window, consecutive flags."""

    def __init__(self, config: WatchConfig) -> None:
        self.config = config
        self.attempt_start = 0.0
        self._step_times: deque[float] = deque(maxlen=256)
        self._last: dict[int, tuple[int, float]] = {}  # rank -> (n_steps, t_last)
        self._window: _Window | None = None
        self._flags: dict[int, int] = {}
        self._net_flags: dict[int, int] = {}
        self._marks: dict[int, dict[int, tuple[float, float]]] = {}  # n -> rank -> times
        self._own: dict[int, list[float]] = {}  # rank -> own transfer times, this window

    def new_attempt(self, now: float) -> None:
        self.attempt_start = now
        self._last.clear()
        self._window = None
        self._marks.clear()
        self._own.clear()

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
        self._match_collectives(beacons)
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

    def _stragglers(
        self, now: float, beacons: Mapping[int, Beacon]
    ) -> list[Straggler | NetworkSuspect]:
        cfg = self.config
        running = {r: b for r, b in beacons.items() if b.state == State.RUNNING}
        if len(running) < 2:
            self._window = None
            return []
        window = self._window
        if window is None or set(window.base) != set(running):
            self._window = _Window(now, {r: (b.n_steps, b.busy_total) for r, b in running.items()})
            self._window.comm = {r: b.comm_total for r, b in running.items()}
            self._own.clear()
            return []
        steps = {r: b.n_steps - window.base[r][0] for r, b in running.items()}
        if now - window.start < cfg.straggler_window_s or min(steps.values()) < max(
            1, cfg.straggler_min_steps
        ):
            return []
        per_step = {r: (b.busy_total - window.base[r][1]) / steps[r] for r, b in running.items()}
        comm_step = {
            r: (b.comm_total - window.comm.get(r, 0.0)) / steps[r] for r, b in running.items()
        }
        self._window = _Window(now, {r: (b.n_steps, b.busy_total) for r, b in running.items()})
        self._window.comm = {r: b.comm_total for r, b in running.items()}
        found: list[Straggler | NetworkSuspect] = []
        found += self._network_suspects(per_step, comm_step, running)
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

    # ------------------------------------------------------------------ network suspects

    def _match_collectives(self, beacons: Mapping[int, Beacon]) -> None:
        """Collect each timed collective's (enter, exit) per rank; once every running rank
        has reported one, keep each rank's transfer time: exit minus the last entry."""
        running = {r: b for r, b in beacons.items() if b.state == State.RUNNING}
        if len(running) < 2:
            return
        for rank, b in running.items():
            for n, enter, leave in b.comm_last:
                if enter > 0 and leave >= enter:
                    self._marks.setdefault(n, {})[rank] = (enter, leave)
        done = [n for n, by in self._marks.items() if set(running) <= set(by)]
        for n in done:
            by = self._marks.pop(n)
            last_in = max(by[r][0] for r in running)
            for rank in running:
                self._own.setdefault(rank, []).append(max(0.0, by[rank][1] - last_in))
        if self._marks:  # ones some rank will never report (it restarted, or went on)
            newest = max(b.comm_count for b in running.values())
            for n in [n for n in self._marks if n < newest - 64]:
                del self._marks[n]

    def _network_suspects(
        self,
        busy: Mapping[int, float],
        comm: Mapping[int, float],
        running: Mapping[int, Beacon],
    ) -> list[NetworkSuspect]:
        cfg = self.config
        own = {r: v for r, v in self._own.items() if len(v) >= cfg.network_min_samples}
        samples = {r: len(v) for r, v in self._own.items()}
        self._own = {}
        if len(own) < 2 or set(own) != set(running):
            self._net_flags.clear()
            return []
        mean = {r: statistics.fmean(v) for r, v in own.items()}
        found: list[NetworkSuspect] = []
        for rank, value in sorted(mean.items()):
            others = statistics.median(v for r, v in mean.items() if r != rank)
            ratio = value / others if others > 0 else (float("inf") if value > 0 else 0.0)
            others_busy = statistics.median(v for r, v in busy.items() if r != rank)
            busy_ratio = busy[rank] / others_busy if others_busy > 0 else 1.0
            slow = ratio >= cfg.straggler_factor and value - others >= cfg.network_floor_s
            if slow and busy_ratio < cfg.straggler_factor:
                self._net_flags[rank] = self._net_flags.get(rank, 0) + 1
                found.append(
                    NetworkSuspect(
                        rank=rank,
                        ratio=ratio,
                        own_s=value,
                        others_s=others,
                        busy_ratio=busy_ratio,
                        comm_per_step_s=comm.get(rank, 0.0),
                        samples=samples.get(rank, 0),
                        step=running[rank].step,
                        count=self._net_flags[rank],
                    )
                )
            else:
                self._net_flags.pop(rank, None)
        return found
