"""Device-health sources: the declared fake (inject, clear, a broken file), Ascend's
npu-smi output, and a vendor without a source saying so."""

from __future__ import annotations

from pathlib import Path

from baige.hw.health import (
    Condition,
    FakeHealth,
    Kind,
    Severity,
    UnknownHealth,
    health_source,
    parse_npu_health,
    xid_condition,
)


def test_the_fake_source_reports_what_was_injected(tmp_path: Path) -> None:
    fake = FakeHealth(tmp_path / "health.json")
    assert fake.check() == []
    fake.inject(xid_condition(2, 79))
    fake.inject(Condition(Kind.ECC_UNCORRECTABLE, Severity.FATAL, 5, "3 uncorrectable"))
    found = fake.check()
    assert [(c.kind, c.device) for c in found] == [(Kind.XID, 2), (Kind.ECC_UNCORRECTABLE, 5)]
    assert found[0].severity is Severity.FATAL and "fallen off the bus" in found[0].reason
    fake.clear(device=2)
    assert [c.device for c in fake.check()] == [5]
    fake.clear()
    assert fake.check() == []


def test_a_slowed_fake_node_keeps_its_slowness_through_injects_until_cleared(
    tmp_path: Path,
) -> None:
    fake = FakeHealth(tmp_path / "health.json")
    assert fake.slow_compute() == 1.0
    fake.slow(3)
    assert fake.slow_compute() == 3.0 and fake.check() == []  # slow, but no condition
    fake.inject(xid_condition(1, 13))
    assert fake.slow_compute() == 3.0
    fake.clear(device=1)
    assert fake.slow_compute() == 3.0 and fake.check() == []
    fake.clear()
    assert fake.slow_compute() == 1.0
    for bad in (0.5, 1e6):
        try:
            fake.slow(bad)
        except ValueError as err:
            assert "1 to 1000" in str(err)
        else:
            raise AssertionError(f"slow({bad}) was accepted")


def test_a_broken_fake_file_is_unknown_not_healthy(tmp_path: Path) -> None:
    path = tmp_path / "health.json"
    path.write_text("{not json")
    (condition,) = FakeHealth(path).check()
    assert condition.severity is Severity.UNKNOWN and "health.json" in condition.reason
    path.write_text('{"conditions": [{"kind": "no-such-kind"}]}')
    (condition,) = FakeHealth(path).check()
    assert condition.kind is Kind.HEALTH_UNKNOWN and "no-such-kind" in condition.reason
    path.write_text("[1, 2]")  # JSON, but not the object the file holds
    (condition,) = FakeHealth(path).check()
    assert condition.kind is Kind.HEALTH_UNKNOWN and "JSON object" in condition.reason
    assert FakeHealth(path).slow_compute() == 1.0


def test_npu_smi_health() -> None:
    ok = (
        "        Health Status                  : OK\n        Error Code                     : NA\n"
    )
    assert parse_npu_health(0, ok) == []
    alarm = "Health Status : Alarm\nError Code : 80E18005\n"
    (condition,) = parse_npu_health(3, alarm)
    assert condition.severity is Severity.FATAL and condition.code == 0x80E18005
    warning = "Health Status : Warning\nError Code : NA\n"
    assert parse_npu_health(1, warning)[0].severity is Severity.DEGRADED
    assert parse_npu_health(1, "garbage")[0].kind is Kind.HEALTH_UNKNOWN


def test_a_vendor_without_a_source_says_unknown(tmp_path: Path) -> None:
    source = health_source("kunlunxin", 8, None)
    assert isinstance(source, UnknownHealth)
    assert source.check()[0].severity is Severity.UNKNOWN
    # without NVML (no nvidia-ml-py or no driver here) NVIDIA cards are unknown too
    assert health_source("nvidia", 8, None).check()[0].kind is Kind.HEALTH_UNKNOWN
    assert isinstance(health_source("nvidia", 8, tmp_path / "f.json"), FakeHealth)
