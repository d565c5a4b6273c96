"""The pure autoscaler, table-driven: targets, clamping, stabilization windows, cool-down."""

from __future__ import annotations

import pytest

from baige.sched.autoscale import AutoscalePolicy, AutoscaleState, LoadSample, recommend

POLICY = AutoscalePolicy(min_replicas=1, max_replicas=8, target_qps_per_replica=10.0,
                         scale_down_window=60.0, cooldown=30.0)  # fmt: skip


def load(qps: float, ready: int, in_flight: float = 0.0) -> LoadSample:
    return LoadSample(qps=qps, in_flight=in_flight, ready_replicas=ready)


CASES = {
    "scale up at once": (POLICY, 2, load(55, 2), 6),
    "clamped to max": (POLICY, 2, load(500, 2), 8),
    "clamped to min": (POLICY, 1, load(0, 1), 1),
    "within tolerance keeps": (POLICY, 4, load(42, 4), 4),
    "in-flight target can ask for more": (
        AutoscalePolicy(1, 8, target_qps_per_replica=10, target_in_flight_per_replica=2),
        2, load(10, 2, in_flight=9), 5,
    ),
    "no metric keeps": (AutoscalePolicy(1, 8, target_qps_per_replica=None), 3, load(99, 3), 3),
    "from zero": (AutoscalePolicy(0, 8), 0, load(25, 0), 3),
}  # fmt: skip


@pytest.mark.parametrize("name", CASES)
def test_the_first_recommendation(name: str) -> None:
    policy, current, sample, expected = CASES[name]
    result = recommend(policy, AutoscaleState(), current, sample, now=1000.0)
    assert result.replicas == expected, result.reason
    assert result.changed == (expected != current)


def test_no_load_keeps_the_count_and_says_so() -> None:
    result = recommend(POLICY, AutoscaleState(), 3, None, now=0.0)
    assert result.replicas == 3 and "no load" in result.reason


def test_scale_down_waits_out_its_window_and_the_cooldown() -> None:
    state = AutoscaleState()
    up = recommend(POLICY, state, 1, load(60, 1), now=0.0)
    assert up.replicas == 6 and up.changed
    state, current = up.state, up.replicas
    # load falls at t=10: the cool-down (30 s) and the window (60 s) hold the count
    for now in (10.0, 40.0, 59.0):
        held = recommend(POLICY, state, current, load(5, current), now=now)
        assert held.replicas == 6, (now, held.reason)
        state = held.state
    # at t=70 the high recommendation (t=0) has left the window: scale down to the max of
    # the last 60 s, which is 1
    down = recommend(POLICY, state, current, load(5, current), now=70.0)
    assert down.replicas == 1 and down.changed and "scaled down" in down.reason


def test_a_brief_lull_does_not_drop_capacity() -> None:
    state = AutoscaleState()
    current = 4
    for now, qps in ((0.0, 40), (20.0, 8), (40.0, 40), (80.0, 40)):
        result = recommend(POLICY, state, current, load(qps, current), now=now)
        state, current = result.state, result.replicas
        assert current == 4, (now, result.reason)


def test_a_scale_up_window_takes_the_smallest_recent_recommendation() -> None:
    policy = AutoscalePolicy(1, 10, target_qps_per_replica=10, scale_up_window=30)
    first = recommend(policy, AutoscaleState(), 2, load(20, 2), now=0.0)
    spike = recommend(policy, first.state, 2, load(90, 2), now=10.0)
    assert spike.replicas == 2  # the 20 req/s recommendation (2) is still in the window
    sustained = recommend(policy, spike.state, 2, load(90, 2), now=45.0)
    assert sustained.replicas == 9


def test_a_fresh_autoscaler_watches_a_whole_window_before_scaling_down() -> None:
    """A restarted controller starts with no history: it must not drop replicas at once on
    its first quiet observation, nor on the next ones, until a whole window has passed."""
    state = AutoscaleState()
    for now in (0.0, 1.0, 30.0, 59.0):
        result = recommend(POLICY, state, 4, load(5, 4), now=now)
        assert result.replicas == 4, (now, result.reason)
        state = result.state
    result = recommend(POLICY, state, 4, load(5, 4), now=60.0)
    assert result.replicas == 1 and result.changed
