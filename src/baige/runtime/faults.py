"""Fault injection, so operators can rehearse failures and tests can cause them on purpose.

``BAIGE_FAULT`` names faults, comma-separated::

    kill:rank=1:step=50            SIGKILL rank 1 when it reports step 50
    hang:rank=0:step=80            rank 0 stops inside step 80 (for=SECONDS: a stall that ends)
    slow:rank=2:factor=3           rank 2 computes 3x slower (from step=/at=, for for= seconds)
    netslow:rank=1:factor=3        rank 1's collectives (timed by ``Progress.comm()``) take 3x
                                   as long: its network is slow, its compute is not
    kill:rank=1:at=60              time triggers: seconds after the run started
    random:mtbf=60                 faults at exponential intervals (mean 60 s) on random ranks;
                                   kinds=kill+hang+slow, seed=, factor=, for=, start=, count=

Faults fire inside ``Progress.step`` on the rank they name, so they happen where real ones do:
in the training process, between steps. Each fires once per run, not once per attempt: the
rank that fires one first claims it in a ledger under the run directory (an exclusively
created file), and restarted trainers read the ledger, so a restart does not replay the fault
that caused it. A slow rank stays slow across restarts until its ``for`` runs out, as a
degraded machine would.

Kept free of torch so that validating ``BAIGE_FAULT`` costs nothing.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import signal
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

__all__ = [
    "KINDS",
    "Fault",
    "FaultPlan",
    "FaultSpecError",
    "Injector",
    "RandomFaults",
    "claim",
    "describe_all",
    "fired_faults",
    "hang_forever",
    "ledger_dir",
    "parse_faults",
]

Kind = Literal["kill", "hang", "slow", "netslow"]
KINDS: tuple[Kind, ...] = ("kill", "hang", "slow")  # what random faults choose from
_ALLOWED: dict[str, frozenset[str]] = {
    "kill": frozenset({"rank", "step", "at"}),
    "hang": frozenset({"rank", "step", "at", "for"}),
    "slow": frozenset({"rank", "step", "at", "factor", "for"}),
    "netslow": frozenset({"rank", "step", "at", "factor", "for"}),
    "random": frozenset({"mtbf", "kinds", "seed", "factor", "for", "start", "count"}),
}
_MAX_RANDOM = 10_000
_HORIZON_S = 30 * 86400.0


class FaultSpecError(ValueError):
    """A ``BAIGE_FAULT`` string that does not parse; the message quotes it and says why."""


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault, triggered by a step (``step``) or a time after the run started (``at``)."""

    index: int
    kind: Kind
    rank: int
    step: int | None = None
    at: float | None = None
    factor: float = 1.0
    duration: float | None = None

    def describe(self) -> str:
        parts = [self.kind, f"rank={self.rank}"]
        if self.step is not None:
            parts.append(f"step={self.step}")
        if self.at is not None:
            parts.append(f"at={self.at:g}")
        if self.kind in ("slow", "netslow"):
            parts.append(f"factor={self.factor:g}")
        if self.duration is not None:
            parts.append(f"for={self.duration:g}")
        return ":".join(parts)


@dataclass(frozen=True, slots=True)
class RandomFaults:
    """``random:mtbf=…``: expanded into timed faults by ``FaultPlan.resolve``, the same way
    in every process (seeded), so every rank agrees on the schedule."""

    mtbf: float
    kinds: tuple[Kind, ...] = KINDS
    seed: int = 0
    factor: float = 3.0
    duration: float = 30.0
    start: float = 0.0
    count: int | None = None

    def expand(self, world_size: int, first_index: int) -> list[Fault]:
        rng = random.Random(self.seed)
        out: list[Fault] = []
        t = self.start
        limit = _MAX_RANDOM if self.count is None else min(self.count, _MAX_RANDOM)
        while len(out) < limit:
            t += rng.expovariate(1.0 / self.mtbf)
            if t > _HORIZON_S:
                break
            kind = rng.choice(self.kinds)
            out.append(
                Fault(
                    index=first_index + len(out),
                    kind=kind,
                    rank=rng.randrange(world_size),
                    at=round(t, 3),
                    factor=self.factor if kind == "slow" else 1.0,
                    duration=self.duration if kind == "slow" else None,
                )
            )
        return out


@dataclass(frozen=True, slots=True)
class FaultPlan:
    text: str
    faults: tuple[Fault, ...] = ()
    random: RandomFaults | None = None

    def __bool__(self) -> bool:
        return bool(self.faults) or self.random is not None

    def resolve(self, world_size: int, *, strict: bool = True) -> tuple[Fault, ...]:
        """Every fault, random ones expanded. ``strict`` refuses ranks the job does not have;
        otherwise they are dropped (an elastic job that shrank below them)."""
        for fault in self.faults:
            if fault.rank >= world_size and strict:
                raise FaultSpecError(
                    f"BAIGE_FAULT={self.text!r}: {fault.describe()!r} names rank {fault.rank} "
                    f"but the job has {world_size} rank{'s' if world_size != 1 else ''} "
                    f"(0..{world_size - 1})"
                )
        expanded = (
            self.random.expand(world_size, len(self.faults)) if self.random is not None else []
        )
        return (*(f for f in self.faults if f.rank < world_size), *expanded)


