"""The byte copies of a save and a restore: contiguous CPU tensors go through libc's memcpy,
everything else through ``Tensor.copy_``; both must land every byte where the layout says,
whatever the tensor's strides, offset, dtype or size."""

from __future__ import annotations

import mmap
import os
import pickle
import zlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch", reason="baige.ckpt needs torch: pip install 'baige[train]'")

from baige.ckpt.control import SlotRecord  # noqa: E402
from baige.ckpt.errors import CorruptCheckpoint  # noqa: E402
from baige.ckpt.flatten import tensor_leaves, unflatten  # noqa: E402
from baige.ckpt.hostcopy import SlotView, copy_bytes, is_flat, prefault  # noqa: E402
from baige.ckpt.image import plan_image, write_image  # noqa: E402
from baige.ckpt.restore import read_slot  # noqa: E402


def _slot(state: dict[str, Any]) -> tuple[mmap.mmap, SlotRecord]:
    plan = plan_image(state, 3, rank=0)
    pkl = pickle.dumps(plan.skeleton)
    mm = mmap.mmap(-1, plan.image_len + len(pkl))
    view = SlotView(mm, pin=False)
    write_image(plan, view)
    view.close()
    mm[plan.image_len :] = pkl
    rec = SlotRecord("ready", 1, 3, len(mm), plan.image_len, len(pkl))
    return mm, replace(rec, crc_image=zlib.crc32(mm[: plan.image_len]))


def _awkward() -> dict[str, Any]:
    base = torch.arange(4 * 6, dtype=torch.float64).reshape(4, 6)
    return {
        "transposed": base.t(),  # not contiguous: Tensor.copy_
        "offset": base.reshape(-1)[5:17],  # contiguous with a storage offset: memcpy
        "scalar": torch.tensor(2.5),
        "odd": torch.arange(7, dtype=torch.uint8),  # 7 bytes, then 2-byte tensors follow
        "bf16": torch.randn(5, 3).to(torch.bfloat16),
        "flags": torch.tensor([True, False, True]),
        "empty": torch.zeros(0, 4),
        "neg": torch.randn(3, 3).neg().detach(),
        "big": torch.randn(700_000),  # pieces of a fused restore end mid-tensor
        "param": torch.nn.Parameter(torch.randn(8, 8)),
    }


def test_every_layout_round_trips_bit_identical() -> None:
    state = _awkward()
    mm, rec = _slot(state)
    shard = read_slot(Path("unused"), rec, None, mapping=mm)
    back = unflatten(shard.skeleton, shard.tensors)
    for key, value in state.items():
        got = back[key]
        assert got.dtype == value.dtype and got.shape == value.shape, key
        assert torch.equal(got, value.detach()), key


def test_restore_into_a_template_uses_its_memory_and_checks_the_crc() -> None:
    state = _awkward()
    mm, rec = _slot(state)
    template = {k: torch.zeros_like(v) for k, v in state.items() if v.is_contiguous()}
    pointers = {k: t.data_ptr() for k, t in template.items()}
    shard = read_slot(Path("unused"), rec, tensor_leaves(template), mapping=mm)
    for key, target in template.items():
        assert shard.tensors[key] is target and target.data_ptr() == pointers[key], key
        assert torch.equal(target, state[key].detach()), key
    mm[rec.image_len - 2] ^= 0x10  # inside "big", past its first piece
    with pytest.raises(CorruptCheckpoint, match="CRC-32"):
        read_slot(Path("unused"), rec, tensor_leaves(template), mapping=mm)


def test_only_dense_cpu_tensors_are_copied_as_raw_bytes() -> None:
    dense = torch.arange(12.0)
    assert is_flat(dense) and is_flat(dense[3:9])
    assert not is_flat(dense.reshape(3, 4).t())
    assert not is_flat(torch.randn(2, 2, dtype=torch.complex64).conj())
    out = torch.zeros(6)
    copy_bytes(out.data_ptr(), dense[3:9].data_ptr(), 6 * 4)
    assert out.tolist() == [3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    copy_bytes(out.data_ptr(), dense.data_ptr(), 0)  # nothing to copy: untouched
    assert out[0].item() == 3.0


def _rss_anon() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no RssAnon in /proc/self/status")


@pytest.mark.skipif(
    tuple(int(x) for x in os.uname().release.split(".")[:2] if x.isdigit()) < (5, 14),
    reason="MADV_POPULATE_WRITE needs Linux 5.14",
)
def test_prefault_maps_a_new_tensors_pages_without_changing_it() -> None:
    fresh = torch.empty(64 << 20, dtype=torch.uint8)  # above glibc's mmap threshold: new pages
    before = _rss_anon()
    prefault(fresh)
    assert _rss_anon() - before > 48 << 20  # mapped at once, not on first touch
    fresh[:4] = torch.tensor([1, 2, 3, 4], dtype=torch.uint8)
    copy = torch.arange(256, dtype=torch.uint8).repeat(4096)
    prefault(copy)  # pages already in use: their bytes are left as they are
    assert torch.equal(copy, torch.arange(256, dtype=torch.uint8).repeat(4096))
    prefault(torch.empty(10))  # small: nothing to do
