"""The trainer's side: what step() records, what it costs, and the stack dump it arms."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from baige.runtime.beacon import BeaconReader, BeaconWriter, Source, State, create_beacon
from baige.runtime.progress import Progress


def make(tmp_path: Path, total: int | None = None) -> tuple[Progress, BeaconReader]:
    path = create_beacon(tmp_path, 0, attempt=0)
    progress = Progress(
        rank=0,
        world_size=1,
        attempt=0,
        total_steps=total,
        writer=BeaconWriter(path),
        injector=None,
        stacks_file=None,
    )
    return progress, BeaconReader(path)


def test_steps_restores_and_finish_reach_the_beacon(tmp_path: Path) -> None:
    progress, reader = make(tmp_path)
    assert progress.watched
    attached = reader.read()
    assert attached.state == State.ATTACHED and attached.pid == os.getpid()
    progress.restored(41, "memory")
    for step in (42, 43, 44):
        end = time.process_time() + 0.02
        while time.process_time() < end:
            pass
        progress.step(step, loss=0.5)
    b = reader.read()
    assert (b.state, b.step, b.n_steps, b.loss) == (State.RUNNING, 44, 3, 0.5)
    assert (b.restored_step, b.source) == (41, Source.MEMORY)
    assert b.busy_total >= 0.06 and b.t_last >= b.t_first > b.t_attach > 0
    progress.step(45, busy_s=1.0)
    assert reader.read().busy_total >= 1.06
    assert not reader.read().finished
    progress.finish()
    assert reader.read().finished


def test_total_steps_means_the_last_step_finishes(tmp_path: Path) -> None:
    progress, reader = make(tmp_path, total=3)
    with pytest.raises(RuntimeError), progress:
        progress.step(0)
        raise RuntimeError("the loop failed")
    assert not reader.read().finished  # an exception is not a finish
    progress.step(1)
    progress.step(2)
    assert reader.read().finished
    with pytest.raises(ValueError, match="total_steps must be >= 0"):
        progress.set_total_steps(-1)


def test_losses_that_are_not_floats(tmp_path: Path) -> None:
    progress, reader = make(tmp_path)

    class CpuScalar:
        device = type("D", (), {"type": "cpu"})()

        def item(self) -> float:
            return 2.5

    class DeviceScalar(CpuScalar):
        device = type("D", (), {"type": "cuda"})()

        def item(self) -> float:
            raise AssertionError("a device tensor must not be synchronised")

    progress.step(0, loss=CpuScalar())
    assert reader.read().loss == 2.5
    progress.step(1, loss=DeviceScalar())
    assert reader.read().loss != reader.read().loss  # NaN


TRAINER = textwrap.dedent(
    """
    import json, sys, time
    from baige.runtime import attach
    progress = attach(total_steps=None)
    assert attach() is progress
    n = int(sys.argv[1])
    t0 = time.perf_counter()
    for step in range(n):
        progress.step(step, loss=1.0)
    per_step = (time.perf_counter() - t0) / n
    print(json.dumps({"watched": progress.watched, "per_step": per_step}), flush=True)
    time.sleep(float(sys.argv[2]))
    """
)


def test_under_baige_run_a_step_costs_microseconds_and_stacks_can_be_dumped(
    tmp_path: Path,
) -> None:
    beacons, run_dir = tmp_path / "beacons", tmp_path / "run"
    create_beacon(beacons, 1, attempt=2)
    env = {
        **os.environ,
        "RANK": "1",
        "WORLD_SIZE": "2",
        "TORCHELASTIC_RESTART_COUNT": "2",
        "BAIGE_BEACON_DIR": str(beacons),
        "BAIGE_RUN_DIR": str(run_dir),
    }
    env.pop("BAIGE_FAULT", None)
    proc = subprocess.Popen(
        [sys.executable, "-c", TRAINER, "20000", "30"], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        report = json.loads(proc.stdout.readline())
        assert report["watched"] is True
        assert report["per_step"] < 100e-6, report  # typically 3-5 µs
        b = BeaconReader(beacons / "rank-00001.beacon").read()
        assert (b.step, b.n_steps, b.pid) == (19999, 20000, proc.pid)
        stacks = run_dir / "stacks" / "attempt-002" / "rank-00001.txt"
        os.kill(proc.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while "<string>" not in stacks.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        text = stacks.read_text()
        assert "Current thread" in text and "<string>" in text
        assert proc.poll() is None  # the dump does not end the process
    finally:
        proc.kill()
        proc.wait()


def test_outside_baige_run_nothing_is_watched() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BAIGE_")}
    out = subprocess.run(
        [sys.executable, "-c", TRAINER, "1000", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(out.stdout)["watched"] is False
