"""The detection rules, on made-up beacons and a made-up clock."""

from __future__ import annotations

import math

import pytest

from baige.runtime.beacon import Beacon, Source, State
from baige.runtime.watch import Hang, NoProgress, Straggler, Watch, WatchConfig


def beacon(
    rank: int,
    step: int = -1,
    n: int = 0,
    t_last: float = 0.0,
    busy: float = 0.0,
    state: State | None = None,
    total: int = -1,
) -> Beacon:
    if state is None:
        state = State.RUNNING if n > 0 else State.ATTACHED
    return Beacon(rank, 0, 0, 100 + rank, state, Source.NONE, step, n, total, -1, 0.0, 0.0,
                  t_last, busy, 0.0, math.nan)  # fmt: skip


def test_no_step_for_longer_than_the_timeout_is_a_hang_and_the_laggard_is_suspect() -> None:
    watch = Watch(WatchConfig(hang_timeout_s=10))
    watch.new_attempt(0.0)
    beacons = {0: beacon(0, 39, 40, t_last=100.0), 1: beacon(1, 40, 41, t_last=100.2)}
    assert watch.check(105.0, beacons) == []
    [hang] = watch.check(110.5, beacons)
    assert isinstance(hang, Hang)
    assert hang.ranks == (0, 1) and hang.suspects == (0,) and hang.step == 39
    assert hang.age_s == pytest.approx(10.5) and hang.threshold_s == 10


def test_the_hang_limit_grows_to_three_median_steps() -> None:
    watch = Watch(WatchConfig(hang_timeout_s=2))
    watch.new_attempt(0.0)
    for i in range(1, 6):  # steps of 4 s
        watch.check(4.0 * i, {0: beacon(0, i, i, t_last=4.0 * i)})
    assert watch.median_step_s == pytest.approx(4.0)
    assert watch.hang_threshold_s == pytest.approx(12.0)
    assert watch.check(31.0, {0: beacon(0, 5, 5, t_last=20.0)}) == []
    assert isinstance(watch.check(32.5, {0: beacon(0, 5, 5, t_last=20.0)})[0], Hang)


def test_before_the_first_step_the_startup_timeout_applies() -> None:
    watch = Watch(WatchConfig(hang_timeout_s=1, startup_timeout_s=30))
    watch.new_attempt(100.0)
    quiet = {0: beacon(0, state=State.CREATED), 1: beacon(1)}
    assert watch.check(129.0, quiet) == []
    [stall] = watch.check(131.0, quiet)
    assert isinstance(stall, NoProgress)
    assert stall.ranks == (0, 1) and stall.unattached == (0,)
    assert stall.waited_s == pytest.approx(31.0)


def test_finished_ranks_are_not_hung_and_zero_switches_checks_off() -> None:
    watch = Watch(WatchConfig(hang_timeout_s=1))
    watch.new_attempt(0.0)
    done = {0: beacon(0, 9, 10, t_last=1.0, state=State.FINISHED)}
    assert watch.check(100.0, done) == []
    last_step = {0: beacon(0, 9, 10, t_last=1.0, total=10)}  # e.g. in its final, slow save
    assert watch.check(100.0, last_step) == []
    off = Watch(WatchConfig(hang_timeout_s=1, startup_timeout_s=0))
    off.new_attempt(0.0)
    assert off.check(1000.0, {0: beacon(0, 1, 2, t_last=1.0)}) == []
    no_hang = Watch(WatchConfig(hang_timeout_s=0, startup_timeout_s=5))
    no_hang.new_attempt(0.0)
    assert no_hang.check(1000.0, {0: beacon(0, 1, 2, t_last=1.0)}) == []


def test_a_rank_computing_longer_per_step_than_the_others_is_a_straggler() -> None:
    cfg = WatchConfig(straggler_factor=1.5, straggler_window_s=5, straggler_min_steps=3)
    watch = Watch(cfg)
    watch.new_attempt(0.0)
    found: list[Straggler] = []
    for window in range(4):
        t, n = 5.0 * window, 10 * window + 1
        busy = {0: 0.01 * n, 1: 0.01 * n, 2: 0.03 * n, 3: 0.011 * n}
        beacons = {r: beacon(r, n - 1, n, t_last=t, busy=b) for r, b in busy.items()}
        found += [f for f in watch.check(t, beacons) if isinstance(f, Straggler)]
    assert [(s.rank, s.count) for s in found] == [(2, 1), (2, 2), (2, 3)]
    assert found[0].ratio == pytest.approx(3.0) and found[0].others_s == pytest.approx(0.01)


def test_two_ranks_compare_with_each_other_and_equals_are_not_flagged() -> None:
    watch = Watch(WatchConfig(straggler_window_s=1, straggler_min_steps=2))
    watch.new_attempt(0.0)
    flagged = []
    for k, per_rank in enumerate([(0.01, 0.01), (0.01, 0.0102), (0.01, 0.02)]):
        n = 5 * k + 1
        beacons = {r: beacon(r, n - 1, n, t_last=k, busy=b * n) for r, b in enumerate(per_rank)}
        flagged += [f.rank for f in watch.check(float(k), beacons)]
    assert flagged == [1]


def test_a_window_needs_enough_steps_and_a_flag_streak_resets() -> None:
    watch = Watch(WatchConfig(straggler_window_s=1, straggler_min_steps=5))
    watch.new_attempt(0.0)
    watch.check(0.0, {0: beacon(0, 0, 1), 1: beacon(1, 0, 1)})
    few = {0: beacon(0, 2, 3, busy=0.03), 1: beacon(1, 2, 3, busy=0.3)}
    assert watch.check(10.0, few) == []  # 2 steps in the window: too few to judge
    slow = {0: beacon(0, 10, 11, busy=0.11), 1: beacon(1, 10, 11, busy=1.1)}
    assert [f.count for f in watch.check(11.0, slow)] == [1]
    even = {0: beacon(0, 20, 21, busy=0.21), 1: beacon(1, 20, 21, busy=1.2)}
    assert watch.check(12.0, even) == []
    again = {0: beacon(0, 30, 31, busy=0.31), 1: beacon(1, 30, 31, busy=2.2)}
    assert [f.count for f in watch.check(13.0, again)] == [1]


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="must be > 1"):
        WatchConfig(straggler_factor=1.0)
    with pytest.raises(ValueError, match=">= 0"):
        WatchConfig(hang_timeout_s=-1)
