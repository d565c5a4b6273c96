"""CRC-32 computed beside the copy, not after it.

Checking a checkpoint's bytes must not double the time it takes to read or write them.
Worker threads checksum each piece while the caller moves the next one (file reads and
writes and ``Tensor.copy_`` release the GIL), and the pieces' CRCs are joined with
``crc32_combine`` (zlib's algorithm: multiply by x^(8·len) modulo the CRC polynomial). A
restore or a persist then costs about the slower of the copy and the checksum, not their
sum. The CRC itself is the same CRC-32 as ``zlib.crc32`` (the manifest's, readable without
Baige), computed by ISA-L (``pip install isal``: about 15 GB/s with carry-less multiply)
when it is installed, else by zlib (about 2–4 GB/s per core here, which is slower than a
memory copy; ``CRC32_IMPL`` says which). No torch, no numpy: the persister uses it.
"""

from __future__ import annotations

import importlib
import os
import zlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import cast

__all__ = ["CRC32_IMPL", "CrcStream", "crc32", "crc32_combine"]


_Bytes = memoryview | bytes


def _fastest_crc32() -> tuple[Callable[[_Bytes, int], int], str]:
    try:  # an optional accelerator, so imported by name (mypy need not know it)
        fn = importlib.import_module("isal.isal_zlib").crc32
    except (ImportError, AttributeError):
        return zlib.crc32, "zlib"
    return cast(Callable[[_Bytes, int], int], fn), "isal"


_CRC32, CRC32_IMPL = _fastest_crc32()


def crc32(data: _Bytes, value: int = 0) -> int:
    """zlib's CRC-32 of ``data`` (continuing from ``value``), by the fastest implementation
    installed."""
    return _CRC32(data, value)


_POLY = 0xEDB88320


def _multmodp(a: int, b: int) -> int:
    """a·b modulo the CRC-32 polynomial (bit-reflected, as zlib's ``multmodp``)."""
    m = 1 << 31
    p = 0
    while True:
        if a & m:
            p ^= b
            if (a & (m - 1)) == 0:
                return p
        m >>= 1
        b = (b >> 1) ^ _POLY if b & 1 else b >> 1


def _x2n_table() -> list[int]:
    p = 1 << 30  # x^1
    table = [p]
    for _ in range(1, 32):
        p = _multmodp(p, p)
        table.append(p)
    return table


_X2N = _x2n_table()


def _x2nmodp(n: int, k: int) -> int:
    """x^(n·2^k) modulo the polynomial."""
    p = 1 << 31  # x^0
    while n:
        if n & 1:
            p = _multmodp(_X2N[k & 31], p)
        n >>= 1
        k += 1
    return p


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """The CRC-32 of A+B from crc32(A), crc32(B) and len(B), as zlib's ``crc32_combine``."""
    if len2 <= 0:
        return crc1
    return _multmodp(_x2nmodp(len2, 3), crc1) ^ crc2


def _workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))


class CrcStream:
    """Feed buffers in order; ``value()`` waits for them and returns the CRC-32 of their
    concatenation. A fed buffer must not change until ``value()`` returns."""

    def __init__(self, start: int = 0, workers: int | None = None) -> None:
        self._start = start
        self._pool = ThreadPoolExecutor(workers or _workers(), thread_name_prefix="baige-crc32")
        self._parts: list[tuple[Future[int], int]] = []

    def feed(self, data: memoryview | bytes) -> None:
        if len(data):
            self._parts.append((self._pool.submit(_CRC32, data, 0), len(data)))

    def value(self) -> int:
        crc = self._start
        try:
            for future, length in self._parts:
                crc = crc32_combine(crc, future.result(), length)
        finally:
            self._parts.clear()
            self._pool.shutdown(wait=True)
        return crc

    def __enter__(self) -> CrcStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._parts.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)
