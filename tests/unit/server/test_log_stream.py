"""Log reading that stays bounded: tail seeks from the end, labels survive chunk borders,
and the follow limit counts each stream once."""

from __future__ import annotations

from pathlib import Path

import pytest

from baige.control.auth import Principal
from baige.server.log_stream import FollowLimit, TooManyFollowers, _label, tail_offset


@pytest.mark.parametrize(
    ("text", "lines", "expected"),
    [
        (b"a\nb\nc\n", 2, b"b\nc\n"),
        (b"a\nb\nc", 2, b"b\nc"),
        (b"a\nb\nc\n", 5, b"a\nb\nc\n"),
        (b"", 3, b""),
        (b"only\n", 1, b"only\n"),
    ],
)
def test_tail_offset_finds_the_last_lines(tmp_path: Path, text: bytes, lines: int,
                                          expected: bytes) -> None:  # fmt: skip
    path = tmp_path / "log"
    path.write_bytes(text)
    assert text[tail_offset(path, lines) :] == expected


def test_tail_of_a_large_file_reads_only_its_end(tmp_path: Path) -> None:
    path = tmp_path / "log"
    with open(path, "wb") as handle:
        for i in range(200_000):
            handle.write(b"line %d\n" % i)
    start = tail_offset(path, 3)
    assert path.read_bytes()[start:] == b"line 199997\nline 199998\nline 199999\n"


def test_labels_follow_line_starts_across_chunks() -> None:
    first, at_start = _label(b"one\ntw", b"[r0] ", True)
    second, _ = _label(b"o\nthree\n", b"[r0] ", at_start)
    assert first + second == b"[r0] one\n[r0] two\n[r0] three\n"


def test_the_follow_limit_counts_each_stream_once() -> None:
    limit = FollowLimit(per_caller=2)
    alice, bob = Principal("alice", "a", admin=False), Principal("bob", "b", admin=False)
    first = limit.acquire(alice)
    limit.acquire(alice)
    with pytest.raises(TooManyFollowers):
        limit.acquire(alice)
    limit.acquire(bob)  # another caller is not affected
    first()
    first()  # released twice (stream end and response clean-up): counted once
    assert limit.open_streams(alice) == 1
    limit.acquire(alice)
    assert limit.open_streams(alice) == 2


def test_tail_of_output_without_line_breaks_is_one_bounded_read(tmp_path: Path) -> None:
    path = tmp_path / "log"
    path.write_bytes(b"x" * (20 << 20))  # 20 MiB, no newline
    start = tail_offset(path, 5)
    assert (20 << 20) - start <= 4 << 20  # at most the last 4 MiB
