"""The double-buffering rules, as pure functions of the control record (table-driven)."""

from __future__ import annotations

import json

import pytest

from baige.ckpt.control import Control, ErrorRecord, SlotRecord, slot_for_save, slot_to_persist


def ctl(a: tuple[str, int], b: tuple[str, int], *, persisting=None, persisted=0, error=None):
    slots = [SlotRecord(state=s, seq=q, step=q * 10) for s, q in (a, b)]
    return Control(seq=max(a[1], b[1]), slots=slots, persisting=persisting,
                   persisted_seq=persisted, error=error)  # fmt: skip


def failed(seq: int, retry_at: float = 100.0) -> ErrorRecord:
    return ErrorRecord(seq=seq, step=seq * 10, message="ENOSPC", retry_at=retry_at)


SAVE = [
    # (control record, slot the next save uses; None = wait for the persister)
    (ctl(("empty", 0), ("empty", 0)), 0),
    (ctl(("ready", 1), ("empty", 0), persisted=1), 1),
    (ctl(("ready", 1), ("empty", 0), persisting=0), 1),
    (ctl(("ready", 1), ("ready", 2), persisted=2), 0),  # never the newest
    (ctl(("ready", 3), ("ready", 2), persisted=3), 1),
    (ctl(("ready", 1), ("ready", 2), persisting=0, persisted=0), None),  # wait
    (ctl(("ready", 1), ("ready", 2), persisted=0), None),  # step 10 not on disk yet: wait
    (ctl(("ready", 1), ("ready", 2), persisted=0, error=failed(1)), 0),  # failed: give way
    (ctl(("writing", 2), ("ready", 1), persisted=1), 0),  # a torn slot is reused
    (ctl(("ready", 2), ("ready", 1), persisting=1, persisted=0), None),
    (ctl(("ready", 2), ("ready", 1), persisting=0, persisted=1), 1),
]


@pytest.mark.parametrize(("record", "expected"), SAVE)
def test_slot_for_save(record: Control, expected: int | None) -> None:
    assert slot_for_save(record) == expected


PERSIST = [
    (ctl(("empty", 0), ("empty", 0)), 0.0, None),
    (ctl(("ready", 1), ("empty", 0)), 0.0, 0),
    (ctl(("ready", 1), ("empty", 0), persisted=1), 0.0, None),
    (ctl(("ready", 1), ("ready", 2)), 0.0, 0),  # oldest first: every save reaches the disk
    (ctl(("ready", 3), ("ready", 2), persisted=2), 0.0, 0),
    (ctl(("writing", 3), ("ready", 2), persisted=1), 0.0, 1),
    (ctl(("ready", 1), ("ready", 2), error=failed(1)), 0.0, 1),  # failed one gives way
    (ctl(("ready", 1), ("empty", 0), error=failed(1, retry_at=5.0)), 1.0, None),  # backoff
    (ctl(("ready", 1), ("empty", 0), error=failed(1, retry_at=5.0)), 6.0, 0),  # retry
]


@pytest.mark.parametrize(("record", "now", "expected"), PERSIST)
def test_slot_to_persist(record: Control, now: float, expected: int | None) -> None:
    assert slot_to_persist(record, now) == expected


def test_control_json_round_trip() -> None:
    record = ctl(("ready", 4), ("writing", 5), persisting=0, persisted=3, error=failed(4))
    record.superseded = [7]
    assert Control.from_json(record.to_json(), "c") == record


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(seq="1"), "c: seq must be an integer"),
        (lambda d: d.update(slots=[{}]), "slots must be a list of 2"),
        (lambda d: d["slots"][1].update(state="done"), "slots[1].state must be one of"),
        (lambda d: d["slots"][0].update(step=None), "slots[0].step must be an integer"),
        (lambda d: d.update(persisting=2), "persisting must be null, 0 or 1"),
        (lambda d: d.update(error={"seq": 1, "step": 1, "retry_at": "x"}), "error.retry_at"),
    ],
)
def test_bad_control_records_name_the_field(mutate, message: str) -> None:
    raw = json.loads(Control().to_json())
    mutate(raw)
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Control.from_json(json.dumps(raw), "c")
