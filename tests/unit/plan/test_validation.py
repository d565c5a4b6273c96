"""The cost model against reality: five published tables, A100 and H100, five sources.

* Megatron-LM SC'21 Table 1 (Narayanan et al.): ten GPT models on 32–3,072 A100.
* Korthikanti et al. 2022 Tables 3–5: 22B–1T on A100, full recomputation vs sequence
  parallelism + selective recomputation (iteration times; MFU/HFU also in Megatron-LM's README).
* The Llama 3 paper's Table 4: Llama 3 405B on 8,192 and 16,384 H100, 8K and 128K sequences.
* The Megatron-LM README's H100 strong scaling of GPT-3 175B (96 and 4,608 GPUs).
* torchtitan's A100 benchmarks (FSDP2 on 64 A100).

The rows live in data/published/*.csv with their sources in each file's header. The model has
fitted figure per chip family, the GEMM efficiency, fitted over all rows of that family at
once (:mod:`baige.plan.efficiency`); every row must then be within :data:`BOUND`, and
leaving any one table out of the fit must still predict it within
:data:`LEAVE_ONE_OUT_BOUND`. ``pytest tests/unit/plan/test_validation.py -s`` prints the tables.
"""

from __future__ import annotations

import math

import pytest

from baige.plan import DEFAULT_EFFICIENCY, calibrate_efficiency, estimate, resolve_group, search
from baige.plan.efficiency import FAMILIES, GEMM_EFFICIENCY

from .published import TABLES, Case, family_error, fit_families

BOUND = 0.10
"""Largest |predicted / measured − 1| allowed for any row, with the shipped efficiency."""

LEAVE_ONE_OUT_BOUND = 0.10
"""The same for a table predicted by efficiencies fitted without it (rows in
:data:`ROW_BOUNDS` excluded). The worst is 9.4% (Korthikanti's 22B SP + selective row);
docs/plan.md gives the figures."""

CASES = {name: load() for name, load in TABLES.items()}
EVERY = [c for cases in CASES.values() for c in cases]
IDS = [f"{c.table}:{c.row}" for c in EVERY]


SHIPPED = {name: f.gemm for name, f in FAMILIES.items()}

ROW_BOUNDS: dict[tuple[str, str], float] = {}
"""Rows allowed more than :data:`BOUND`, each with its reason in docs/plan.md. Empty since
the Llama 3 128K row came within 10% (+8.8%) once context parallelism's per-step latency and
partial-output merges were costed; it was +12.4% with a 15% allowance."""


def _summary(cases: list[Case], efficiencies: dict[str, float]) -> tuple[float, float]:
    errors = [abs(family_error(c, efficiencies)) for c in cases]
    return sum(errors) / len(errors), max(errors)


@pytest.mark.parametrize("case", EVERY, ids=IDS)
def test_every_published_row_is_predicted_within_the_bound(case: Case) -> None:
    bound = ROW_BOUNDS.get((case.table, case.row), BOUND)
    assert abs(case.error()) <= bound, f"{case.table} {case.row}: {case.error():+.1%}"


def test_the_shipped_efficiencies_are_the_fit_over_all_tables() -> None:
    """The shipped figures must move with the cost model, or they silently stop being the
    fitted values the docs say they are."""
    fitted = fit_families(EVERY)
    for family, value in SHIPPED.items():
        assert fitted[family] == pytest.approx(value, abs=1e-3), family
    assert DEFAULT_EFFICIENCY == GEMM_EFFICIENCY == SHIPPED["ampere"]


def test_leave_one_table_out(capsys: pytest.CaptureFixture[str]) -> None:
    """Refit both families without a table, then predict it."""
    lines = [
        f"{'table':<22}{'rows':>5}{'mean':>7}{'worst':>7}   left out: ampere hopper  mean  worst"
    ]
    worst_out = 0.0
    for name, cases in CASES.items():
        rest = [c for other, more in CASES.items() if other != name for c in more]
        refit = fit_families(rest, tolerance=1e-3)
        mean, worst = _summary(cases, SHIPPED)
        mean_out, worst_o = _summary(cases, refit)
        bounded = [c for c in cases if (c.table, c.row) not in ROW_BOUNDS]
        worst_out = max(worst_out, _summary(bounded, refit)[1])
        lines.append(
            f"{name:<22}{len(cases):>5}{mean:>7.1%}{worst:>7.1%}   {refit['ampere']:>16.3f}"
            f"{refit['hopper']:>7.3f}{mean_out:>6.1%}{worst_o:>7.1%}"
        )
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    assert worst_out <= LEAVE_ONE_OUT_BOUND


