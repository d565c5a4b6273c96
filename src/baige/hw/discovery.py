"""Finding this machine's accelerators, or declaring fake ones.

NVIDIA GPUs are found through ``nvidia-smi`` when it is installed; everywhere else a
developer declares fake accelerators (``h100:8``) so the whole platform runs on a laptop:
the fake cards are real to the scheduler and the visibility variables, and nothing else.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass

from baige.hw.catalog import UnknownAcceleratorError, get_chip

__all__ = ["Accelerators", "discover", "fake_speed", "parse_fake", "parse_fake_groups"]


@dataclass(frozen=True, slots=True)
class Accelerators:
    """``count`` cards of catalog type ``type`` on one node."""

    type: str
    count: int
    fake: bool


def parse_fake(text: str) -> Accelerators:
    """``"h100:8"`` → 8 fake H100; a clear ``ValueError`` otherwise."""
    name, _, count = text.partition(":")
    try:
        chip = get_chip(name)
    except UnknownAcceleratorError as err:
        raise ValueError(str(err)) from None
    try:
        number = int(count or "8")
    except ValueError:
        raise ValueError(f"{text!r}: the count after ':' must be a whole number") from None
    if not 1 <= number <= 64:
        raise ValueError(f"{text!r}: a node holds 1 to 64 accelerators")
    return Accelerators(chip.key, number, fake=True)


def parse_fake_groups(text: str) -> tuple[Accelerators, ...]:
    """``"h100:8,ascend-910b:8"`` → one group of fake nodes per type (a mixed cluster)."""
    groups = tuple(parse_fake(part.strip()) for part in text.split(",") if part.strip())
    if not groups:
        raise ValueError(f"{text!r}: name at least one TYPE:COUNT")
    types = [g.type for g in groups]
    repeated = sorted({t for t in types if types.count(t) > 1})
    if repeated:
        raise ValueError(f"{text!r}: {', '.join(repeated)} given twice")
    return groups


REFERENCE_CHIP = "h100"


def fake_speed(accel_type: str) -> float:
    """How fast a fake card of ``accel_type`` computes, relative to an H100: the catalog's
    dense BF16 figures' ratio (1.0 where a figure is unknown). A declared emulation: a
    training script on fake cards reads it as ``BAIGE_FAKE_SPEED`` and paces its steps
    (``baige.train.pacing``), so a mixed job shows the real imbalance on a CPU-only machine."""
    chip, reference = get_chip(accel_type), get_chip(REFERENCE_CHIP)
    ours, theirs = chip.bf16_dense_tflops.value, reference.bf16_dense_tflops.value
    if not ours or not theirs:
        return 1.0
    return round(float(ours) / float(theirs), 3)


def discover() -> Accelerators | None:
    """This machine's NVIDIA GPUs (the most common model), or None if there are none."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run(
            [smi, "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    names = Counter(line.strip() for line in out.splitlines() if line.strip())
    if not names:
        return None
    name, count = names.most_common(1)[0]
    try:
        return Accelerators(get_chip(name).key, count, fake=False)
    except UnknownAcceleratorError:
        return None
