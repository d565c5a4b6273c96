"""Scheduling profiles: policy as data.

A profile names its plugins and weights and switches the mechanisms on or off, so that the
simulator can replay one trace under several policies and the control plane can run the one
that won, with no code change in between.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

from baige.sched.plugins import FILTERS, SCORES

__all__ = ["BAIGE", "FIFO", "PROFILES", "Profile", "ProfileError", "get_profile"]


class ProfileError(ValueError):
    """A profile names an unknown plugin or setting."""


@dataclass(frozen=True, slots=True)
class Profile:
    """What a cycle does. Defaults are Baige's own policy (every mechanism on)."""

    name: str = "baige"
    filters: tuple[str, ...] = ("pool", "node-selector", "host-resources")
    scores: tuple[tuple[str, float], ...] = (
        ("fragmentation", 2.0),
        ("card-packing", 1.0),
        ("topology-packing", 1.0),
    )
    borrowing: bool = True  # queues may use idle capacity beyond their guarantee
    reclaim: bool = True  # a queue under its guarantee preempts or shrinks borrowers
    preemption: bool = True  # higher priority preempts lower (same queue, or borrowers)
    elastic: bool = True  # elastic jobs shrink to make room and grow back
    fractional: bool = True  # shares of a card; off: a share takes a whole card
    topology_aware: bool = True  # pack gangs into the smallest domain that fits
    backfill: bool = True  # hold capacity for the first blocked gang; backfill around it
    reservations_per_type: int = 1
    reserve_min_cards: int = 2  # gangs smaller than this never hold capacity
    strict_fifo: bool = False  # every queue's blocked head blocks the queue
    candidate_nodes: int = 16  # options scored per placement step (0: all of them)
    max_preemption_units: int = 256  # victims (or replicas shrunk) examined per preemptor
    # equal scores: the first option offered (fullest cards and nodes first) or, with
    # ``node-order``, the node first in the snapshot (the FGD paper's simulator: node name)
    tie_break: str = "best-fit"

    def __post_init__(self) -> None:
        unknown = [f for f in self.filters if f not in FILTERS]
        unknown += [s for s, _ in self.scores if s not in SCORES]
        if unknown:
            raise ProfileError(
                f"profile {self.name!r}: unknown plugin(s) {', '.join(unknown)}; "
                f"filters: {', '.join(FILTERS)}; scores: {', '.join(SCORES)}"
            )
        for plugin, weight in self.scores:
            if weight < 0:
                raise ProfileError(f"profile {self.name!r}: score {plugin} has negative weight")
        if self.tie_break not in ("best-fit", "node-order"):
            raise ProfileError(
                f"profile {self.name!r}: tie_break is best-fit or node-order, not "
                f"{self.tie_break!r}"
            )
        if self.candidate_nodes < 0:
            raise ProfileError(f"profile {self.name!r}: candidate_nodes cannot be negative")

    def with_overrides(self, overrides: Mapping[str, object]) -> Profile:
        """A copy with some settings changed (from a scenario file); unknown keys are errors."""
        known = {f.name for f in fields(self)}
        bad = sorted(set(overrides) - known)
        if bad:
            raise ProfileError(
                f"unknown profile setting(s) {', '.join(bad)}; known: {', '.join(sorted(known))}"
            )
        values = dict(overrides)
        if "scores" in values and isinstance(values["scores"], Mapping):
            values["scores"] = tuple((str(k), float(v)) for k, v in values["scores"].items())
        if "filters" in values and isinstance(values["filters"], list):
            values["filters"] = tuple(str(v) for v in values["filters"])
        return replace(self, **values)  # type: ignore[arg-type]


BAIGE = Profile()

FIFO = Profile(
    name="fifo",
    scores=(("first-fit", 1.0),),
    borrowing=False,
    reclaim=False,
    preemption=False,
    elastic=False,
    fractional=False,
    topology_aware=False,
    backfill=False,
    strict_fifo=True,
)

PROFILES: dict[str, Profile] = {p.name: p for p in (BAIGE, FIFO)}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ProfileError(f"unknown profile {name!r}; known: {', '.join(PROFILES)}") from None
