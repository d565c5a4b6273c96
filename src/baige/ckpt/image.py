"""The in-memory image of one save: a safetensors buffer (plain tensors first, then this
rank's DTensor chunks) followed by the pickled skeleton.

Planning the image is separate from copying it so the size is known before a slot is
claimed, and so tests can build exactly what a trainer would put in shared memory.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from baige.ckpt.flatten import Leaf, dtype_code, flatten
from baige.ckpt.hostcopy import SlotView, copy_tensors
from baige.ckpt.persist import DTENSORS_KEY
from baige.ckpt.safetensors_format import TensorEntry, encode_header, layout

__all__ = ["ImagePlan", "plan_image", "write_image"]


@dataclass(frozen=True)
class ImagePlan:
    header: bytes
    entries: list[TensorEntry]
    tensors: list[torch.Tensor]  # tensors[i] goes where entries[i] says
    skeleton: Any

    @property
    def image_len(self) -> int:
        return len(self.header) + max((e.end for e in self.entries), default=0)

    @property
    def on_cuda(self) -> bool:
        return any(t.device.type == "cuda" for t in self.tensors)


def plan_image(state: Mapping[str, Any], step: int, rank: int) -> ImagePlan:
    skeleton, leaves = flatten(state)
    plain = [leaf for leaf in leaves if leaf.dtensor is None]
    sharded = [leaf for leaf in leaves if leaf.dtensor is not None]
    entries = _entries(plain, 0)
    entries += _entries(sharded, max((e.end for e in entries), default=0))
    by_key = {leaf.key: leaf.tensor for leaf in leaves}
    meta = {"format": "baige-ckpt", "step": str(step), "rank": str(rank)}
    dmeta = {
        leaf.key: {
            "fqn": leaf.dtensor.fqn,
            "path": list(leaf.dtensor.path),
            "global_shape": list(leaf.dtensor.global_shape),
            "offsets": list(leaf.dtensor.offsets),
            "persist": leaf.dtensor.persist,
        }
        for leaf in sharded
        if leaf.dtensor is not None
    }
    if dmeta:
        meta[DTENSORS_KEY] = json.dumps(dmeta)
    header = encode_header(entries, meta)
    return ImagePlan(header, entries, [by_key[e.key] for e in entries], skeleton)


def write_image(plan: ImagePlan, view: SlotView) -> None:
    """Copy the header and every tensor into the slot (the blocking part of a save)."""
    view.u8[: len(plan.header)].copy_(torch.frombuffer(bytearray(plan.header), dtype=torch.uint8))
    copy_tensors(view, len(plan.header), plan.entries, plan.tensors)


def _entries(leaves: list[Leaf], start: int) -> list[TensorEntry]:
    specs = [(leaf.key, dtype_code(leaf.tensor.dtype, leaf.key), tuple(leaf.tensor.shape))
             for leaf in leaves]  # fmt: skip
    return [
        TensorEntry(e.key, e.dtype, e.shape, e.start + start, e.end + start) for e in layout(specs)
    ]
