"""Calibrating the cost model's fitted figure from one measured run of your own.

Everything else in the model is a published figure, a kernel paper's figure or a stated
constant; the fraction of peak that large matrix multiplies reach on a given chip and
software stack is not. The shipped values (:mod:`baige.plan.efficiency`) are fitted over many
published tables per chip family; a team with one measured run on its own cluster can fit it
for that cluster here — from exactly one measurement, so that every other prediction stays a
prediction.
"""

from __future__ import annotations

import dataclasses

from baige.plan.cluster import ChipGroup
from baige.plan.estimate import estimate
from baige.plan.model import ModelSpec
from baige.plan.software import Software
from baige.plan.strategy import Strategy

__all__ = ["calibrate_efficiency"]


def calibrate_efficiency(
    model: ModelSpec,
    group: ChipGroup,
    sw: Software,
    strategy: Strategy,
    global_batch: int,
    measured_tflops_per_card: float,
    *,
    tolerance: float = 1e-6,
) -> float:
    """The ``efficiency`` at which the model predicts ``measured_tflops_per_card``.

    ``measured_tflops_per_card`` counts FLOPs as Megatron-LM does (recomputation included; see
    :func:`baige.plan.cost.hardware_flops_per_sequence`). Predicted throughput rises
    monotonically with efficiency, so bisection finds it; a measurement the model cannot reach
    even at 100% of peak (its communication alone is too slow) raises ``ValueError``.
    """

    def predicted(efficiency: float) -> float:
        trial = dataclasses.replace(group, efficiency=efficiency)
        return estimate(model, trial, sw, strategy, global_batch).hardware_tflops_per_card

    low, high = 1e-3, 1.0
    if predicted(high) < measured_tflops_per_card:
        raise ValueError(
            f"{measured_tflops_per_card:g} TFLOP/s per card is out of reach even at 100% of "
            f"peak ({predicted(high):.1f} predicted): check the strategy and the link figures"
        )
    while high - low > tolerance:
        mid = (low + high) / 2
        if predicted(mid) < measured_tflops_per_card:
            low = mid
        else:
            high = mid
    return (low + high) / 2
