"""Fake cards at their type's speed: pace a step so a mixed job shows the real imbalance.

On a machine without accelerators every "card" computes at the CPU's speed, so a job across
fake H100s and fake Ascend 910Bs would be perfectly balanced and the split between them would
not matter. ``baige up --fake-accelerators`` therefore gives each replica on a fake card its
type's declared speed relative to an H100 (``BAIGE_FAKE_SPEED``, from the catalog's dense
BF16 figures) and the fastest declared speed in the cluster (``BAIGE_FAKE_SPEED_FASTEST``). A
training script times its compute with :class:`Pacer` and the pacer sleeps the difference::

    pacer = Pacer.from_env()
    with pacer.compute():
        loss = model(x).sum(); loss.backward()

A card of speed ``s`` in a cluster whose fastest card has speed ``f`` takes ``f / s`` times
the measured time: the fastest type runs at the CPU's speed and the others are slowed in
proportion. This is a declared emulation, not a model of any chip: it reproduces the ratio
of speeds, nothing else (memory, interconnect and numerics are the CPU's).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Mapping

__all__ = ["ENV_FAKE_SPEED", "ENV_FAKE_SPEED_FASTEST", "Pacer"]

ENV_FAKE_SPEED = "BAIGE_FAKE_SPEED"
ENV_FAKE_SPEED_FASTEST = "BAIGE_FAKE_SPEED_FASTEST"


def _positive(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}: {raw!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{name}: must be a positive number, got {raw!r}")
    return value


class Pacer:
    """Stretches timed blocks of compute to ``fastest / speed`` of their measured time."""

    def __init__(self, speed: float = 1.0, fastest: float | None = None) -> None:
        fastest = speed if fastest is None else fastest
        if not speed > 0 or not fastest > 0:
            raise ValueError(f"speeds must be positive, got speed={speed}, fastest={fastest}")
        self.speed = speed
        self.fastest = max(fastest, speed)
        self.slept_s = 0.0  # what the emulation added, for the script's own accounting

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Pacer:
        """The pacer of this replica's fake card; a no-op off fake cards (no variable)."""
        env = os.environ if environ is None else environ
        speed = _positive(env, ENV_FAKE_SPEED, 1.0)
        return cls(speed, _positive(env, ENV_FAKE_SPEED_FASTEST, speed))

    @property
    def factor(self) -> float:
        """How many times the measured time a timed block takes once paced."""
        return self.fastest / self.speed

    def pad(self, measured_s: float) -> float:
        """Sleep what a block that took ``measured_s`` lacks; returns the seconds slept."""
        extra = max(0.0, measured_s) * (self.factor - 1.0)
        if extra > 0:
            time.sleep(extra)
            self.slept_s += extra
        return extra

    @contextlib.contextmanager
    def compute(self) -> Iterator[None]:
        """Time the block and pad it to the card's speed."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.pad(time.perf_counter() - start)
