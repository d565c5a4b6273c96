"""Beacons: what the trainer writes is what the agent reads, never half of it, across real
processes; and a file that is not a beacon is refused by name."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from baige.runtime.beacon import (
    BEACON_SIZE,
    BeaconError,
    BeaconReader,
    BeaconWriter,
    Source,
    State,
    beacon_path,
    create_beacon,
)


def test_round_trip(tmp_path: Path) -> None:
    path = create_beacon(tmp_path, 3, attempt=2)
    assert path == beacon_path(tmp_path, 3)
    reader = BeaconReader(path)
    fresh = reader.read()
    assert (fresh.rank, fresh.attempt, fresh.state, fresh.step, fresh.n_steps) == (
        3,
        2,
        State.CREATED,
        -1,
        0,
    )
    assert not fresh.attached and math.isnan(fresh.loss)
    writer = BeaconWriter(path, pid=1234)
    writer.step, writer.n_steps, writer.busy_total, writer.loss = 41, 7, 0.25, 1.5
    writer.state, writer.source, writer.restored_step, writer.total_steps = (
        State.RUNNING,
        Source.MEMORY,
        34,
        100,
    )
    writer.t_last = 12.5
    writer.publish()
    seen = reader.read()
    assert (seen.pid, seen.step, seen.n_steps, seen.busy_total, seen.loss) == (
        1234,
        41,
        7,
        0.25,
        1.5,
    )
    assert (seen.source, seen.restored_step, seen.t_last) == (Source.MEMORY, 34, 12.5)
    assert seen.attached and not seen.finished
    writer.step = 99
    writer.publish()
    assert reader.read().finished  # the last of total_steps
    writer.close()
    reader.close()


def test_remaking_a_beacon_starts_it_over(tmp_path: Path) -> None:
    writer = BeaconWriter(create_beacon(tmp_path, 0, attempt=0))
    writer.step, writer.n_steps = 5, 5
    writer.publish()
    reader = BeaconReader(create_beacon(tmp_path, 0, attempt=1))
    again = reader.read()
    assert (again.attempt, again.step, again.n_steps, again.state) == (1, -1, 0, State.CREATED)


def test_not_a_beacon(tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.write_bytes(b"x" * BEACON_SIZE)
    with pytest.raises(BeaconError, match="is not a Baige beacon"):
        BeaconReader(other)
    short = tmp_path / "short"
    short.write_bytes(b"BAIGEBCN")
    with pytest.raises(BeaconError, match="too short"):
        BeaconReader(short)


WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from baige.runtime.beacon import BeaconWriter
    w = BeaconWriter(Path(sys.argv[1]))
    end = time.monotonic() + float(sys.argv[2])
    i = 0
    while time.monotonic() < end:
        i += 1
        w.step = i; w.n_steps = i; w.busy_total = float(i); w.loss = -float(i); w.t_last = float(i)
        w.publish()
    print(i)
    """
)


def test_readings_are_never_torn_while_another_process_writes(tmp_path: Path) -> None:
    path = create_beacon(tmp_path, 0, attempt=0)
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), "1.5"], stdout=subprocess.PIPE, text=True
    )
    reader = BeaconReader(path)
    reads, last = 0, -1
    deadline = time.monotonic() + 30
    while writer.poll() is None and time.monotonic() < deadline:
        b = reader.read()
        assert b.n_steps == b.step == b.busy_total == -b.loss == b.t_last or b.step == -1
        assert b.step >= last
        last = b.step
        reads += 1
    out, _ = writer.communicate(timeout=30)
    assert writer.returncode == 0
    assert reads > 100 and last > 100
    assert reader.read().step == int(out)