def _number(text: str, key: str, value: str, kind: type[int] | type[float]) -> float:
    try:
        number = kind(value)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise FaultSpecError(f"{text}: {key}={value!r} is not {what}") from None
    if isinstance(number, float) and not math.isfinite(number):
        raise FaultSpecError(f"{text}: {key}={value!r} is not a finite number")
    return number


def _parse_one(spec: str, index: int, where: str) -> Fault | RandomFaults:
    parts = spec.split(":")
    kind = parts[0].strip().lower()
    here = f"{where}: fault {spec!r}"
    if kind not in _ALLOWED:
        raise FaultSpecError(
            f"{here}: unknown kind {kind!r}; expected one of kill, hang, slow, netslow, random "
            "(e.g. kill:rank=1:step=50)"
        )
    values: dict[str, str] = {}
    for part in parts[1:]:
        key, sep, value = part.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not sep or not key or not value:
            raise FaultSpecError(f"{here}: {part!r} is not key=value")
        if key not in _ALLOWED[kind]:
            raise FaultSpecError(
                f"{here}: {kind} takes {', '.join(sorted(_ALLOWED[kind]))}, not {key!r}"
            )
        if key in values:
            raise FaultSpecError(f"{here}: {key} given twice")
        values[key] = value
    nums: dict[str, float] = {}
    for key, value in values.items():
        if key in ("rank", "step", "seed", "count"):
            nums[key] = _number(here, key, value, int)
        elif key != "kinds":
            nums[key] = _number(here, key, value, float)
    for key in ("rank", "step", "count"):
        if key in nums and nums[key] < 0:
            raise FaultSpecError(f"{here}: {key} must be >= 0")
    for key in ("at", "for", "start"):
        if key in nums and nums[key] < 0:
            raise FaultSpecError(f"{here}: {key} must be >= 0 seconds")
    if "factor" in nums and nums["factor"] <= 1:
        raise FaultSpecError(f"{here}: factor must be > 1 (3 means three times slower)")
    if kind == "random":
        if "mtbf" not in nums:
            raise FaultSpecError(f"{here}: random needs mtbf=SECONDS (mean time between faults)")
        if nums["mtbf"] <= 0:
            raise FaultSpecError(f"{here}: mtbf must be > 0 seconds")
        kinds: tuple[Kind, ...] = KINDS
        if "kinds" in values:
            names = [k.strip().lower() for k in values["kinds"].split("+")]
            bad = [k for k in names if k not in KINDS]
            if bad or not names:
                raise FaultSpecError(
                    f"{here}: kinds={values['kinds']!r}; use kill, hang and slow joined by '+'"
                )
            kinds = tuple(k for k in KINDS if k in names)
        count = nums.get("count")
        return RandomFaults(
            mtbf=nums["mtbf"],
            kinds=kinds,
            seed=int(nums.get("seed", 0)),
            factor=nums.get("factor", 3.0),
            duration=nums.get("for", 30.0),
            start=nums.get("start", 0.0),
            count=None if count is None else int(count),
        )
    if "rank" not in nums:
        raise FaultSpecError(f"{here}: {kind} needs rank=N")
    if "step" in nums and "at" in nums:
        raise FaultSpecError(f"{here}: give step= or at=, not both")
    if kind in ("kill", "hang") and "step" not in nums and "at" not in nums:
        raise FaultSpecError(
            f"{here}: {kind} needs step=N (when that rank reports step N) "
            "or at=SECONDS (after the run started)"
        )
    if kind in ("slow", "netslow") and "factor" not in nums:
        raise FaultSpecError(f"{here}: {kind} needs factor=X (> 1)")
    step = nums.get("step")
    return Fault(
        index=index,
        kind=kind,  # type: ignore[arg-type]  # checked against _ALLOWED above
        rank=int(nums["rank"]),
        step=None if step is None else int(step),
        at=nums.get("at"),
        factor=nums.get("factor", 1.0),
        duration=nums.get("for"),
    )


def parse_faults(text: str | None) -> FaultPlan:
    """Parse ``BAIGE_FAULT``; an empty or missing value is an empty plan."""
    text = (text or "").strip()
    if not text:
        return FaultPlan("")
    where = f"BAIGE_FAULT={text!r}"
    faults: list[Fault] = []
    rnd: RandomFaults | None = None
    for spec in text.split(","):
        spec = spec.strip()
        if not spec:
            raise FaultSpecError(f"{where}: empty fault between commas")
        parsed = _parse_one(spec, len(faults), where)
        if isinstance(parsed, RandomFaults):
            if rnd is not None:
                raise FaultSpecError(f"{where}: only one random fault source per run")
            rnd = parsed
        else:
            faults.append(parsed)
    return FaultPlan(text, tuple(faults), rnd)


