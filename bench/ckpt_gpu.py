"""Benchmark: how long ``Checkpointer.save()`` blocks for a state that lives on a GPU.

A GPU state reaches host shared memory through pinned memory (the slot is page-locked with
``cudaHostRegister``, so the device-to-host copies land in place at full link speed). This
prints, for each size, the median of several runs of:

* ``save()`` blocking time and its GB/s;
* the pinned-copy bound: the same tensors copied into one preallocated pinned buffer with
  ``non_blocking=True`` and one synchronize (the fastest device-to-host copy there is);
* the pageable copy: ``tensor.cpu()`` for each tensor (what a naive save does).

On a machine without CUDA it prints a clear "no CUDA here" line and exits 0.
Never a timed assertion in tests.

    python bench/ckpt_gpu.py [--sizes 1 4] [--repeat 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from baige.ckpt import Checkpointer

GB = 1e9


def gpu_state(nbytes: float) -> dict[str, torch.Tensor]:
    per = 4 << 20  # 16 MiB fp32 tensors
    count = max(1, int(nbytes / 4 / per))
    return {f"layers.{i}.weight": torch.randn(per, device="cuda") for i in range(count)}


def timed(fn: Callable[[], None], repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def one(size_gb: float, repeat: int) -> None:
    state = gpu_state(size_gb * GB)
    tensors = list(state.values())
    total = sum(t.numel() * t.element_size() for t in tensors)
    pinned = torch.empty(total, dtype=torch.uint8, pin_memory=True)
    views, offset = [], 0
    for t in tensors:
        n = t.numel() * t.element_size()
        views.append(pinned[offset : offset + n].view(t.dtype))
        offset += n

    def pinned_copy() -> None:
        for dst, src in zip(views, tensors, strict=True):
            dst.copy_(src, non_blocking=True)

    def pageable_copy() -> None:
        for t in tensors:
            t.cpu()

    bound = timed(pinned_copy, repeat)
    pageable = timed(pageable_copy, max(2, repeat // 2))
    views.clear()
    del pinned

    disk = Path(tempfile.mkdtemp(prefix="baige-gpu-bench-"))
    shm = Path(tempfile.mkdtemp(prefix="baige-gpu-bench-", dir="/dev/shm"))
    try:
        ck = Checkpointer(disk, shm_dir=shm, keep=1)
        first = ck.save(0, state)
        ck.wait()
        saves = []
        for step in range(1, repeat + 1):
            saves.append(ck.save(step, state).blocked_s)
            ck.wait()
        ck.close()
    finally:
        shutil.rmtree(disk, ignore_errors=True)
        shutil.rmtree(shm, ignore_errors=True)
    save = statistics.median(saves)
    gbs = total / GB
    print(f"\n{gbs:.2f} GB on {torch.cuda.get_device_name()} ({len(tensors)} tensors)")
    print(f"  save() blocking        {save:7.3f} s  {gbs / save:6.1f} GB/s")
    print(f"  pinned-copy bound      {bound:7.3f} s  {gbs / bound:6.1f} GB/s")
    print(f"  pageable .cpu() copy   {pageable:7.3f} s  {gbs / pageable:6.1f} GB/s")
    print(f"  first save (reserves)  {first.blocked_s:7.3f} s")
    print(f"  save / pinned bound    {save / bound:7.2f} x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[1, 4])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print(
            f"no CUDA here (torch {torch.__version__}, cuda available: False): "
            "the GPU device-to-host benchmark needs an NVIDIA GPU; nothing measured"
        )
        return 0
    for size in args.sizes:
        one(size, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
