"""The split a job spanning chip types runs with, for the chips it was actually placed on.

The scheduler decides where a ``mix: allowed`` job's replicas go; only then is it known how
many ranks of each type there are. This turns that placement into the plan file
``baige.train.hetero`` reads (``BAIGE_HETERO_PLAN``): each rank gets whole micro-batches of
the global batch in proportion to its chip's relative speed, so that the ranks of the
faster type do not wait for the slower ones at every gradient all-reduce. The speeds are
the accelerator catalog's dense BF16 figures relative to an H100 (the same figures the fake
cards are paced by), which is what the data-parallel part of the planner assumes too when
all ranks hold the whole model.
"""

from __future__ import annotations

from collections.abc import Sequence

from baige.hw.catalog import UnknownAcceleratorError
from baige.hw.discovery import fake_speed
from baige.train.plan import HeteroPlan, split_by_speed

__all__ = ["DEFAULT_MICRO_BATCHES_PER_RANK", "chip_speed", "split_for_placement"]

# without a declared batch: this many micro-batches of one sample per rank, enough for the
# split to follow a speed ratio of 1:8 in whole micro-batches
DEFAULT_MICRO_BATCHES_PER_RANK = 8


def chip_speed(accel_type: str) -> float:
    """Relative speed of a card of ``accel_type`` (an H100 is 1.0; 1.0 when not known)."""
    try:
        return fake_speed(accel_type)
    except UnknownAcceleratorError:  # not in the catalog: count it as a reference card
        return 1.0


def split_for_placement(
    rank_types: Sequence[str], global_batch: int | None = None, micro_batch: int = 1
) -> HeteroPlan:
    """The plan for ranks on ``rank_types`` (one type per rank, in rank order)."""
    if global_batch is None:
        global_batch = DEFAULT_MICRO_BATCHES_PER_RANK * len(rank_types) * micro_batch
    return split_by_speed([(t, chip_speed(t)) for t in rank_types], global_batch, micro_batch)