# ---------------------------------------------------------------- the ledger


def ledger_dir(run_dir: Path) -> Path:
    return run_dir / "faults"


def claim(ledger: Path, fault: Fault, step: int, now: float) -> bool:
    """Record that ``fault`` fires now; False if some process already fired it."""
    ledger.mkdir(parents=True, exist_ok=True)
    path = ledger / f"fired-{fault.index:05d}.json"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    record = {
        "index": fault.index,
        "kind": fault.kind,
        "rank": fault.rank,
        "step": step,
        "ts": now,
        "pid": os.getpid(),
        "fault": fault.describe(),
        "factor": fault.factor,
        "for": fault.duration,
    }
    with os.fdopen(fd, "w") as out:
        out.write(json.dumps(record))
    return True


def fired_faults(ledger: Path) -> dict[int, dict[str, object]]:
    """Faults fired so far in this run, by index."""
    out: dict[int, dict[str, object]] = {}
    if not ledger.is_dir():
        return out
    for path in sorted(ledger.glob("fired-*.json")):
        with contextlib.suppress(OSError, ValueError):
            record = json.loads(path.read_text())
            if isinstance(record, dict) and isinstance(record.get("index"), int):
                out[record["index"]] = record
    return out


# ---------------------------------------------------------------- firing


def hang_forever(seconds: float | None) -> None:
    """An injected hang: the frame a stack dump shows for rank that stopped on purpose."""
    end = math.inf if seconds is None else time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(min(1.0, max(0.0, end - time.monotonic())))


def _spin(seconds: float) -> None:
    """Burn CPU, as a slower chip would take longer on the same work."""
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


@dataclass
class Injector:
    """The faults one rank may fire, checked on every step (a few comparisons when idle)."""

    rank: int
    faults: Sequence[Fault]
    ledger: Path | None
    run_start: float
    clock: Callable[[], float] = time.time
    _pending: list[Fault] = field(init=False)
    _slow: list[tuple[float, float]] = field(init=False, default_factory=list)
    _netslow: list[tuple[float, float]] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        fired = fired_faults(self.ledger) if self.ledger is not None else {}
        self._pending = []
        now = self.clock()
        for fault in self.faults:
            if fault.rank != self.rank:
                continue
            record = fired.get(fault.index)
            if record is None:
                self._pending.append(fault)
            elif fault.kind in ("slow", "netslow"):
                ts = record.get("ts")
                start = float(ts) if isinstance(ts, int | float) else now
                until = math.inf if fault.duration is None else start + fault.duration
                if until > now:
                    (self._slow if fault.kind == "slow" else self._netslow).append(
                        (fault.factor, until)
                    )

    @property
    def idle(self) -> bool:
        return not self._pending and not self._slow and not self._netslow

    def comm_delay(self, seconds: float) -> float:
        """Extra seconds a collective that took ``seconds`` must last under ``netslow``."""
        if not self._netslow:
            return 0.0
        now = self.clock()
        self._netslow = [(f, until) for f, until in self._netslow if until > now]
        factor = max((f for f, _ in self._netslow), default=1.0)
        return (factor - 1.0) * max(seconds, 0.0)

    def check(self, step: int, busy_s: float) -> float:
        """Fire what is due at ``step``; returns the seconds spun to make this step slow."""
        if self.idle:
            return 0.0
        now = self.clock()
        due = [
            f
            for f in self._pending
            if (f.step is not None and step >= f.step)
            or (f.at is not None and now >= self.run_start + f.at)
            or (f.step is None and f.at is None)
        ]
        for fault in due:
            self._pending.remove(fault)
            if self.ledger is not None and not claim(self.ledger, fault, step, now):
                continue
            if fault.kind == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            elif fault.kind == "hang":
                hang_forever(fault.duration)
            elif fault.kind == "netslow":
                until = math.inf if fault.duration is None else now + fault.duration
                self._netslow.append((fault.factor, until))
            else:
                until = math.inf if fault.duration is None else now + fault.duration
                self._slow.append((fault.factor, until))
        if not self._slow:
            return 0.0
        self._slow = [(factor, until) for factor, until in self._slow if until > now]
        factor = max((f for f, _ in self._slow), default=1.0)
        extra = (factor - 1.0) * max(busy_s, 0.0)
        if extra > 0:
            _spin(extra)
        return extra


def describe_all(faults: Iterable[Fault]) -> str:
    return ", ".join(f.describe() for f in faults)
