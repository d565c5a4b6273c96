"""The network-suspect rule, on made-up beacons: a rank whose own transfers are slow (its
collectives end late though it entered on time) is a network suspect; a rank that enters
late because it computes slowly is a straggler, and the ranks that waited for it are not."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest

from baige.runtime.beacon import Beacon, BeaconReader, BeaconWriter, Source, State, create_beacon
from baige.runtime.faults import Injector, parse_faults
from baige.runtime.progress import Progress
from baige.runtime.watch import NetworkSuspect, Straggler, Watch, WatchConfig

STEP = 0.1  # seconds per step
T = 0.01  # a collective's transfer time


def beacon(rank: int, n: int, t: float, busy: float, comm: float,
           marks: tuple[tuple[int, float, float], ...]) -> Beacon:  # fmt: skip
    return Beacon(rank, 0, 0, 100 + rank, State.RUNNING, Source.NONE, n - 1, n, -1, -1, 0.0,
                  0.0, t, busy, STEP, math.nan, comm, marks[-1][0] if marks else 0,
                  marks)  # fmt: skip


def run(
    watch: Watch,
    steps: int,
    *,
    netslow: float = 1.0,
    slow_compute: float = 1.0,
    transfer: float = T,
) -> list:
    """Two ranks, one collective per step. Rank 1 either transfers ``netslow`` times longer
    (exits late; rank 0 then waits for it in the next collective) or computes
    ``slow_compute`` times longer (enters late; rank 0 waits)."""
    found = []
    busy = [0.0, 0.0]
    comm = [0.0, 0.0]
    marks: list[list[tuple[int, float, float]]] = [[], []]
    start = [0.0, 0.0]  # when each rank starts computing the step
    compute = 0.05
    for n in range(1, steps + 1):
        enter = [start[0] + compute, start[1] + compute * slow_compute]
        last_in = max(enter)
        leave = [last_in + transfer, last_in + transfer * netslow]
        for r in (0, 1):
            busy[r] += compute * (slow_compute if r == 1 else 1.0)
            comm[r] += leave[r] - enter[r]
            marks[r] = [*marks[r][-3:], (n, enter[r], leave[r])]
            start[r] = leave[r]
        now = max(leave)
        beacons = {r: beacon(r, n, leave[r], busy[r], comm[r], tuple(marks[r])) for r in (0, 1)}
        found += watch.check(now, beacons)
    return found


def config() -> WatchConfig:
    return WatchConfig(straggler_window_s=0.5, straggler_min_steps=3)


def test_a_rank_with_slow_transfers_is_a_network_suspect_not_a_straggler() -> None:
    found = run(Watch(config()), 40, netslow=3.0)
    suspects = [f for f in found if isinstance(f, NetworkSuspect)]
    assert suspects and not [f for f in found if isinstance(f, Straggler)]
    assert {s.rank for s in suspects} == {1}
    first = suspects[0]
    assert first.ratio == pytest.approx(3.0, rel=0.05)
    assert first.own_s == pytest.approx(3 * T, rel=0.05) and first.busy_ratio < 1.1
    assert first.comm_per_step_s == pytest.approx(3 * T, rel=0.1)
    assert [s.count for s in suspects] == list(range(1, len(suspects) + 1))


def test_a_slow_computer_is_a_straggler_and_those_who_waited_are_not_suspects() -> None:
    found = run(Watch(config()), 40, slow_compute=3.0)
    assert {f.rank for f in found if isinstance(f, Straggler)} == {1}
    assert not [f for f in found if isinstance(f, NetworkSuspect)]


def test_a_healthy_job_and_a_job_that_times_nothing_raise_nothing() -> None:
    assert run(Watch(config()), 40) == []
    watch = Watch(config())
    plain = {r: Beacon(r, 0, 0, 1, State.RUNNING, Source.NONE, 5, 6, -1, -1, 0.0, 0.0, 1.0,
                       0.3, STEP, math.nan) for r in (0, 1)}  # fmt: skip
    assert watch.check(1.0, plain) == [] and watch.check(2.0, plain) == []


def test_tiny_differences_are_below_the_floor() -> None:
    # 0.1 ms against 0.3 ms: a ratio of 3, but noise on a LAN
    found = run(Watch(config()), 40, netslow=3.0, transfer=0.0001)
    assert not [f for f in found if isinstance(f, NetworkSuspect)]


def test_comm_times_reach_the_beacon_and_netslow_stretches_them(tmp_path: Path) -> None:
    path = create_beacon(tmp_path, 1, 0)
    reader = BeaconReader(path)
    injector = Injector(rank=1, faults=parse_faults("netslow:rank=1:factor=3").resolve(2),
                        ledger=tmp_path / "ledger", run_start=0.0)  # fmt: skip
    progress = Progress(rank=1, world_size=2, attempt=0, total_steps=None,
                        writer=BeaconWriter(path), injector=injector, stacks_file=None)  # fmt: skip
    with progress.comm():  # before the fault fired (at the first step): plain
        pass
    progress.step(0)
    with progress.comm():
        time_in = time.monotonic()
        time.sleep(0.02)
    b = reader.read()
    assert b.comm_count == 2 and len(b.comm_last) == 2
    n, enter, leave = b.comm_last[-1]
    assert n == 2 and 0 < enter <= time_in
    assert leave - enter >= 0.06 - 1e-3  # at least 3x the 20 ms (or more) it slept
    assert b.comm_total == pytest.approx(sum(x - e for _, e, x in b.comm_last))
    progress.step(1, comm_s=0.5)
    assert reader.read().comm_total == pytest.approx(b.comm_total + 0.5)
    reader.close()


def test_netslow_parses_and_needs_a_factor() -> None:
    [fault] = parse_faults("netslow:rank=1:factor=3:step=5:for=10").faults
    assert fault.describe() == "netslow:rank=1:step=5:factor=3:for=10"
    with pytest.raises(ValueError, match="netslow needs factor=X"):
        parse_faults("netslow:rank=1")


def test_a_beacon_nobody_timed_collectives_in_reads_zeros(tmp_path: Path) -> None:
    reader = BeaconReader(create_beacon(tmp_path, 0, 0))
    b = reader.read()
    assert (b.comm_total, b.comm_count, b.comm_last) == (0.0, 0, ())
    reader.close()