def test_prints_every_row(capsys: pytest.CaptureFixture[str]) -> None:
    lines = [f"{'table':<22}{'row':<18}{'metric':<16}{'predicted':>10}{'measured':>10}{'error':>8}"]
    for c in EVERY:
        lines.append(
            f"{c.table:<22}{c.row:<18}{c.metric:<16}{c.predicted():>10.2f}{c.measured:>10.2f}"
            f"{c.error():>+8.1%}"
        )
    with capsys.disabled():
        print("\n" + "\n".join(lines))


def test_korthikanti_mfu_matches_the_iteration_times() -> None:
    """The transcribed Table 5 is self-consistent: MFU from the paper's Eq. 7 and the iteration
    time gives the MFU column the Megatron-LM README prints, to 0.2 points."""
    published = {"22b-sp-sel": 0.415, "175b-sp-sel": 0.514, "530b-sp-sel": 0.560,
                 "1t-sp-sel": 0.563}  # fmt: skip
    for c in CASES["korthikanti-2022"]:
        if c.row not in published:
            continue
        m = c.model
        s, h, layers, v = m.seq_len, m.hidden, m.layers, m.vocab
        flops = 72 * c.batch * layers * s * h**2 * (1 + s / (6 * h) + v / (12 * h * layers))
        mfu = flops / (c.measured * c.gpus * 312e12)
        assert mfu == pytest.approx(published[c.row], abs=0.002)


@pytest.mark.parametrize("case", CASES["korthikanti-2022"] + CASES["megatron-sc21"],
                         ids=lambda c: f"{c.table}:{c.row}")  # fmt: skip
def test_published_configuration_fits_in_memory(case: Case) -> None:
    assert case.run().fits


def test_the_model_counts_megatrons_flops() -> None:
    """96·B·s·l·h²·(1 + s/6h + V/16lh): the FLOPs SC'21's TFLOP/s were counted with."""
    for c in CASES["megatron-sc21"]:
        m = c.model
        s, h, layers, v = m.seq_len, m.hidden, m.layers, m.vocab
        paper = 96 * c.batch * s * layers * h**2 * (1 + s / (6 * h) + v / (16 * layers * h))
        assert c.run().hardware_flops == pytest.approx(paper, rel=1e-9)


def test_calibrating_on_one_row_recovers_a_nearby_efficiency() -> None:
    """One measured run of your own (here SC'21's 18.4B row) gives an efficiency close to the
    shipped, many-table figure."""
    row = next(c for c in CASES["megatron-sc21"] if c.row == "18.4B")
    assert row.strategy is not None
    group = resolve_group(row.chip, row.gpus, row.nic_gbps)
    got = calibrate_efficiency(row.model, group, row.software, row.strategy, row.batch,
                               row.measured)  # fmt: skip
    assert got == pytest.approx(SHIPPED["ampere"], abs=0.05)
    assert not math.isnan(got)


def test_search_beats_or_matches_every_published_configuration(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The planner's best plan against the published (framework-recommended) configuration,
    both predicted by the same model: the "faster than defaults" figure docs/plan.md quotes."""
    lines = [f"{'table':<22}{'row':<18}{'published':<40}{'best':<44}{'speed-up':>8}"]
    for c in EVERY:
        if c.strategy is None:
            continue
        group = resolve_group(c.chip, c.gpus, c.nic_gbps)
        published = estimate(c.model, group, c.software, c.strategy, c.batch)
        best = search(c.model, group, c.software, c.batch, top_k=1).best
        assert best.iteration_s <= published.iteration_s * (1 + 1e-9)
        gain = published.iteration_s / best.iteration_s - 1
        lines.append(
            f"{c.table:<22}{c.row:<18}{c.strategy.describe():<40}"
            f"{best.strategy.describe():<44}{gain:>+8.1%}"
        )
    with capsys.disabled():
        print("\n" + "\n".join(lines))
