"""BAIGE_FAULT parsing (table-driven), random schedules, the fired-once ledger, and firing:
kill and hang in real child processes, slow by the CPU time it burns."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from baige.runtime.faults import (
    Fault,
    FaultSpecError,
    Injector,
    RandomFaults,
    claim,
    fired_faults,
    parse_faults,
)

GOOD = [
    ("kill:rank=1:step=50", [Fault(0, "kill", 1, step=50)]),
    ("hang:rank=0:step=80", [Fault(0, "hang", 0, step=80)]),
    ("hang:rank=0:at=30:for=5", [Fault(0, "hang", 0, at=30.0, duration=5.0)]),
    ("slow:rank=2:factor=3", [Fault(0, "slow", 2, factor=3.0)]),
    ("slow:rank=0:factor=2.5:step=10:for=20", [Fault(0, "slow", 0, 10, None, 2.5, 20.0)]),
    (
        " KILL:rank=1:step=5 , hang:rank=0:at=1.5 ",
        [Fault(0, "kill", 1, step=5), Fault(1, "hang", 0, at=1.5)],
    ),
]


@pytest.mark.parametrize(("text", "faults"), GOOD)
def test_parses(text: str, faults: list[Fault]) -> None:
    plan = parse_faults(text)
    assert list(plan.faults) == faults
    assert plan.random is None
    assert plan.resolve(4) == tuple(faults)


def test_empty_is_no_fault() -> None:
    assert not parse_faults(None)
    assert not parse_faults("  ")


BAD = [
    ("kil:rank=1:step=5", "unknown kind 'kil'; expected one of kill, hang, slow, netslow, random"),
    ("kill:rank=1", "kill needs step=N"),
    ("kill:step=5", "kill needs rank=N"),
    ("kill:rank=x:step=5", "rank='x' is not an integer"),
    ("kill:rank=1:step=5:factor=2", "kill takes at, rank, step, not 'factor'"),
    ("kill:rank=1:step", "'step' is not key=value"),
    ("kill:rank=1:step=5:step=6", "step given twice"),
    ("kill:rank=-1:step=5", "rank must be >= 0"),
    ("kill:rank=1:step=5:at=3", "give step= or at=, not both"),
    ("slow:rank=1", "slow needs factor=X"),
    ("slow:rank=1:factor=1", "factor must be > 1"),
    ("slow:rank=1:factor=nan", "is not a finite number"),
    ("hang:rank=0:at=-1", "at must be >= 0 seconds"),
    ("random", "random needs mtbf=SECONDS"),
    ("random:mtbf=0", "mtbf must be > 0"),
    ("random:mtbf=60:kinds=kill+boom", "kinds='kill+boom'"),
    ("random:mtbf=6,random:mtbf=7", "only one random fault source"),
    ("kill:rank=1:step=5,,", "empty fault between commas"),
]


@pytest.mark.parametrize(("text", "why"), BAD)
def test_bad_strings_say_what_and_why(text: str, why: str) -> None:
    with pytest.raises(FaultSpecError) as err:
        parse_faults(text)
    message = str(err.value)
    assert why in message
    assert f"BAIGE_FAULT={text.strip()!r}" in message


def test_rank_beyond_the_job_is_refused() -> None:
    plan = parse_faults("kill:rank=3:step=5")
    with pytest.raises(FaultSpecError, match=r"names rank 3 but the job has 2 ranks \(0..1\)"):
        plan.resolve(2)
    assert plan.resolve(2, strict=False) == ()  # an elastic job that shrank below rank 3


def test_random_schedule_is_the_same_everywhere_and_follows_its_parameters() -> None:
    plan = parse_faults("kill:rank=0:step=1,random:mtbf=60:kinds=kill+slow:seed=7:count=200")
    assert plan.random == RandomFaults(60.0, ("kill", "slow"), 7, 3.0, 30.0, 0.0, 200)
    one, two = plan.resolve(4), plan.resolve(4)
    assert one == two
    timed = one[1:]
    assert len(timed) == 200
    assert [f.index for f in timed] == list(range(1, 201))
    assert {f.kind for f in timed} == {"kill", "slow"}
    assert {f.rank for f in timed} == {0, 1, 2, 3}
    times = [f.at for f in timed]
    assert times == sorted(times)
    gaps = [b - a for a, b in zip([0.0, *times[:-1]], times, strict=True)]
    assert 45 < sum(gaps) / len(gaps) < 75  # exponential with mean 60 s
    assert all(f.duration == 30.0 and f.factor == 3.0 for f in timed if f.kind == "slow")
    assert parse_faults("random:mtbf=60:seed=8:count=20").resolve(4) != parse_faults(
        "random:mtbf=60:seed=7:count=20"
    ).resolve(4)


def test_a_fault_is_claimed_once(tmp_path: Path) -> None:
    fault = Fault(3, "kill", 1, step=5)
    assert claim(tmp_path, fault, 5, 100.0)
    assert not claim(tmp_path, fault, 6, 101.0)
    record = fired_faults(tmp_path)[3]
    assert record["step"] == 5 and record["ts"] == 100.0 and record["fault"] == fault.describe()


def test_slow_spins_factor_minus_one_times_the_step() -> None:
    injector = Injector(rank=0, faults=[Fault(0, "slow", 0, factor=3.0)], ledger=None, run_start=0)
    t0 = time.process_time()
    spun = injector.check(0, 0.05)
    burnt = time.process_time() - t0
    assert spun == pytest.approx(0.1)
    assert burnt >= 0.1
    other = Injector(rank=1, faults=[Fault(0, "slow", 0, factor=3.0)], ledger=None, run_start=0)
    assert other.idle and other.check(0, 0.05) == 0.0


def test_slow_with_a_duration_ends_and_survives_a_restart(tmp_path: Path) -> None:
    now = [1000.0]
    fault = Fault(0, "slow", 0, step=2, factor=2.0, duration=10.0)
    first = Injector(0, [fault], tmp_path, run_start=1000.0, clock=lambda: now[0])
    assert first.check(1, 0.001) == 0.0
    assert first.check(2, 0.001) > 0
    now[0] = 1005.0  # a restarted trainer: the ledger says the slowdown began at 1000
    second = Injector(0, [fault], tmp_path, run_start=1000.0, clock=lambda: now[0])
    assert second.check(0, 0.001) > 0
    now[0] = 1011.0
    assert second.check(1, 0.001) == 0.0
    assert Injector(0, [fault], tmp_path, run_start=1000.0, clock=lambda: now[0]).idle


def test_time_triggered_hang_with_a_duration_returns() -> None:
    now = [50.0]
    fault = Fault(0, "hang", 0, at=5.0, duration=0.2)
    injector = Injector(0, [fault], None, run_start=40.0, clock=lambda: now[0])
    t0 = time.monotonic()
    injector.check(0, 0.0)
    assert time.monotonic() - t0 >= 0.2
    assert injector.idle


TRAINER = textwrap.dedent(
    """
    import sys
    from baige.runtime import attach
    progress = attach()
    for step in range(10):
        progress.step(step)
        print(step, flush=True)
    """
)


def test_kill_fires_in_the_process_once_per_run(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "BAIGE_FAULT": "kill:rank=0:step=4",
        "BAIGE_RUN_DIR": str(tmp_path),
        "RANK": "0",
        "WORLD_SIZE": "1",
    }
    env.pop("BAIGE_BEACON_DIR", None)
    cmd = [sys.executable, "-c", TRAINER]
    first = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=60)
    assert first.returncode == -9
    assert first.stdout.split() == ["0", "1", "2", "3"]
    record = json.loads((tmp_path / "faults" / "fired-00000.json").read_text())
    assert record["kind"] == "kill" and record["step"] == 4
    again = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    assert again.stdout.split() == [str(i) for i in range(10)]


def test_a_bad_fault_string_stops_the_trainer_with_the_reason() -> None:
    env = {**os.environ, "BAIGE_FAULT": "kill:rank=1:step=x", "RANK": "0", "WORLD_SIZE": "2"}
    out = subprocess.run(
        [sys.executable, "-c", TRAINER],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert "FaultSpecError: BAIGE_FAULT='kill:rank=1:step=x'" in out.stderr
    assert "step='x' is not an integer" in out.stderr
