"""Splitting a model's layers over pipeline stages of unequal speed and memory.

A stage on a fast chip should hold more layers than one on a slow chip, but no stage may
hold more than its memory allows (and the first stages hold the most activations in flight).
The split that minimises the slowest stage is found by bisection on that stage's time: for a
candidate time T each stage can hold ``min(memory cap, ⌊(T − extra)/τ⌋)`` layers, and T is
feasible when those add up to the model's layers. Everything is vectorised over rows, one row
per candidate strategy, so thousands of splits cost one short loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from baige.plan.candidates import BoolArray, FloatArray, IntArray

__all__ = ["Split", "balanced_split"]

_ITERATIONS = 48


@dataclass(frozen=True, slots=True)
class Split:
    """Layers per stage (rows × stages), each row's slowest-stage time, and which rows have a
    split at all (every stage at least one layer, within memory)."""

    layers: IntArray
    t_max: FloatArray
    feasible: BoolArray


def balanced_split(tau: FloatArray, extra: FloatArray, cap: IntArray, layers: int) -> Split:
    """Integer layers per stage minimising max(layers·τ + extra), with 1 ≤ layers ≤ cap.

    ``tau``: seconds per layer per micro-batch at each stage; ``extra``: the stage's fixed
    seconds per micro-batch (LM head, sends); ``cap``: most layers memory allows. All shaped
    (rows, stages). Layers left over once every stage is at its time budget are taken back
    from the slowest-per-layer stages first, which also shortens the pipeline's fill.
    """
    rows, stages = tau.shape
    feasible = (cap >= 1).all(axis=1) & (np.minimum(cap, layers).sum(axis=1) >= layers)
    feasible &= stages <= layers
    low = (tau + extra).max(axis=1)
    high = np.full(rows, float(layers)) * tau.max(axis=1) + extra.max(axis=1)
    for _ in range(_ITERATIONS):
        mid = (low + high) / 2
        fits = np.floor((mid[:, None] - extra) / tau + 1e-9)
        held = np.minimum(fits, cap).clip(min=0)
        ok = (held.sum(axis=1) >= layers) & (held >= 1).all(axis=1)
        high = np.where(ok, mid, high)
        low = np.where(ok, low, mid)
    fits = np.floor((high[:, None] - extra) / tau + 1e-9)
    held = np.minimum(fits, cap).clip(min=1).astype(np.int64)
    excess = held.sum(axis=1) - layers
    order = np.argsort(-tau, axis=1, kind="stable")
    spare = np.take_along_axis(held - 1, order, axis=1)
    before = np.cumsum(spare, axis=1) - spare
    take = np.clip(excess[:, None] - before, 0, spare)
    np.put_along_axis(held, order, np.take_along_axis(held, order, axis=1) - take, axis=1)
    t_max = (held * tau + extra).max(axis=1)
    feasible &= held.sum(axis=1) == layers
    return Split(held, np.where(feasible, t_max, np.inf), feasible)
