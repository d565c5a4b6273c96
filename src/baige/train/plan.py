"""The hetero plan file: which rank runs on which chip type and how much of the batch it takes.

The control plane (or a person) writes one JSON file per job and names it in the environment
variable ``BAIGE_HETERO_PLAN``; every rank reads the same file. Keeping the split in a file,
not in command-line flags, lets the scheduler decide it from the chips it admitted the job on
without the training script knowing anything about chip speeds::

    {
      "version": 1,
      "global_batch": 64,
      "ranks": [
        {"rank": 0, "type": "h100", "micro_batches": 4, "micro_batch_size": 8},
        {"rank": 1, "type": "h100", "micro_batches": 4, "micro_batch_size": 8},
        {"rank": 2, "type": "910b", "micro_batches": 2, "micro_batch_size": 8}
      ],
      "backends": {"h100": "nccl", "910b": "hccl"}
    }

This module imports no torch, so the control plane can write and check plans with it.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = [
    "PLAN_ENV",
    "HeteroPlan",
    "PlanError",
    "RankShare",
    "load_plan",
    "parse_plan",
    "plan_from_env",
    "split_by_speed",
]

PLAN_ENV = "BAIGE_HETERO_PLAN"

_Count = Annotated[int, Field(strict=True, ge=1)]
_Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]


class PlanError(ValueError):
    """A plan file that cannot be used; the message names the file and the field."""


class RankShare(BaseModel):
    """One rank's chip type and its part of every global batch.

    The rank processes ``micro_batches`` micro-batches of ``micro_batch_size`` samples per
    optimizer step, so its local batch is their product. The micro-batch size is what fits
    the chip's memory; the count is what balances the chip's speed against the others.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    rank: Annotated[int, Field(strict=True, ge=0)]
    type: _Name
    micro_batches: _Count
    micro_batch_size: _Count

    @property
    def samples(self) -> int:
        """Samples this rank contributes to each global batch."""
        return self.micro_batches * self.micro_batch_size


class HeteroPlan(BaseModel):
    """A whole job's split. Ranks are kept sorted by rank number.

    ``backends`` names the collective backend of each type's own process group (``nccl``,
    ``hccl``, ``gloo``, …); a type not named there gets ``auto``, which each rank resolves
    from the accelerators it sees. Traffic between types always goes over gloo.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    global_batch: _Count
    ranks: tuple[RankShare, ...] = Field(min_length=1)
    backends: dict[_Name, _Name] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> HeteroPlan:
        numbers = [r.rank for r in self.ranks]
        seen: set[int] = set()
        for n in numbers:
            if n in seen:
                raise ValueError(f"ranks: rank {n} appears more than once")
            seen.add(n)
        missing = sorted(set(range(len(numbers))) - seen)
        if missing:
            raise ValueError(
                f"ranks: ranks must be numbered 0..{len(numbers) - 1}, each once; "
                f"missing {missing} (found {sorted(seen)})"
            )
        total = sum(r.samples for r in self.ranks)
        if total != self.global_batch:
            parts = " + ".join(f"{r.samples}" for r in sorted(self.ranks, key=_by_rank))
            raise ValueError(
                f"global_batch: {self.global_batch} is not the sum of the ranks' "
                f"micro_batches × micro_batch_size ({parts} = {total})"
            )
        unknown = sorted(set(self.backends) - {r.type for r in self.ranks})
        if unknown:
            raise ValueError(
                f"backends: {unknown} name no rank's type (types: {sorted(self.types)})"
            )
        object.__setattr__(self, "ranks", tuple(sorted(self.ranks, key=_by_rank)))
        return self

    @property
    def world_size(self) -> int:
        return len(self.ranks)

    @property
    def types(self) -> tuple[str, ...]:
        """Chip types in the order of their lowest rank: the order every rank creates the
        process groups in, so that all ranks agree without talking."""
        order: list[str] = []
        for r in self.ranks:
            if r.type not in order:
                order.append(r.type)
        return tuple(order)

    def ranks_of(self, chip_type: str) -> tuple[int, ...]:
        return tuple(r.rank for r in self.ranks if r.type == chip_type)

    def leader_of(self, chip_type: str) -> int:
        """The lowest rank of a type: it alone talks to the other types."""
        return self.ranks_of(chip_type)[0]

    def share(self, rank: int) -> RankShare:
        return self.ranks[rank]

    def offset(self, rank: int) -> int:
        """Where the rank's samples start within each global batch (ranks in order)."""
        return sum(r.samples for r in self.ranks[:rank])

    def weight(self, rank: int) -> float:
        """The rank's gradient weight: its samples over the global batch, not 1/world."""
        return self.ranks[rank].samples / self.global_batch

    def backend_of(self, chip_type: str) -> str:
        return self.backends.get(chip_type, "auto")


