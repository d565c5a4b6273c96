"""Quantities people write, and queue trees whose quotas must nest."""

from __future__ import annotations

import pytest

from baige.api import (
    QueueQuota,
    QueueSpec,
    QueueTreeError,
    check_queue_tree,
    parse_cpu_milli,
    parse_duration_s,
    parse_memory_mib,
)


@pytest.mark.parametrize(
    ("value", "milli"), [(2, 2000), ("500m", 500), ("1.5", 1500), (0.25, 250), ("0", 0)]
)
def test_cpu(value, milli) -> None:
    assert parse_cpu_milli(value) == milli


@pytest.mark.parametrize(
    ("value", "mib"),
    [("512Mi", 512), ("64Gi", 65536), ("2Ti", 2 * 1024 * 1024), ("1G", 954), (1048576, 1)],
)
def test_memory(value, mib) -> None:
    assert parse_memory_mib(value) == mib


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(90, 90), ("45s", 45), ("30m", 1800), ("2h30m", 9000), ("1d12h", 129600), ("1.5h", 5400)],
)
def test_duration(value, seconds) -> None:
    assert parse_duration_s(value) == seconds


@pytest.mark.parametrize(
    ("parser", "value"),
    [
        (parse_cpu_milli, "lots"),
        (parse_cpu_milli, -1),
        (parse_cpu_milli, True),
        (parse_memory_mib, "12 bananas"),
        (parse_memory_mib, -5),
        (parse_duration_s, "2 weeks"),
        (parse_duration_s, "-3"),
        (parse_duration_s, [1]),
    ],
)
def test_bad_quantities(parser, value) -> None:
    with pytest.raises(ValueError, match=r"\w"):
        parser(value)


def q(name: str, parent: str | None = None, **quotas: QueueQuota) -> QueueSpec:
    return QueueSpec(name=name, parent=parent, quotas=quotas)


def test_a_valid_tree() -> None:
    check_queue_tree(
        [
            q("org", h100=QueueQuota(guaranteed=16, limit=32)),
            q("a", "org", h100=QueueQuota(guaranteed=8, limit=32)),
            q("b", "org", h100=QueueQuota(guaranteed=8)),
        ]
    )


@pytest.mark.parametrize(
    ("queues", "words"),
    [
        ([q("a", "ghost")], "parent 'ghost' does not exist"),
        ([q("a", "b"), q("b", "a")], "loops"),
        ([q("a"), q("a")], "defined twice"),
        (
            [
                q("org", h100=QueueQuota(guaranteed=8)),
                q("a", "org", h100=QueueQuota(guaranteed=6)),
                q("b", "org", h100=QueueQuota(guaranteed=6)),
            ],
            "add up to 12",
        ),
        (
            [q("org", h100=QueueQuota(limit=8)), q("a", "org", h100=QueueQuota(limit=16))],
            "exceeds parent 'org''s limit",
        ),
    ],
)
def test_invalid_trees(queues, words) -> None:
    with pytest.raises(QueueTreeError) as caught:
        check_queue_tree(queues)
    assert words in str(caught.value)
