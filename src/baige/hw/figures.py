"""Typed figures for accelerator specifications.

Every number in the catalog carries where it came from, because planners and simulators
quote these figures back to users; a number without a source cannot be checked, and an
unknown number must stay visibly unknown rather than be filled with a guess.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Figure", "unknown"]


@dataclass(frozen=True, slots=True)
class Figure:
    """One published figure: a value (``None`` when unknown), its unit and its source.

    ``low``/``high`` hold the spread when published figures disagree (for example third-party
    measurements of a chip whose vendor publishes no datasheet); ``value`` then stays ``None``
    unless one figure is authoritative.
    """

    value: float | None
    unit: str
    source: str
    low: float | None = None
    high: float | None = None
    note: str = ""

    def __post_init__(self) -> None:
        if not self.source:
            raise ValueError("a Figure needs a source (or the reason it is unknown)")
        if self.value is not None and self.value < 0:
            raise ValueError(f"a Figure cannot be negative: {self.value}")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"Figure range is inverted: {self.low} > {self.high}")

    @property
    def known(self) -> bool:
        """True when a single authoritative value exists."""
        return self.value is not None

    def require(self, what: str) -> float:
        """The value, or a clear error naming the figure when it is unknown."""
        if self.value is None:
            spread = ""
            if self.low is not None and self.high is not None:
                spread = f" (published figures range {self.low:g}–{self.high:g} {self.unit})"
            raise LookupError(f"{what} is unknown{spread}: {self.source}")
        return self.value

    def __str__(self) -> str:
        if self.value is not None:
            return f"{self.value:g} {self.unit}"
        if self.low is not None and self.high is not None:
            return f"unknown ({self.low:g}–{self.high:g} {self.unit})"
        return "unknown"


def unknown(unit: str, why: str, *, low: float | None = None, high: float | None = None) -> Figure:
    """A figure nobody has published reliably; ``why`` says what is known instead."""
    return Figure(value=None, unit=unit, source=why, low=low, high=high)
