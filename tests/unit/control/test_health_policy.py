"""The device-health policy, table-driven: each severity's action, overrides by kind and
XID, self-heal after a quiet window, a flapping node kept out, an operator's cordon kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from baige.control.health_policy import Action, HealthPolicy, NodeHealth, assess, load_policy
from baige.hw.health import Condition, Kind, Severity, xid_condition

POLICY = HealthPolicy(heal_after=60, flap_window=600, flap_limit=2)
FATAL = xid_condition(3, 79)
DEGRADED = Condition(Kind.THERMAL_THROTTLE, Severity.DEGRADED, 1, "hardware thermal slowdown")
INFO = xid_condition(0, 13)


@pytest.mark.parametrize(
    ("conditions", "cordon", "drain", "event"),
    [
        ([FATAL], True, True, "HealthCordoned"),
        ([DEGRADED], True, False, "HealthCordoned"),
        ([INFO], False, False, "HealthCondition"),
        ([INFO, DEGRADED, FATAL], True, True, "HealthCordoned"),
        ([], False, False, None),
    ],
)
def test_each_severity_takes_its_action(
    conditions: list[Condition], cordon: bool, drain: bool, event: str | None
) -> None:
    result = assess(POLICY, NodeHealth(), conditions, now=0.0)
    assert (result.cordon, result.drain, result.uncordon) == (cordon, drain, False)
    assert [e for e, _ in result.events][:1] == ([event] if event else [])
    if conditions:
        assert all(c.reason in " ".join(m for _, m in result.events) for c in conditions[-1:])


def test_xid_classes_follow_the_catalog() -> None:
    assert xid_condition(0, 79).severity is Severity.FATAL  # fallen off the bus
    assert xid_condition(0, 48).severity is Severity.FATAL  # double-bit ECC
    assert xid_condition(0, 63).severity is Severity.DEGRADED  # remap pending a reset
    assert xid_condition(0, 31).severity is Severity.INFO  # the application's page fault
    assert xid_condition(0, 9999).severity is Severity.INFO


def test_overrides_by_kind_and_by_xid() -> None:
    policy = HealthPolicy(overrides={"thermal-throttle": Action.EVENT, "xid:13": Action.DRAIN})
    assert not assess(policy, NodeHealth(), [DEGRADED], 0.0).cordon
    assert assess(policy, NodeHealth(), [INFO], 0.0).drain


def test_a_healed_node_comes_back_after_a_quiet_window() -> None:
    bad = assess(POLICY, NodeHealth(), [DEGRADED], now=0.0)
    state = bad.health
    still = assess(POLICY, state, [DEGRADED], now=30.0)  # still bad: stays, no new event
    assert not still.events and not still.uncordon
    quiet = assess(POLICY, still.health, [], now=60.0)  # passing for 30 s only
    assert not quiet.uncordon
    healed = assess(POLICY, quiet.health, [], now=91.0)
    assert healed.uncordon and healed.events[0][0] == "Healed"
    assert not healed.health.cordoned


def test_a_flapping_node_stays_out_for_repair() -> None:
    first = assess(POLICY, NodeHealth(), [FATAL], now=0.0)
    healed = assess(POLICY, first.health, [], now=100.0)
    assert healed.uncordon
    again = assess(POLICY, healed.health, [FATAL], now=200.0)  # bad again within 600 s
    assert again.cordon and again.health.repair
    assert "MarkedForRepair" in [e for e, _ in again.events]
    later = assess(POLICY, again.health, [], now=5000.0)
    assert not later.uncordon and later.health.cordoned  # an operator must bring it back


def test_an_operators_cordon_is_never_lifted() -> None:
    bad = assess(POLICY, NodeHealth(), [DEGRADED], now=0.0, operator_cordoned=True)
    assert not bad.cordon  # already cordoned by the operator
    # the row then looks cordoned by the policy too: the state remembers whose cordon it is
    healed = assess(POLICY, bad.health, [], now=1000.0, operator_cordoned=False)
    assert not healed.uncordon and "an operator cordoned it" in healed.events[0][1]


def test_a_policy_file_names_the_bad_field(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("actions: {degraded: event}\nheal_after: 2m\noverrides: {'xid:63': drain}\n")
    policy = load_policy(good)
    assert policy.heal_after == 120 and policy.action(DEGRADED) is Action.EVENT
    bad = tmp_path / "bad.yaml"
    bad.write_text("actions: {fatal: explode}\n")
    with pytest.raises(ValueError, match=r"bad.yaml: actions.fatal"):
        load_policy(bad)
    typo = tmp_path / "typo.yaml"
    typo.write_text("heal_afterr: 1m\n")
    with pytest.raises(ValueError, match="heal_afterr"):
        load_policy(typo)
