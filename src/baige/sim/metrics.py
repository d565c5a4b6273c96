"""Time integrals of piecewise-constant quantities, and the percentiles the summary reports.

The simulator never steps time: a quantity (accelerators allocated to a queue, replicas
serving a service) changes at events, and :class:`Level` adds ``value × duration`` to its
area whenever it changes, and optionally to fixed-width timeline bins.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["Bins", "Level", "percentile"]


class Bins:
    """``count`` equal bins over ``[0, horizon)``, each accumulating an area."""

    __slots__ = ("count", "horizon", "values", "width")

    def __init__(self, horizon: float, count: int) -> None:
        self.horizon = horizon
        self.count = count
        self.width = horizon / count
        self.values = [0.0] * count

    def add(self, start: float, end: float, rate: float) -> None:
        """Add ``rate`` over ``[start, end)`` (clipped to the horizon)."""
        end = min(end, self.horizon)
        if end <= start or rate == 0:
            return
        width = self.width
        index = int(start // width)
        while start < end and index < self.count:
            edge = min(end, (index + 1) * width)
            self.values[index] += rate * (edge - start)
            start = edge
            index += 1

    def means(self) -> list[float]:
        """The average rate in each bin."""
        return [value / self.width for value in self.values]


class Level:
    """A quantity that holds its value between changes; its area is the time integral."""

    __slots__ = ("area", "bins", "since", "value")

    def __init__(self, bins: Bins | None = None) -> None:
        self.value = 0.0
        self.since = 0.0
        self.area = 0.0
        self.bins = bins

    def flush(self, t: float) -> None:
        if t > self.since:
            if self.value:
                self.area += self.value * (t - self.since)
                if self.bins is not None:
                    self.bins.add(self.since, t, self.value)
            self.since = t

    def move(self, t: float, delta: float) -> None:
        self.flush(t)
        self.value += delta

    def set(self, t: float, value: float) -> None:
        self.flush(t)
        self.value = value


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank of sorted ``values``; 0 for none."""
    if not values:
        return 0.0
    index = min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))
    return float(values[index])
