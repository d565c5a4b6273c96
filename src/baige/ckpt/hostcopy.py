"""Copying tensors into a shared-memory slot: the only work a training step waits for.

CPU tensors are copied with ``Tensor.copy_`` straight into typed views of the slot (the
layout keeps every tensor aligned to its element size), so a save costs one memory copy.
GPU tensors are copied through pinned memory: the slot itself is page-locked with
``cudaHostRegister`` when CUDA allows it, so device-to-host copies run at full PCIe/NVLink
speed into their final place; otherwise through a pinned staging buffer.
"""

from __future__ import annotations

import logging
import mmap
from collections.abc import Sequence
from typing import Any

import torch

from baige.ckpt.safetensors_format import TensorEntry

__all__ = ["SlotView", "copy_tensors", "read_tensor"]

log = logging.getLogger("baige.ckpt")

_STAGE_BYTES = 64 << 20


class SlotView:
    """A uint8 tensor over a slot's mapping, pinned for CUDA when possible. Release it
    (``close``) before the mapping is closed or grown."""

    def __init__(self, mm: mmap.mmap, pin: bool) -> None:
        self.u8 = torch.frombuffer(mm, dtype=torch.uint8)
        self.pinned = False
        if pin and torch.cuda.is_available():
            cudart: Any = torch.cuda.cudart()  # type: ignore[no-untyped-call]
            err = cudart.cudaHostRegister(self.u8.data_ptr(), self.u8.numel(), 0)
            self.pinned = int(err) == 0
            if not self.pinned:
                log.warning("cudaHostRegister of the slot failed (%s); staging copies", err)

    def close(self) -> None:
        if self.pinned:
            cudart: Any = torch.cuda.cudart()  # type: ignore[no-untyped-call]
            cudart.cudaHostUnregister(self.u8.data_ptr())
            self.pinned = False
        del self.u8


def copy_tensors(
    view: SlotView, data_start: int, entries: Sequence[TensorEntry], tensors: Sequence[torch.Tensor]
) -> None:
    """Copy ``tensors[i]`` into the bytes ``entries[i]`` names; returns when all are in host
    memory (device copies are synchronised)."""
    stage: torch.Tensor | None = None
    devices: set[torch.device] = set()
    for entry, src in zip(entries, tensors, strict=True):
        if entry.nbytes == 0:
            continue
        lo = data_start + entry.start
        dst_u8 = view.u8[lo : lo + entry.nbytes]
        aligned = lo % src.element_size() == 0
        if src.device.type == "cpu":
            if aligned:
                dst_u8.view(src.dtype).view(src.shape).copy_(src)
            else:  # only after odd-sized byte tensors of another group: copy as bytes
                dst_u8.copy_(src.contiguous().reshape(-1).view(torch.uint8))
        elif src.device.type == "cuda" and view.pinned and aligned:
            dst_u8.view(src.dtype).view(src.shape).copy_(src, non_blocking=True)
            devices.add(src.device)
        else:
            if stage is None and src.device.type == "cuda":
                stage = torch.empty(_STAGE_BYTES, dtype=torch.uint8, pin_memory=True)
            _staged(dst_u8, src, stage)
    for device in devices:
        torch.cuda.synchronize(device)


def _staged(dst_u8: torch.Tensor, src: torch.Tensor, stage: torch.Tensor | None) -> None:
    flat = src.contiguous().reshape(-1).view(torch.uint8)
    if stage is None:  # another accelerator: let torch move it to the CPU
        dst_u8.copy_(flat.cpu())
        return
    for lo in range(0, flat.numel(), stage.numel()):
        n = min(stage.numel(), flat.numel() - lo)
        stage[:n].copy_(flat[lo : lo + n])
        dst_u8[lo : lo + n].copy_(stage[:n])


def read_tensor(
    buf: torch.Tensor, data_start: int, entry: TensorEntry, dtype: torch.dtype
) -> torch.Tensor:
    """A fresh CPU tensor with the bytes of ``entry`` (a copy: the slot will be reused)."""
    out = torch.empty(entry.shape, dtype=dtype)
    if entry.nbytes:
        lo = data_start + entry.start
        out.reshape(-1).view(torch.uint8).copy_(buf[lo : lo + entry.nbytes])
    return out
