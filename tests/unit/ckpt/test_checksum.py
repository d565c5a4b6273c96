"""CRC-32 beside the copy: the pieces' CRCs, combined, are zlib's CRC of the whole."""

from __future__ import annotations

import os
import zlib

import pytest

from baige.ckpt import checksum
from baige.ckpt.checksum import CrcStream, crc32_combine

# (name, first part, second part)
COMBINE_CASES = {
    "empty second part": (b"abc", b""),
    "empty first part": (b"", b"xyz"),
    "one byte each": (b"\x00", b"\xff"),
    "odd lengths": (os.urandom(1001), os.urandom(77_777)),
    "large second part": (os.urandom(13), os.urandom(3 << 20)),
}


@pytest.mark.parametrize(("a", "b"), COMBINE_CASES.values(), ids=COMBINE_CASES.keys())
def test_crc32_combine_matches_zlib(a: bytes, b: bytes) -> None:
    assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)


@pytest.mark.parametrize("workers", [1, 2, 4])
@pytest.mark.parametrize(("piece", "size"), [(1, 3_000), (4096, 1_000_000), (100_003, 1_000_000)])
def test_stream_of_pieces_is_the_crc_of_their_concatenation(
    workers: int, piece: int, size: int
) -> None:
    data = os.urandom(size)  # one-byte pieces: few of them (each is a future and a combine)
    start = zlib.crc32(b"header")
    stream = CrcStream(start, workers=workers)
    view = memoryview(data)
    for lo in range(0, len(data), piece):
        stream.feed(view[lo : lo + piece])
    stream.feed(b"")  # empty pieces are ignored
    assert stream.value() == zlib.crc32(data, start)


def test_a_stream_fed_nothing_returns_its_start() -> None:
    with CrcStream(12345) as stream:
        assert stream.value() == 12345


def test_the_accelerated_crc_is_zlibs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whichever implementation is installed (ISA-L or zlib), the value is zlib's CRC-32,
    the one the manifest records; the stream gives the same with zlib forced."""
    data = os.urandom(300_001)
    assert checksum.crc32(data) == zlib.crc32(data)
    assert checksum.crc32(memoryview(data)[7:], 99) == zlib.crc32(data[7:], 99)
    monkeypatch.setattr(checksum, "_CRC32", zlib.crc32)
    stream = CrcStream()
    stream.feed(memoryview(data)[:1000])
    stream.feed(memoryview(data)[1000:])
    assert stream.value() == zlib.crc32(data)
