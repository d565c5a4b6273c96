"""Fake accelerators: one type or a mixed cluster, with each type's declared speed."""

from __future__ import annotations

import pytest

from baige.hw.discovery import fake_speed, parse_fake, parse_fake_groups


def test_a_mixed_fake_cluster_has_a_group_per_type() -> None:
    groups = parse_fake_groups("h100:8, ascend-910b:4")
    assert [(g.type, g.count, g.fake) for g in groups] == [("h100", 8, True),
                                                          ("ascend-910b", 4, True)]  # fmt: skip
    assert parse_fake_groups("h100:8") == (parse_fake("h100:8"),)


@pytest.mark.parametrize(
    ("text", "message"),
    [("h100:8,h100:4", "given twice"), ("", "at least one"), ("h100:8,nope:2", "nope"),
     ("h100:99", "1 to 64")],
)  # fmt: skip
def test_bad_groups_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_fake_groups(text)


def test_declared_speeds_follow_the_catalogs_bf16_figures() -> None:
    assert fake_speed("h100") == 1.0
    slower = fake_speed("a100-80g")
    assert 0.2 < slower < 0.5  # 312 / 989 dense BF16 TFLOP/s
