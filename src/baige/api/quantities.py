"""Human-friendly quantities in specs (``500m`` CPU, ``256Gi`` memory, ``2h`` time limits).

Users write specs by hand; accepting the spellings Kubernetes and Slurm users already know,
and turning them into plain integers at the edge, keeps every layer below free of units.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer

__all__ = [
    "CpuMilli",
    "DurationSeconds",
    "MemoryMiB",
    "parse_cpu_milli",
    "parse_duration_s",
    "parse_memory_mib",
]

_MEMORY_UNITS: dict[str, float] = {
    "": 1 / (1024 * 1024),  # plain number = bytes
    "k": 1000 / 1024**2,
    "m": 1000**2 / 1024**2,
    "g": 1000**3 / 1024**2,
    "t": 1000**4 / 1024**2,
    "ki": 1 / 1024,
    "mi": 1.0,
    "gi": 1024.0,
    "ti": 1024.0**2,
}
_MEMORY_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgt]i?)?b?\s*$", re.IGNORECASE)
_DURATION_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*(d|h|m|s)", re.IGNORECASE)
_DURATION_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}


def _reject_bool(value: object, what: str) -> None:
    if isinstance(value, bool):
        raise ValueError(
            f"{what} must be a number or a string such as shown in the docs, not {value}"
        )


def parse_cpu_milli(value: object) -> int:
    """CPU cores as thousandths: ``2`` → 2000, ``"500m"`` → 500, ``"1.5"`` → 1500."""
    _reject_bool(value, "cpu")
    if isinstance(value, int | float):
        milli = round(float(value) * 1000)
    elif isinstance(value, str):
        text = value.strip()
        try:
            milli = int(text[:-1]) if text.endswith("m") else round(float(text) * 1000)
        except ValueError:
            raise ValueError(
                f"cpu {value!r} is not a number of cores such as 4, 0.5 or 500m"
            ) from None
    else:
        raise ValueError(f"cpu must be a number of cores, not {type(value).__name__}")
    if milli < 0:
        raise ValueError(f"cpu cannot be negative: {value!r}")
    return milli


def parse_memory_mib(value: object) -> int:
    """Memory as MiB: ``"256Gi"`` → 262144, ``"512Mi"`` → 512, a plain integer is bytes."""
    _reject_bool(value, "memory")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"memory cannot be negative: {value!r}")
        return round(float(value) / 1024**2)
    if not isinstance(value, str):
        raise ValueError(f"memory must be a size such as 64Gi, not {type(value).__name__}")
    match = _MEMORY_RE.match(value)
    if match is None:
        raise ValueError(f"memory {value!r} is not a size such as 512Mi, 64Gi or 2Ti")
    number, unit = match.groups()
    return round(float(number) * _MEMORY_UNITS[(unit or "").lower()])


def parse_duration_s(value: object) -> float:
    """A duration in seconds: ``90`` → 90, ``"2h30m"`` → 9000, ``"1d"`` → 86400."""
    _reject_bool(value, "duration")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().replace(" ", "")
        try:
            seconds = float(text)
        except ValueError:
            parts = _DURATION_RE.findall(text)
            if not parts or "".join(n + u for n, u in parts).lower() != text.lower():
                raise ValueError(
                    f"duration {value!r} is not a time such as 90, 45s, 30m, 2h or 1d12h"
                ) from None
            seconds = sum(float(n) * _DURATION_UNITS[u.lower()] for n, u in parts)
    else:
        raise ValueError(
            f"duration must be seconds or a string such as 2h, not {type(value).__name__}"
        )
    if seconds < 0:
        raise ValueError(f"duration cannot be negative: {value!r}")
    return seconds


def _cores(milli: int) -> int | float:
    """Thousandths of a core written back as cores (``1500`` → 1.5), which parse back to the
    same value: a stored spec is read again, and a bare number means cores there too."""
    return milli // 1000 if milli % 1000 == 0 else milli / 1000


def _mebibytes(mib: int) -> str:
    """MiB written back with their unit (``512`` → ``"512Mi"``): a bare number reads as bytes."""
    return f"{mib}Mi"


CpuMilli = Annotated[int, BeforeValidator(parse_cpu_milli), PlainSerializer(_cores)]
MemoryMiB = Annotated[int, BeforeValidator(parse_memory_mib), PlainSerializer(_mebibytes)]
DurationSeconds = Annotated[float, BeforeValidator(parse_duration_s)]
