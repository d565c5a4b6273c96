"""Training progress in closed form: progress, checkpoints and finish times agree."""

from __future__ import annotations

import pytest

from baige.sim.progress import Checkpointing, Segment

CKPT = Checkpointing(interval=600.0, stall=30.0)


@pytest.mark.parametrize(
    ("run", "progress", "saved"),
    [
        (0.0, 0.0, 0.0),
        (-5.0, 0.0, 0.0),
        (300.0, 300.0, 0.0),
        (600.0, 600.0, 0.0),  # the stall has begun; its checkpoint is not durable yet
        (615.0, 600.0, 0.0),
        (630.0, 600.0, 600.0),
        (1230.0, 1200.0, 600.0),
        (1260.0, 1200.0, 1200.0),
        (1300.0, 1240.0, 1200.0),
    ],
)
def test_progress_and_saved(run: float, progress: float, saved: float) -> None:
    assert CKPT.progress_time(run) == pytest.approx(progress)
    assert CKPT.saved_time(run) == pytest.approx(saved)


@pytest.mark.parametrize("progress", [1.0, 599.0, 600.0, 601.0, 1200.0, 12345.6, 86400.0])
def test_run_for_inverts_progress(progress: float) -> None:
    run = CKPT.run_for(progress)
    assert CKPT.progress_time(run) == pytest.approx(progress)
    # and not a moment earlier: no stall is taken after the last piece of work
    assert CKPT.progress_time(run - 1.0) < progress


def test_never_checkpointing_saves_nothing() -> None:
    never = Checkpointing(0.0, 30.0)
    assert never.progress_time(1000.0) == 1000.0
    assert never.saved_time(1000.0) == 0.0
    assert never.run_for(1000.0) == 1000.0


def test_segment_finishes_its_work() -> None:
    segment = Segment(start=100.0, overhead=50.0, replicas=4, done=1000.0, saved=1000.0)
    finish = segment.finish(50_000.0, CKPT)
    assert segment.done_at(finish, CKPT) == pytest.approx(50_000.0)
    assert segment.done_at(finish - 1, CKPT) < 50_000.0
    # a failure loses exactly what the last durable checkpoint does not hold
    t = segment.progress_from + 1300.0
    lost = segment.done_at(t, CKPT) - segment.saved_at(t, CKPT)
    assert lost == pytest.approx(4 * 40.0)
    assert segment.last_save(t, CKPT) == pytest.approx(segment.progress_from + 1260.0)
