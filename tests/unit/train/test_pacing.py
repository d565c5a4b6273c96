"""The fake-card pacer: a card of speed s among cards up to f takes f/s of the measured time."""

from __future__ import annotations

import pytest

from baige.train.pacing import Pacer


def test_the_fastest_card_is_not_slowed_and_a_slower_one_by_the_speed_ratio() -> None:
    assert Pacer(2.5, 2.5).factor == 1.0
    assert Pacer(1.0, 2.5).factor == 2.5
    assert Pacer(0.4).factor == 1.0  # alone, a card is its own reference
    slow = Pacer(0.5, 1.0)
    assert slow.pad(0.01) == pytest.approx(0.01)
    assert slow.pad(-1.0) == 0.0
    assert slow.slept_s == pytest.approx(0.01)


def test_compute_pads_the_timed_block() -> None:
    pacer = Pacer(0.25, 1.0)
    with pacer.compute():
        sum(range(20_000))
    assert pacer.slept_s > 0


def test_from_env_reads_the_replica_variables_and_names_a_bad_one() -> None:
    assert Pacer.from_env({}).factor == 1.0
    pacer = Pacer.from_env({"BAIGE_FAKE_SPEED": "0.791", "BAIGE_FAKE_SPEED_FASTEST": "2.25"})
    assert pacer.factor == pytest.approx(2.25 / 0.791)
    with pytest.raises(ValueError, match="BAIGE_FAKE_SPEED: 'fast' is not a number"):
        Pacer.from_env({"BAIGE_FAKE_SPEED": "fast"})
    with pytest.raises(ValueError, match="BAIGE_FAKE_SPEED_FASTEST: must be a positive"):
        Pacer.from_env({"BAIGE_FAKE_SPEED_FASTEST": "0"})
    with pytest.raises(ValueError, match="speeds must be positive"):
        Pacer(0.0)
