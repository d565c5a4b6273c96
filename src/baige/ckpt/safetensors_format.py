"""The safetensors container, written and read without the safetensors package.

A shard is a safetensors file: 8 bytes of little-endian header length, a JSON header, then
the tensors' bytes back to back. Writing it ourselves lets the trainer lay tensors straight
into shared memory and the persister stream that memory to disk with no re-encoding, while
the file stays readable by ``safetensors.torch.load_file`` and any other safetensors reader.

This module imports neither torch nor numpy: the persister process uses it, and stays small.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from baige.ckpt.errors import CorruptCheckpoint

__all__ = [
    "ALIGN",
    "DTYPE_CODES",
    "ITEMSIZE",
    "TensorEntry",
    "encode_header",
    "layout",
    "parse_header",
]

# torch dtype name (``str(dtype)`` without "torch.") -> safetensors dtype code.
DTYPE_CODES: dict[str, str] = {
    "float64": "F64",
    "float32": "F32",
    "float16": "F16",
    "bfloat16": "BF16",
    "int64": "I64",
    "int32": "I32",
    "int16": "I16",
    "int8": "I8",
    "uint8": "U8",
    "uint16": "U16",
    "uint32": "U32",
    "uint64": "U64",
    "bool": "BOOL",
    "float8_e4m3fn": "F8_E4M3",
    "float8_e5m2": "F8_E5M2",
}
ITEMSIZE: dict[str, int] = {
    "F64": 8,
    "I64": 8,
    "U64": 8,
    "F32": 4,
    "I32": 4,
    "U32": 4,
    "F16": 2,
    "BF16": 2,
    "I16": 2,
    "U16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
}
# The data section starts on this boundary so every tensor can be viewed in place.
ALIGN = 64
_MAX_HEADER = 100_000_000  # the safetensors package's own limit


@dataclass(frozen=True)
class TensorEntry:
    """One tensor in a safetensors buffer: ``start``/``end`` are relative to the data section."""

    key: str
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start


def layout(specs: Sequence[tuple[str, str, tuple[int, ...]]]) -> list[TensorEntry]:
    """Place tensors back to back, widest element first, so each offset is a multiple of its
    element size (the file has no holes, as the format requires, yet stays aligned)."""
    order = sorted(range(len(specs)), key=lambda i: -ITEMSIZE[specs[i][1]])
    entries: list[TensorEntry] = []
    offset = 0
    for i in order:
        key, dtype, shape = specs[i]
        nbytes = math.prod(shape) * ITEMSIZE[dtype]
        entries.append(TensorEntry(key, dtype, tuple(shape), offset, offset + nbytes))
        offset += nbytes
    return entries


def encode_header(entries: Sequence[TensorEntry], metadata: Mapping[str, str]) -> bytes:
    """The 8-byte length and the JSON header, padded with spaces to end on ``ALIGN``."""
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    for e in entries:
        header[e.key] = {"dtype": e.dtype, "shape": list(e.shape), "data_offsets": [e.start, e.end]}
    body = json.dumps(header, separators=(",", ":")).encode()
    padded = -(-(8 + len(body)) // ALIGN) * ALIGN - 8
    return struct.pack("<Q", padded) + body + b" " * (padded - len(body))


def parse_header(
    prefix: bytes | memoryview, size: int, name: str
) -> tuple[list[TensorEntry], dict[str, str], int]:
    """Validate a safetensors header; return its entries (in offset order), its metadata and
    where the data section starts. ``prefix`` holds at least the header, ``size`` is the whole
    buffer's length, ``name`` names it in errors. Rejects holes, overlaps, unknown dtypes and
    sizes that disagree with shapes, so a truncated or garbled file never loads."""
    if size < 8 or len(prefix) < 8:
        raise CorruptCheckpoint(f"{name}: {size} bytes, too short for a safetensors header")
    (hlen,) = struct.unpack("<Q", bytes(prefix[:8]))
    if hlen > _MAX_HEADER or 8 + hlen > size:
        raise CorruptCheckpoint(f"{name}: header length {hlen} does not fit in {size} bytes")
    if len(prefix) < 8 + hlen:
        raise CorruptCheckpoint(f"{name}: header of {hlen} bytes not fully read")
    try:
        raw = json.loads(bytes(prefix[8 : 8 + hlen]))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptCheckpoint(f"{name}: header is not JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise CorruptCheckpoint(f"{name}: header is not a JSON object")
    meta_raw = raw.pop("__metadata__", {})
    if not isinstance(meta_raw, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in meta_raw.items()
    ):
        raise CorruptCheckpoint(f"{name}: __metadata__ must map strings to strings")
    entries = [_entry(name, key, value) for key, value in raw.items()]
    entries.sort(key=lambda e: (e.start, e.end))
    data_start = 8 + hlen
    offset = 0
    for e in entries:
        if e.start != offset:
            raise CorruptCheckpoint(
                f"{name}: tensor {e.key!r} starts at {e.start}, expected {offset} (hole/overlap)"
            )
        offset = e.end
    if data_start + offset != size:
        raise CorruptCheckpoint(
            f"{name}: tensors end at byte {data_start + offset} but the buffer holds {size}"
        )
    return entries, dict(meta_raw), data_start


def _entry(name: str, key: str, value: object) -> TensorEntry:
    if not isinstance(value, dict):
        raise CorruptCheckpoint(f"{name}: entry {key!r} is not an object")
    dtype = value.get("dtype")
    shape = value.get("shape")
    offsets = value.get("data_offsets")
    if dtype not in ITEMSIZE:
        raise CorruptCheckpoint(f"{name}: tensor {key!r}: unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise CorruptCheckpoint(f"{name}: tensor {key!r}: bad shape {shape!r}")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) for o in offsets)
        or not 0 <= offsets[0] <= offsets[1]
    ):
        raise CorruptCheckpoint(f"{name}: tensor {key!r}: bad data_offsets {offsets!r}")
    entry = TensorEntry(key, str(dtype), tuple(shape), offsets[0], offsets[1])
    if entry.nbytes != math.prod(entry.shape) * ITEMSIZE[entry.dtype]:
        raise CorruptCheckpoint(
            f"{name}: tensor {key!r}: {entry.nbytes} bytes for shape {list(shape)} of {dtype}"
        )
    return entry
