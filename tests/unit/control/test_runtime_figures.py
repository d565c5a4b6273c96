"""Folding `baige run` events into a job's figures: every replica's agent reports the same
fault, and a replica restarted by the control plane starts counting attempts over."""

from __future__ import annotations

from typing import Any

from baige.control.runtime_figures import fold_event, runtime_view


def fold(figures: dict[str, Any], node: str, *events: dict[str, Any]) -> None:
    for event in events:
        fold_event(figures, event["event"], event, node, float(event.get("ts", 0.0)))


def one_fault(kind: str = "crash", lost: int = 3) -> list[dict[str, Any]]:
    return [
        {"event": "fault_detected", "kind": kind, "attempt": 0, "detect_s": 0.5},
        {"event": "restart", "attempt": 1},
        {"event": "restored", "attempt": 1, "lost_steps": lost, "recovery_s": 4.0},
    ]


def test_a_fault_every_replica_saw_counts_once() -> None:
    figures: dict[str, Any] = {}
    for node, lost in (("a", 3), ("b", 5)):
        fold(figures, node, {"event": "run_started", "ts": 10.0}, *one_fault(lost=lost))
    view = runtime_view(figures)
    assert view is not None
    assert view.faults == {"crash": 1} and view.restarts == 1
    assert view.lost_steps == 5  # the same steps, lost on every replica: the most any lost


def test_a_replica_restarted_by_the_control_plane_counts_its_faults_again() -> None:
    figures: dict[str, Any] = {}
    for run in range(2):
        for node in ("a", "b"):
            fold(figures, node, {"event": "run_started", "ts": 10.0 + run}, *one_fault("hang"))
    view = runtime_view(figures)
    assert view is not None
    assert view.faults == {"hang": 2} and view.restarts == 2 and view.lost_steps == 6


def test_ettr_is_steps_times_step_time_over_wall_time() -> None:
    figures: dict[str, Any] = {}
    fold(
        figures,
        "a",
        {"event": "run_started", "ts": 100.0},
        {"event": "progress", "ts": 150.0, "step": 99, "median_step_s": 0.4},
        {"event": "run_finished", "ts": 150.0, "state": "succeeded", "last_step": 99},
    )
    view = runtime_view(figures, now=1e9)  # a finished run ends at its finish, not now
    assert view is not None and view.ettr == 0.8 and view.state == "succeeded"
    assert view.last_step == 99


def test_junk_fields_are_ignored_not_fatal() -> None:
    figures: dict[str, Any] = {}
    fold(
        figures,
        "a",
        {"event": "restored", "attempt": "x", "lost_steps": "many", "recovery_s": float("nan")},
        {"event": "progress", "step": None, "steps_per_s": True, "loss": "low"},
    )
    view = runtime_view(figures)
    assert view is not None
    assert view.lost_steps == 0 and view.max_recovery_s is None and view.steps_per_s is None
    assert view.loss is None and view.last_step == -1


def test_a_spare_standing_by_to_the_end_does_not_say_how_training_went() -> None:
    figures: dict[str, Any] = {}
    fold(figures, "a", {"event": "run_finished", "ts": 100.0, "state": "succeeded"})
    fold(figures, "spare", {"event": "run_finished", "ts": 101.0, "state": "released"})
    fold(figures, "late", {"event": "run_finished", "ts": 102.0, "state": "error"})
    view = runtime_view(figures)
    assert view is not None and view.state == "succeeded"
