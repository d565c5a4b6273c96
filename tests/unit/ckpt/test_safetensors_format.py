"""The safetensors container Baige writes by hand: aligned layout, header round trip, and
every malformed header rejected with the file and tensor named."""

from __future__ import annotations

import json
import struct

import pytest

from baige.ckpt.errors import CorruptCheckpoint
from baige.ckpt.safetensors_format import ALIGN, ITEMSIZE, encode_header, layout, parse_header


def test_layout_is_contiguous_and_each_tensor_aligned_to_its_element_size() -> None:
    specs = [("a", "U8", (3,)), ("b", "F32", (2, 2)), ("c", "BF16", (5,)), ("d", "F64", ())]
    entries = layout(specs)
    assert [e.key for e in entries] == ["d", "b", "c", "a"]  # widest first
    offset = 0
    for e in entries:
        assert e.start == offset and e.start % ITEMSIZE[e.dtype] == 0
        offset = e.end
    assert offset == 8 + 16 + 10 + 3


def test_header_round_trips_and_data_starts_aligned() -> None:
    entries = layout([("w", "F32", (2, 3)), ("s", "I64", ())])
    header = encode_header(entries, {"step": "5"})
    assert len(header) % ALIGN == 0
    size = len(header) + entries[-1].end
    got, meta, start = parse_header(header, size, "f")
    assert start == len(header)
    assert meta == {"step": "5"}
    assert got == sorted(entries, key=lambda e: e.start)


def _file(header: dict[str, object], data: int) -> tuple[bytes, int]:
    body = json.dumps(header).encode()
    return struct.pack("<Q", len(body)) + body, 8 + len(body) + data


BAD = [
    ({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, 4, "tensors end at byte"),
    ({"x": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, 12, "starts at 4, expected 0"),
    ({"x": {"dtype": "C64", "shape": [2], "data_offsets": [0, 16]}}, 16, "unknown dtype 'C64'"),
    ({"x": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, 8, "8 bytes for shape [3]"),
    ({"x": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 0]}}, 0, "bad shape"),
    ({"x": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}, 0, "bad data_offsets"),
    ({"x": [1, 2]}, 0, "entry 'x' is not an object"),
    ({"__metadata__": {"a": 1}}, 0, "__metadata__ must map strings to strings"),
]


@pytest.mark.parametrize(("header", "data", "message"), BAD)
def test_malformed_headers_are_rejected(header: dict[str, object], data: int, message: str) -> None:
    raw, size = _file(header, data)
    with pytest.raises(CorruptCheckpoint, match=r"^shard\.st: ") as err:
        parse_header(raw, size, "shard.st")
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("raw", "size", "message"),
    [
        (b"\x01\x00", 2, "too short"),
        (struct.pack("<Q", 1000) + b"{}", 10, "does not fit"),
        (struct.pack("<Q", 3) + b"{x}", 11, "not JSON"),
        (struct.pack("<Q", 2) + b"[]", 10, "not a JSON object"),
    ],
)
def test_truncated_or_garbled_headers_are_rejected(raw: bytes, size: int, message: str) -> None:
    with pytest.raises(CorruptCheckpoint, match=message):
        parse_header(raw, size, "f")


def test_the_safetensors_package_reads_what_we_write(tmp_path) -> None:
    torch = pytest.importorskip("torch")
    st = pytest.importorskip("safetensors.torch")
    from baige.ckpt.flatten import dtype_code  # noqa: PLC0415 - needs torch

    tensors = {
        "a": torch.arange(6, dtype=torch.float32).reshape(2, 3),
        "b": torch.tensor([True, False]),
        "c": torch.randn(3).to(torch.bfloat16),
        "d": torch.tensor(7, dtype=torch.int64),
        "e": torch.zeros(0, 2, dtype=torch.float16),
    }
    entries = layout([(k, dtype_code(v.dtype, k), tuple(v.shape)) for k, v in tensors.items()])
    data = bytearray(entries[-1].end)
    for e in entries:
        data[e.start : e.end] = (
            tensors[e.key].contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        )
    path = tmp_path / "x.safetensors"
    path.write_bytes(encode_header(entries, {"step": "1"}) + bytes(data))
    got = st.load_file(path)
    assert sorted(got) == sorted(tensors)
    for k, v in tensors.items():
        assert torch.equal(got[k], v), k
