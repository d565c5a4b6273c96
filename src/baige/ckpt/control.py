"""The shared-memory control record and the two decisions made from it.

Trainer and persister coordinate through one small JSON record per rank, always read and
replaced under a file lock. Keeping the decisions here as pure functions of that record
(``slot_for_save``, ``slot_to_persist``) makes the double-buffering rules testable without
processes: a save never lands on the slot being persisted, and never on the newest ready
one when another slot is free, so a crash mid-copy always leaves an intact checkpoint.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Literal

__all__ = [
    "Control",
    "ErrorRecord",
    "SlotRecord",
    "newest_ready",
    "slot_for_save",
    "slot_to_persist",
]

SlotState = Literal["empty", "writing", "ready"]
_STATES = ("empty", "writing", "ready")


@dataclass
class SlotRecord:
    """What one shared-memory slot holds. ``image_len`` bytes of safetensors image, then
    ``pkl_len`` bytes of pickled structure; the crcs are filled in by the persister."""

    state: SlotState = "empty"
    seq: int = 0
    step: int = -1
    capacity: int = 0
    image_len: int = 0
    pkl_len: int = 0
    world_size: int = 1
    timeline: str = "root"
    crc_image: int | None = None
    crc_pkl: int | None = None


@dataclass
class ErrorRecord:
    """The persister's last failure: which save, and why, and when it may retry."""

    seq: int
    step: int
    message: str
    retry_at: float


@dataclass
class Control:
    """One rank's coordination record. ``seq`` counts saves; ``persisted_seq`` is the newest
    save on disk; ``persisting`` is the slot the persister is reading, or None."""

    seq: int = 0
    slots: list[SlotRecord] = field(default_factory=lambda: [SlotRecord(), SlotRecord()])
    persisting: int | None = None
    persisted_seq: int = 0
    persisted_step: int | None = None
    error: ErrorRecord | None = None
    trainer_pid: int | None = None
    trainer_start: int | None = None
    stop: bool = False
    superseded: list[int] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, name: str) -> Control:
        """Parse a record; a field of the wrong type is a ValueError naming the field."""
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError(f"{name}: control record is not an object")
        slots_raw = raw.get("slots")
        if not isinstance(slots_raw, list) or len(slots_raw) != 2:
            raise ValueError(f"{name}: slots must be a list of 2 records")
        slots = [_slot(name, i, s) for i, s in enumerate(slots_raw)]
        err = raw.get("error")
        error = None
        if err is not None:
            if not isinstance(err, dict):
                raise ValueError(f"{name}: error must be an object")
            error = ErrorRecord(
                seq=_int(name, "error.seq", err.get("seq")),
                step=_int(name, "error.step", err.get("step")),
                message=str(err.get("message", "")),
                retry_at=float(_num(name, "error.retry_at", err.get("retry_at"))),
            )
        persisting = raw.get("persisting")
        if persisting not in (None, 0, 1):
            raise ValueError(f"{name}: persisting must be null, 0 or 1, got {persisting!r}")
        superseded = raw.get("superseded", [])
        if not isinstance(superseded, list) or not all(isinstance(s, int) for s in superseded):
            raise ValueError(f"{name}: superseded must be a list of steps")
        return cls(
            seq=_int(name, "seq", raw.get("seq")),
            slots=slots,
            persisting=persisting,
            persisted_seq=_int(name, "persisted_seq", raw.get("persisted_seq")),
            persisted_step=_opt_int(name, "persisted_step", raw.get("persisted_step")),
            error=error,
            trainer_pid=_opt_int(name, "trainer_pid", raw.get("trainer_pid")),
            trainer_start=_opt_int(name, "trainer_start", raw.get("trainer_start")),
            stop=bool(raw.get("stop", False)),
            superseded=list(superseded),
        )


def newest_ready(ctl: Control) -> int | None:
    """The slot holding the newest complete copy in memory, or None."""
    ready = [i for i, s in enumerate(ctl.slots) if s.state == "ready"]
    return max(ready, key=lambda i: ctl.slots[i].seq) if ready else None


def _pending(ctl: Control, i: int) -> bool:
    """Slot ``i`` holds a save not yet on disk."""
    rec = ctl.slots[i]
    return rec.state == "ready" and rec.seq > ctl.persisted_seq


def _failed(ctl: Control, i: int) -> bool:
    return ctl.error is not None and ctl.error.seq == ctl.slots[i].seq


def slot_for_save(ctl: Control) -> int | None:
    """Where the next save goes, or None when it must wait for the persister.

    Never the slot being persisted; never the newest ready slot (a crash mid-copy must leave
    it intact); never a slot whose save is still waiting to be persisted, unless persisting
    it failed. So, while the disk works, every save of every rank reaches the disk, and
    ranks cannot end up with different steps on disk; the price is that a save waits when
    saves come faster than the persister writes them.
    """
    newest = newest_ready(ctl)
    for i in range(len(ctl.slots)):
        if i in (ctl.persisting, newest):
            continue
        if _pending(ctl, i) and not _failed(ctl, i):
            return None
        return i
    return None


def slot_to_persist(ctl: Control, now: float) -> int | None:
    """The slot the persister should write next: the oldest save not yet on disk (saves
    reach the disk in order), except that a save whose persist failed gives way to a newer
    one, and is retried only at its ``retry_at`` when it is the only one left."""
    pending = sorted(
        (i for i in range(len(ctl.slots)) if _pending(ctl, i)), key=lambda i: ctl.slots[i].seq
    )
    ready = [i for i in pending if not _failed(ctl, i)]
    if ready:
        return ready[0]
    if pending and ctl.error is not None and now >= ctl.error.retry_at:
        return pending[-1]
    return None


def _slot(name: str, i: int, raw: object) -> SlotRecord:
    if not isinstance(raw, dict):
        raise ValueError(f"{name}: slots[{i}] is not an object")
    state = raw.get("state")
    if state not in _STATES:
        raise ValueError(f"{name}: slots[{i}].state must be one of {_STATES}, got {state!r}")
    where = f"slots[{i}]"
    return SlotRecord(
        state=state,
        seq=_int(name, f"{where}.seq", raw.get("seq")),
        step=_int(name, f"{where}.step", raw.get("step")),
        capacity=_int(name, f"{where}.capacity", raw.get("capacity")),
        image_len=_int(name, f"{where}.image_len", raw.get("image_len")),
        pkl_len=_int(name, f"{where}.pkl_len", raw.get("pkl_len")),
        world_size=_int(name, f"{where}.world_size", raw.get("world_size")),
        timeline=str(raw.get("timeline", "root")),
        crc_image=_opt_int(name, f"{where}.crc_image", raw.get("crc_image")),
        crc_pkl=_opt_int(name, f"{where}.crc_pkl", raw.get("crc_pkl")),
    )


def _int(name: str, fieldname: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name}: {fieldname} must be an integer, got {value!r}")
    return value


def _opt_int(name: str, fieldname: str, value: object) -> int | None:
    return None if value is None else _int(name, fieldname, value)


def _num(name: str, fieldname: str, value: object) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"{name}: {fieldname} must be a number, got {value!r}")
    return float(value)
