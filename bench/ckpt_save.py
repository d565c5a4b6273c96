"""Benchmark: what a flash checkpoint costs the training step, on this machine's CPU.

For each state size (default 0.5, 1 and 2 GB of fp32 tensors, shaped like a model plus
Adam's two moments) it prints the median of several rounds (after a warm-up round that is
not counted; in each round every method runs once, in a rotating order) of:

* ``save()`` blocking time — what the training step waits for;
* the memory-copy lower bound: the same tensors copied into one preallocated, pre-touched
  buffer with the same ``Tensor.copy_`` (the least a save into host memory can cost);
* ``torch.save`` of the same state to local disk (page cache, no fsync: the optimistic
  baseline most training scripts use);
* ``torch.distributed.checkpoint.async_save``'s blocking portion (single-rank gloo group);
* the time the persister takes to get a save onto disk (fsync'd, committed);
* restore from shared memory and from disk (``load()``, checksums verified);
* host memory (Shmem, MemAvailable, trainer and persister RSS) across 20 consecutive saves.

Each size runs in a fresh process so one size's allocations do not colour the next. Targets
(issue "Flash checkpoints"): ``save()`` ≤ 1.5× the copy bound and ≥ 10× faster than
``torch.save``; memory flat across saves. Never a timed assertion in tests.

    python bench/ckpt_save.py [--sizes 0.5 1 2] [--repeat 5] [--disk DIR]
    python bench/ckpt_save.py --quick   # a smoke run (the tests run it)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp

from baige.ckpt import Checkpointer

GB = 1e9
SHM = Path("/dev/shm")


def meminfo() -> dict[str, int]:
    out = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, value = line.split(":", 1)
        out[key] = int(value.split()[0]) * 1024
    return out


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def make_state(nbytes: float) -> dict[str, Any]:
    """Parameters and two Adam moments in 16 MiB tensors, plus the small things a real
    training state carries."""
    numel_total = int(nbytes / 4 / 3)
    per = 4 << 20  # 4 Mi floats = 16 MiB
    shapes = [per] * (numel_total // per) + ([numel_total % per] if numel_total % per else [])
    params = {f"layers.{i}.weight": torch.randn(n) for i, n in enumerate(shapes)}
    state = {
        i: {"step": torch.tensor(10.0), "exp_avg": torch.randn(n), "exp_avg_sq": torch.rand(n)}
        for i, n in enumerate(shapes)
    }
    return {
        "model": params,
        "optimizer": {"state": state, "param_groups": [{"lr": 1e-4, "params": list(state)}]},
        "data": {"epoch": 1, "position": 123_456},
    }


def tensors_of(state: Any) -> list[Any]:
    if isinstance(state, torch.Tensor):
        return [state]
    if isinstance(state, dict):
        return [t for v in state.values() for t in tensors_of(v)]
    if isinstance(state, list | tuple):
        return [t for v in state for t in tensors_of(v)]
    return []


def median_of(fn: Callable[[], float], repeat: int) -> tuple[float, list[float]]:
    runs = [fn() for _ in range(repeat)]
    return statistics.median(runs), runs


def one_size(size_gb: float, repeat: int, disk: Path, memory_saves: int = 20) -> dict[str, Any]:
    nbytes = size_gb * GB
    need_shm = 2 * nbytes * 1.01
    free_shm = shutil.disk_usage(SHM).free
    avail = meminfo()["MemAvailable"]
    if need_shm > free_shm or 3 * nbytes > avail:
        return {
            "size_gb": size_gb,
            "skipped": f"needs {need_shm / GB:.1f} GB of /dev/shm (free {free_shm / GB:.1f}) and "
            f"~{3 * nbytes / GB:.1f} GB of memory (available {avail / GB:.1f})",
        }
    state = make_state(nbytes)
    tensors = tensors_of(state)
    total = sum(t.numel() * t.element_size() for t in tensors)
    result: dict[str, Any] = {"size_gb": size_gb, "bytes": total, "tensors": len(tensors)}

    # 1. The baselines: torch.save to local disk (page cache, no fsync) and DCP
    # async_save's blocking portion (it stages a CPU copy, then writes in a thread).
    target = disk / "torch_save.pt"

    def torch_save() -> float:
        t0 = time.perf_counter()
        torch.save(state, target)
        elapsed = time.perf_counter() - t0
        target.unlink()
        return elapsed

    if not dist.is_initialized():
        store = dist.FileStore(str(disk / "store"), 1)
        dist.init_process_group("gloo", store=store, rank=0, world_size=1)

    def dcp_async() -> float:
        folder = disk / "dcp"
        t0 = time.perf_counter()
        future = dcp.async_save(state, checkpoint_id=str(folder))
        blocked = time.perf_counter() - t0
        future.result()
        shutil.rmtree(folder)
        return blocked

    # 2. Baige's save() and the memory-copy lower bound (the same copies into one
    # preallocated, pre-touched buffer).
    buffer = torch.empty(total, dtype=torch.uint8)
    buffer.fill_(0)
    views, offset = [], 0
    for t in tensors:
        n = t.numel() * t.element_size()
        views.append(buffer[offset : offset + n].view(t.dtype).view(t.shape))
        offset += n

    def copy_bound() -> float:
        t0 = time.perf_counter()
        for dst, src in zip(views, tensors, strict=True):
            dst.copy_(src)
        return time.perf_counter() - t0

    ckdir = disk / "baige"
    shm = Path(tempfile.mkdtemp(prefix="baige-bench-", dir=SHM))
    ck = Checkpointer(ckdir, shm_dir=shm, keep=1)
    first = ck.save(0, state)  # reserves both slots, faults in the first one's pages
    ck.wait()
    second = ck.save(1, state)  # faults in the second slot's pages
    ck.wait()
    result["first_save_s"], result["second_save_s"] = first.blocked_s, second.blocked_s
    bounds: list[float] = []
    saves: list[float] = []
    persists: list[float] = []
    torch_saves: list[float] = []
    dcp_blocks: list[float] = []
    next_step = 2

    def baige_save() -> None:
        nonlocal next_step
        stats = ck.save(next_step, state)  # the persister is idle: the previous save is on disk
        t0 = time.perf_counter()
        ck.wait()
        saves.append(stats.blocked_s)
        persists.append(time.perf_counter() - t0)
        assert stats.waited_s == 0.0, stats  # never waited for the persister
        next_step += 1

    # Interleaved rounds after a warm-up round that is not counted, in a rotating order, so
    # every method sees the same machine (it is shared and noisy) and no method's first,
    # cold run is its median.
    methods: list[Callable[[], None]] = [
        lambda: bounds.append(copy_bound()),
        baige_save,
        lambda: torch_saves.append(torch_save()),
        lambda: dcp_blocks.append(dcp_async()),
    ]
    for r in range(repeat + 1):
        k = r % len(methods)
        for fn in methods[k:] + methods[:k]:
            fn()
            os.sync()  # one method's dirty page cache is not the next one's to write back
        if r == 0:
            for runs in (bounds, saves, persists, torch_saves, dcp_blocks):
                runs.clear()
    views.clear()
    del buffer
    result["torch_save_s"], result["torch_save_runs"] = statistics.median(torch_saves), torch_saves
    result["dcp_async_blocking_s"], result["dcp_async_runs"] = (
        statistics.median(dcp_blocks), dcp_blocks
    )  # fmt: skip
    result["copy_bound_s"], result["copy_bound_runs"] = statistics.median(bounds), bounds
    result["save_s"], result["save_runs"] = statistics.median(saves), saves
    result["persist_s"], result["persist_runs"] = statistics.median(persists), persists
    result["torch_save_ratio_runs"] = [a / b for a, b in zip(torch_saves, saves, strict=True)]

    # 4. Restore from memory (this node's shared memory) and from disk (fresh shm root).
    def restore_memory() -> float:
        t0 = time.perf_counter()
        restored = ck.load()
        elapsed = time.perf_counter() - t0
        assert restored is not None and restored.source == "memory"
        return elapsed

    restore_memory()  # warm-up
    result["restore_memory_s"], _ = median_of(restore_memory, repeat)
    other = Path(tempfile.mkdtemp(prefix="baige-bench-disk-", dir=SHM))
    with Checkpointer(ckdir, shm_dir=other) as from_disk:

        def restore_disk() -> float:
            t0 = time.perf_counter()
            restored = from_disk.load()
            elapsed = time.perf_counter() - t0
            assert restored is not None and restored.source == "disk"
            return elapsed

        restore_disk()  # warm-up (the page cache holds the newest step: it was just written)
        result["restore_disk_s"], _ = median_of(restore_disk, repeat)
    other.rmdir()

    # 5. Host memory across 20 consecutive saves (each waits for the previous persist, as a
    # job whose checkpoint interval exceeds the persist time does).
    persister = int(next(shm.glob("*/r00000.pid")).read_text())
    memory = []
    for step in range(100, 100 + memory_saves):
        ck.save(step, state)
        ck.wait()
        info = meminfo()
        memory.append(
            {
                "shmem": info["Shmem"],
                "available": info["MemAvailable"],
                "trainer_rss": rss(os.getpid()),
                "persister_rss": rss(persister),
            }
        )
    result["memory"] = memory
    ck.close()
    if shm.exists():
        shm.rmdir()
    shutil.rmtree(ckdir, ignore_errors=True)
    return result


def report(r: dict[str, Any]) -> None:
    size = r["size_gb"]
    if "skipped" in r:
        print(f"\n{size:g} GB: not run — {r['skipped']}")
        return
    gbs = r["bytes"] / GB
    print(f"\n{size:g} GB state ({r['bytes'] / GB:.2f} GB in {r['tensors']} tensors)")
    rows = [
        ("save() blocking", r["save_s"]),
        ("memory-copy bound", r["copy_bound_s"]),
        ("torch.save to disk", r["torch_save_s"]),
        ("DCP async_save blocking", r["dcp_async_blocking_s"]),
        ("persist (save -> on disk)", r["persist_s"]),
        ("restore from memory", r["restore_memory_s"]),
        ("restore from disk", r["restore_disk_s"]),
        ("first save (reserves slots)", r["first_save_s"]),
        ("second save (other slot)", r["second_save_s"]),
    ]
    for name, seconds in rows:
        print(f"  {name:<30} {seconds:8.3f} s  {gbs / seconds:7.2f} GB/s")
    save = r["save_s"]
    best = min(r["save_runs"]) / min(r["copy_bound_runs"])
    print(f"  save / copy bound              {save / r['copy_bound_s']:8.2f} x  (target <= 1.5; "
          f"best runs {best:.2f} x)")  # fmt: skip
    ratios = r["torch_save_ratio_runs"]
    lo, hi = min(ratios), max(ratios)
    print(f"  torch.save / save              {r['torch_save_s'] / save:8.1f} x  (per-round "
          f"median {statistics.median(ratios):.1f} x, {lo:.1f}..{hi:.1f})")  # fmt: skip
    print(f"  DCP async_save blocking / save {r['dcp_async_blocking_s'] / save:8.1f} x")
    mem = r["memory"]

    def span(key: str) -> str:
        values = [m[key] for m in mem]
        return f"{values[0] / GB:6.2f} -> {values[-1] / GB:6.2f} GB (max {max(values) / GB:.2f})"

    print(f"  {len(mem)} saves: Shmem        {span('shmem')}")
    print(f"            trainer RSS  {span('trainer_rss')}")
    print(f"            persister RSS {span('persister_rss')}")
    print(f"            MemAvailable {span('available')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[0.5, 1, 2])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--disk", type=Path, default=None, help="local disk folder (default: a temp dir)"
    )
    parser.add_argument("--one", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="print raw results as JSON too")
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: 0.02 GB, 2 rounds, 3 memory saves"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: one thread already saturates memory bandwidth here, "
        "and spinning OpenMP threads make every copy erratic on a shared 2-core machine)",
    )
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.repeat = [0.02], 2
    if args.repeat < 1:
        parser.error(f"--repeat must be >= 1, got {args.repeat}")
    torch.set_num_threads(args.threads)
    if args.one is not None:
        disk = Path(tempfile.mkdtemp(prefix="baige-bench-", dir=args.disk))
        try:
            print(json.dumps(one_size(args.one, args.repeat, disk, 3 if args.quick else 20)))
        finally:
            shutil.rmtree(disk, ignore_errors=True)
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} torch thread(s), "
          f"{os.cpu_count()} CPUs; /dev/shm free {shutil.disk_usage(SHM).free / GB:.1f} GB, "
          f"MemAvailable {meminfo()['MemAvailable'] / GB:.1f} GB")  # fmt: skip
    results = []
    failed = False
    for size in args.sizes:
        cmd = [sys.executable, __file__, "--one", str(size), "--repeat", str(args.repeat)]
        cmd += ["--threads", str(args.threads), *(["--quick"] if args.quick else [])]
        if args.disk:
            cmd += ["--disk", str(args.disk)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            print(f"\n{size:g} GB: failed (exit {proc.returncode})\n{proc.stderr[-2000:]}")
            failed = True
            continue
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(result)
        report(result)
    if args.json:
        print(json.dumps(results, indent=1))
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