def _by_rank(r: RankShare) -> int:
    return r.rank


def _field(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def parse_plan(data: Any, source: str) -> HeteroPlan:
    """Check a decoded plan; errors say ``source: field: problem``, one line per problem."""
    try:
        return HeteroPlan.model_validate(data)
    except ValidationError as err:
        lines = []
        for e in err.errors(include_url=False):
            message = str(e["msg"]).removeprefix("Value error, ")
            where = _field(e["loc"])
            lines.append(f"{source}: {where}: {message}" if where else f"{source}: {message}")
        raise PlanError("\n".join(lines)) from None


def load_plan(path: str | os.PathLike[str]) -> HeteroPlan:
    """Read and check a plan file."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise PlanError(f"{source}: cannot read the plan file: {err.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise PlanError(
            f"{source}:{err.lineno}: not valid JSON: {err.msg} (column {err.colno})"
        ) from None
    if not isinstance(data, dict):
        raise PlanError(f"{source}: expected a JSON object with global_batch and ranks")
    return parse_plan(data, source)


def plan_from_env(environ: Mapping[str, str] | None = None) -> HeteroPlan:
    """The plan named by ``BAIGE_HETERO_PLAN``."""
    env = os.environ if environ is None else environ
    path = env.get(PLAN_ENV)
    if not path:
        raise PlanError(
            f"{PLAN_ENV} is not set: it must name the JSON plan file that gives every rank "
            "its chip type and share of the global batch (see docs/train.md)"
        )
    return load_plan(path)


def split_by_speed(
    types: Sequence[tuple[str, float]],
    global_batch: int,
    micro_batch_size: int,
    backends: Mapping[str, str] | None = None,
) -> HeteroPlan:
    """A plan giving each rank micro-batches in proportion to its chip's speed.

    ``types`` holds one ``(chip type, relative speed)`` per rank, in rank order. Whole
    micro-batches are shared out by largest remainder, every rank getting at least one, so
    that the ranks finish their step at about the same time; ``global_batch`` must be a
    multiple of ``micro_batch_size``.
    """
    if global_batch % micro_batch_size:
        raise PlanError(
            f"global_batch {global_batch} is not a multiple of micro_batch_size {micro_batch_size}"
        )
    units = global_batch // micro_batch_size
    if units < len(types):
        raise PlanError(f"{units} micro-batches cannot give each of {len(types)} ranks one")
    if any(not (speed > 0 and math.isfinite(speed)) for _, speed in types):
        raise PlanError("every speed must be a positive number")
    total = sum(speed for _, speed in types)
    exact = [units * speed / total for _, speed in types]
    counts = [max(1, math.floor(x)) for x in exact]
    while sum(counts) < units:  # the most under-served rank takes the next micro-batch
        i = max(range(len(counts)), key=lambda k: (exact[k] - counts[k], -k))
        counts[i] += 1
    while sum(counts) > units:  # only when a slow rank was raised to its one micro-batch
        i = max(
            (k for k in range(len(counts)) if counts[k] > 1), key=lambda k: counts[k] - exact[k]
        )
        counts[i] -= 1
    return parse_plan(
        {
            "global_batch": global_batch,
            "ranks": [
                {"rank": i, "type": t, "micro_batches": c, "micro_batch_size": micro_batch_size}
                for i, ((t, _), c) in enumerate(zip(types, counts, strict=True))
            ],
            "backends": dict(backends or {}),
        },
        "split_by_speed",
    )
