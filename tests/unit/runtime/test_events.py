"""The event log: one JSON object per line, readable even with NaN values, a broken sink or a
torn last line."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from baige.runtime.events import EventLog, read_events


def test_lines_carry_time_event_run_and_node(tmp_path: Path) -> None:
    seen: list[Mapping[str, Any]] = []

    def broken(_: Mapping[str, Any]) -> None:
        raise RuntimeError("sink down")

    log = EventLog(tmp_path / "run" / "events.jsonl", run_id="r1", node="n1")
    log.sinks += [broken, seen.append]
    log.emit("fault_detected", kind="crash", ranks=[1], detect_s=math.nan, extra={"x": math.inf})
    log.emit("restart", attempt=1)
    log.close()
    lines = (tmp_path / "run" / "events.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    assert first["event"] == "fault_detected" and first["run_id"] == "r1" and first["node"] == "n1"
    assert first["detect_s"] is None and first["extra"] == {"x": None}
    assert first["ts"] > 1.7e9
    assert [e["event"] for e in seen] == ["fault_detected", "restart"]
    with (tmp_path / "run" / "events.jsonl").open("a") as out:
        out.write('{"event": "tor')
    assert [e["event"] for e in read_events(tmp_path / "run" / "events.jsonl")] == [
        "fault_detected",
        "restart",
    ]


def test_unknown_events_are_refused(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "e.jsonl", run_id="r", node="n")
    with pytest.raises(ValueError, match="unknown event 'oops'"):
        log.emit("oops")
    log.close()
