"""Published runs the model is never fitted on: Megatron-DeepSpeed of 2021–2022.

MT-NLG 530B (Smith et al. 2022, three sizes at one batch) and BLOOM 176B (BigScience 2022)
ran Megatron-LM's kernels under DeepSpeed's pipeline engine. The model predicts both from
the shipped per-family efficiencies and the ``megatron-deepspeed`` profile (Megatron-LM 2021
kernels, nothing overlapped, whole activations sent between stages). BLOOM comes within 6%;
MT-NLG is 20–25% too optimistic: the same 530B model on the same A100s ran at 163 TFLOP/s per
GPU under Megatron-LM's own pipeline (SC'21, predicted within 2%) and at 126 under
DeepSpeed's, and no published figure says where the difference went. These tables stay out
of the fit (fitting them would move every Megatron row) and are held to documented bounds
(:data:`TABLE_BOUNDS`, reasons in docs/plan.md). What the model must get right for MT-NLG is
the physics: how throughput falls as data parallelism grows at a fixed batch.
"""

from __future__ import annotations

import pytest

from .published import UNFITTED, Case

CASES = {name: load() for name, load in UNFITTED.items()}
EVERY = [c for cases in CASES.values() for c in cases]

TABLE_BOUNDS = {"mtnlg-2022": 0.30, "bloom-2022": 0.10}
"""Largest |predicted / measured − 1| per table (positive: the model is optimistic)."""

SCALING_BOUND = 0.05
"""Largest error of a predicted speed-up between two rows of one table at the same batch."""


@pytest.mark.parametrize("case", EVERY, ids=lambda c: f"{c.table}:{c.row}")
def test_every_row_is_within_its_tables_bound(case: Case) -> None:
    error = case.error()
    assert abs(error) <= TABLE_BOUNDS[case.table], f"{case.table} {case.row}: {error:+.1%}"


def test_the_model_is_optimistic_for_every_unfitted_row() -> None:
    """The gap is one-sided (DeepSpeed's engine was slower than Megatron's own): a row the
    model predicted too slow would mean something else is wrong."""
    assert all(c.error() > 0 for c in EVERY)


def test_mtnlg_speed_up_from_more_data_parallel_ranks(capsys: pytest.CaptureFixture[str]) -> None:
    """MT-NLG at batch 1,920: 280 → 350 → 420 servers (DP 8 → 10 → 12). Fewer micro-batches
    per rank leave the same pipeline bubble a larger share; the measured speed-ups are
    1.197× and 1.354×."""
    rows = CASES["mtnlg-2022"]
    base = rows[0]
    lines = [f"{'rows':<24}{'measured':>10}{'predicted':>11}{'error':>8}"]
    for other in rows[1:]:
        measured = base.measured / other.measured
        predicted = base.predicted() / other.predicted()
        error = predicted / measured - 1
        lines.append(f"{base.row + ' → ' + other.row:<24}{measured:>10.3f}{predicted:>11.3f}"
                     f"{error:>+8.1%}")  # fmt: skip
        assert abs(error) <= SCALING_BOUND, f"{other.row}: {error:+.1%}"
    with capsys.disabled():
        print("\n" + "\n".join(lines))


def test_prints_every_unfitted_row(capsys: pytest.CaptureFixture[str]) -> None:
    lines = [f"{'table':<14}{'row':<14}{'strategy':<40}{'predicted':>10}{'measured':>10}"
             f"{'error':>8}"]  # fmt: skip
    for c in EVERY:
        e = c.run()
        lines.append(f"{c.table:<14}{c.row:<14}{e.strategy.describe():<40}"
                     f"{c.predicted():>10.2f}{c.measured:>10.2f}{c.error():>+8.1%}")  # fmt: skip
        assert e.fits, f"{c.row}: the published configuration must fit in memory"
    with capsys.disabled():
        print("\n" + "\n".join(lines))
