"""Benchmark: Baige's flash checkpoint side by side with its peers, on this machine's CPU.

Peers: ``torch.save``/``torch.load``, ``torch.distributed.checkpoint`` (DCP: ``save``,
``async_save``, ``load``) and DLRover's flash checkpoint (``DdpCheckpointer``: memory save
with a saver process that persists, memory restore). DLRover is installed on first use
with ``pip install --no-deps --target`` into its own folder (``--dlrover-dir``), which the
measuring process puts on its path: torch is never touched. If that fails, its columns
are skipped with the reason.

The state is fp32 tensors of 64 MiB (parameters and two Adam moments) plus an
optimizer-like dict. Every size runs in a fresh process. In each round every method runs
once, in a rotating order, after one warm-up round that is not counted; the tables give
medians over rounds and, for Baige ÷ peer, the median of the per-round ratios (both sides
of a ratio ran in the same round, seconds apart, so a noisy neighbour spoils one round,
not a column).

What is measured (s = seconds, lower is better):

* save, blocking: what the training step waits for. ``copy`` is the bound: the same
  tensors copied into preallocated, touched memory.
* durable: from the call until the bytes are on disk and fsynced (Baige: ``save`` +
  ``wait``; DCP: ``dcp.save``; torch: ``torch.save`` + ``fsync``; DLRover: until its
  tracker file names the step — its saver writes with ``torch.save``, no fsync).
* restore from memory, into the state's existing tensors (what ``load_state_dict`` ends
  with): Baige ``load(template=...)`` copies straight from shared memory into them;
  DLRover's ``load_checkpoint`` returns views of its shared memory, which are then copied.
  ``copy`` is the bound. Also "fresh": ``load()`` returning new tensors (DLRover: views).
* restore from disk, warm (page cache) and cold (the files' pages dropped first with
  ``posix_fadvise(DONTNEED)``): ``torch.load`` and Baige ``load()`` return new tensors;
  DCP ``load`` and Baige ``load(template=...)`` fill existing ones. Baige verifies every
  CRC-32 on the way; the others verify nothing.

    python bench/ckpt_peers.py [--sizes 0.5 1 2] [--rounds 5] [--disk DIR] [--no-dlrover]
    python bench/ckpt_peers.py --quick --no-dlrover   # a smoke run (the tests run it)
"""

from __future__ import annotations

import argparse
import contextlib
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

GB = 1e9
SHM = Path("/dev/shm")
DLROVER_PKGS = ["dlrover", "psutil", "pynvml", "nvidia-ml-py", "deprecated", "wrapt", "grpcio"]
# what `dlrover-run` needs beside them: its local master imports the Kubernetes client and
# protobuf (installed in the same pip call, so the `google` namespace folders merge)
DLROVER_RUN_PKGS = [*DLROVER_PKGS, "kubernetes", "durationpy", "websocket-client",
                    "requests-oauthlib", "oauthlib", "protobuf", "tornado"]  # fmt: skip


# --------------------------------------------------------------------------- setup


def install_dlrover(
    target: Path,
    packages: list[str] = DLROVER_PKGS,
    probe: str = "from dlrover.trainer.torch.flash_checkpoint.ddp import DdpCheckpointer",
) -> str | None:
    """Make DLRover importable from ``target`` (no dependency resolution, so torch stays as
    it is); return None, or why it cannot be used."""
    env = {**os.environ, "PYTHONPATH": str(target)}

    def importable() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                              text=True, check=False, timeout=120)  # fmt: skip

    if target.is_dir() and importable().returncode == 0:
        return None
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
           str(target), *packages]  # fmt: skip
    try:
        pip = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"pip install failed: {exc}"
    if pip.returncode != 0:
        return f"pip install failed: {pip.stderr.strip()[-300:]}"
    probe_run = importable()
    if probe_run.returncode != 0:
        return f"installed but does not import: {probe_run.stderr.strip()[-300:]}"
    return None


def make_state(nbytes: float) -> dict[str, Any]:
    import torch  # noqa: PLC0415 - the driver process imports no torch

    numel_total = int(nbytes / 4 / 3)
    per = 16 << 20  # 16 Mi floats = 64 MiB
    shapes = [per] * (numel_total // per) + ([numel_total % per] if numel_total % per else [])
    params = {f"layers.{i}.weight": torch.randn(n) for i, n in enumerate(shapes)}
    state = {
        str(i): {"step": torch.tensor(10.0), "exp_avg": torch.randn(n), "exp_avg_sq": torch.rand(n)}
        for i, n in enumerate(shapes)
    }
    return {
        "model": params,
        "optimizer": {"state": state, "param_groups": [{"lr": 1e-4, "params": list(state)}]},
    }


def tree_map(fn: Callable[[Any], Any], value: Any) -> Any:
    import torch  # noqa: PLC0415

    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, dict):
        return {k: tree_map(fn, v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(tree_map(fn, v) for v in value)
    return value


def copy_tree(dst: Any, src: Any) -> None:
    """Copy ``src``'s tensors into ``dst``'s (same structure), as ``load_state_dict`` does."""
    import torch  # noqa: PLC0415

    if isinstance(dst, torch.Tensor):
        dst.copy_(src)
    elif isinstance(dst, dict):
        for k, v in dst.items():
            copy_tree(v, src[k])
    elif isinstance(dst, list | tuple):
        for d, s in zip(dst, src, strict=True):
            copy_tree(d, s)


def drop_cache(path: Path) -> None:
    """Evict a file's (or a folder's files') clean pages, so the next read comes from disk."""
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    for p in files:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


# --------------------------------------------------------------------------- one size


def one_size(size_gb: float, rounds: int, disk: Path, use_dlrover: bool) -> dict[str, Any]:
    """Measure every method at one size; whatever happens, free the shared memory and stop
    the persisters and DLRover's saver (callbacks run last-registered first)."""
    with contextlib.ExitStack() as cleanup:
        return _one_size(size_gb, rounds, disk, use_dlrover, cleanup)


def _one_size(
    size_gb: float, rounds: int, disk: Path, use_dlrover: bool, cleanup: contextlib.ExitStack
) -> dict[str, Any]:
    import torch  # noqa: PLC0415
    import torch.distributed as dist  # noqa: PLC0415
    import torch.distributed.checkpoint as dcp  # noqa: PLC0415

    from baige.ckpt import Checkpointer  # noqa: PLC0415

    torch.set_num_threads(1)
    for key, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1",
                       "LOCAL_WORLD_SIZE": "1", "GROUP_RANK": "0"}.items():  # fmt: skip
        os.environ.setdefault(key, value)
    store = dist.FileStore(str(disk / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    # DLRover names its sockets (/tmp/ckpt_sock/<run id>/) and shared memory after the run
    # id: a fresh one keeps a stale or concurrent run's files out of the way. Its saver is
    # a forked process, started first, while this process is small and has no other work.
    run_id = f"baige-bench-{os.getpid()}"
    os.environ["TORCHELASTIC_RUN_ID"] = run_id
    cleanup.callback(shutil.rmtree, Path("/tmp/ckpt_sock") / run_id, ignore_errors=True)
    cleanup.callback(lambda: [p.unlink(missing_ok=True) for p in SHM.glob(f"{run_id}_*")])
    dl: Any = None
    if use_dlrover:
        from dlrover.trainer.torch.flash_checkpoint.ddp import (  # noqa: PLC0415
            DdpCheckpointer,
            StorageType,
        )

        dl = DdpCheckpointer(str(disk / "dlrover"))
        cleanup.callback(dl._engine.close)

    state = make_state(size_gb * GB)
    targets = tree_map(torch.zeros_like, state)  # touched: zeros are written
    flat_src: list[torch.Tensor] = []
    flat_dst: list[torch.Tensor] = []
    tree_map(flat_src.append, state)
    tree_map(flat_dst.append, targets)
    total = sum(t.numel() * t.element_size() for t in flat_src)
    runs: dict[str, list[float]] = {}

    def record(name: str, seconds: float) -> None:
        runs.setdefault(name, []).append(seconds)

    shm = Path(tempfile.mkdtemp(prefix="baige-peers-", dir=SHM))
    other_shm = Path(tempfile.mkdtemp(prefix="baige-peers-disk-", dir=SHM))
    for folder in (shm, other_shm):
        cleanup.callback(shutil.rmtree, folder, ignore_errors=True)
    ck = Checkpointer(disk / "baige", shm_dir=shm, keep=1)
    cleanup.callback(ck.close)
    tracker = disk / "dlrover" / "dlrover_latest.txt"
    torch_file = disk / "torch.pt"
    dcp_dir = disk / "dcp"
    step = 0

    # ---- the methods; each does one operation and records its times

    def m_copy() -> None:
        t0 = time.perf_counter()
        for d, s in zip(flat_dst, flat_src, strict=True):
            d.copy_(s)
        record("save.copy", time.perf_counter() - t0)

    def m_baige_save() -> None:
        nonlocal step
        step += 1
        t0 = time.perf_counter()
        stats = ck.save(step, state)
        ck.wait()
        record("durable.baige", time.perf_counter() - t0)
        record("save.baige", stats.blocked_s)

    def m_dlrover_save() -> None:
        nonlocal step
        step += 1
        t0 = time.perf_counter()
        dl.save_checkpoint(step, state, str(disk / "dlrover" / f"{step}.pt"),
                           storage_type=StorageType.DISK)  # fmt: skip
        record("save.dlrover", time.perf_counter() - t0)
        deadline = time.monotonic() + 180
        while True:
            with contextlib.suppress(OSError, ValueError):
                if int(tracker.read_text().strip() or -1) == step:
                    break
            if time.monotonic() > deadline:  # its saver process died (e.g. out of memory)
                raise RuntimeError(f"DLRover's saver did not persist step {step} in 180 s; "
                                   "rerun with --no-dlrover")  # fmt: skip
            time.sleep(0.002)
        record("durable.dlrover", time.perf_counter() - t0)
        for old in (disk / "dlrover").glob("*.pt"):
            if old.name != f"{step}.pt":
                old.unlink()

    def m_torch_save() -> None:
        tmp = torch_file.with_suffix(".tmp")
        t0 = time.perf_counter()
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            record("save.torch", time.perf_counter() - t0)
            os.fsync(f.fileno())
        os.replace(tmp, torch_file)
        record("durable.torch", time.perf_counter() - t0)

    def m_dcp_save() -> None:
        tmp = disk / "dcp.new"
        shutil.rmtree(tmp, ignore_errors=True)
        t0 = time.perf_counter()
        dcp.save(state, checkpoint_id=str(tmp))
        record("durable.dcp", time.perf_counter() - t0)
        shutil.rmtree(dcp_dir, ignore_errors=True)
        tmp.rename(dcp_dir)

    def m_dcp_async() -> None:
        folder = disk / "dcp.async"
        shutil.rmtree(folder, ignore_errors=True)
        t0 = time.perf_counter()
        future = dcp.async_save(state, checkpoint_id=str(folder))
        record("save.dcp_async", time.perf_counter() - t0)
        future.result()
        shutil.rmtree(folder, ignore_errors=True)

    def m_copy_restore() -> None:
        t0 = time.perf_counter()
        for d, s in zip(flat_dst, flat_src, strict=True):
            d.copy_(s)
        record("mem.copy", time.perf_counter() - t0)

    def m_baige_mem() -> None:
        t0 = time.perf_counter()
        r = ck.load(template=targets)
        record("mem.baige", time.perf_counter() - t0)
        assert r is not None and r.source == "memory", r
        t0 = time.perf_counter()
        r = ck.load()
        record("memfresh.baige", time.perf_counter() - t0)
        assert r is not None and r.source == "memory"

    def m_dlrover_mem() -> None:
        t0 = time.perf_counter()
        got = dl.load_checkpoint()
        record("memfresh.dlrover", time.perf_counter() - t0)
        copy_tree(targets, got)
        record("mem.dlrover", time.perf_counter() - t0)
        del got

    def disk_methods(cold: bool) -> list[Callable[[], None]]:
        tag = "cold" if cold else "warm"
        baige_disk = disk_ck

        def m_torch_load() -> None:
            if cold:
                drop_cache(torch_file)
            t0 = time.perf_counter()
            got = torch.load(torch_file)
            record(f"{tag}.torch", time.perf_counter() - t0)
            del got

        def m_dcp_load() -> None:
            if cold:
                drop_cache(dcp_dir)
            t0 = time.perf_counter()
            dcp.load(targets, checkpoint_id=str(dcp_dir))
            record(f"{tag}into.dcp", time.perf_counter() - t0)

        def m_baige_fresh() -> None:
            if cold:
                drop_cache(disk / "baige")
            t0 = time.perf_counter()
            r = baige_disk.load()
            record(f"{tag}.baige", time.perf_counter() - t0)
            assert r is not None and r.source == "disk"

        def m_baige_into() -> None:
            if cold:
                drop_cache(disk / "baige")
            t0 = time.perf_counter()
            r = baige_disk.load(template=targets)
            record(f"{tag}into.baige", time.perf_counter() - t0)
            assert r is not None and r.source == "disk"

        return [m_torch_load, m_dcp_load, m_baige_fresh, m_baige_into]

    def play(methods: list[Callable[[], None]], n_rounds: int) -> None:
        for r in range(n_rounds + 1):  # round 0 warms up and is thrown away
            mark = {k: len(v) for k, v in runs.items()}
            k = r % len(methods)
            for fn in methods[k:] + methods[:k]:
                fn()
            if r == 0:
                for key, n in list(mark.items()) + [(x, 0) for x in runs if x not in mark]:
                    del runs[key][n:]

    for _ in range(2):  # fault in both shared-memory slots before anything is timed
        step += 1
        ck.save(step, state)
        ck.wait()
    saves = [m_copy, m_baige_save, m_torch_save, m_dcp_save, m_dcp_async]
    if dl is not None:
        saves.append(m_dlrover_save)
    play(saves, rounds)
    play([m_copy_restore, m_baige_mem] + ([m_dlrover_mem] if dl is not None else []), rounds)
    os.sync()
    disk_ck = Checkpointer(disk / "baige", shm_dir=other_shm, keep=1)
    cleanup.callback(disk_ck.close)
    play(disk_methods(cold=False), rounds)
    play(disk_methods(cold=True), rounds)
    return {"size_gb": size_gb, "bytes": total, "tensors": len(flat_src), "runs": runs}


# --------------------------------------------------------------------------- report

ROWS = [
    ("save, blocking", "save", ["copy", "baige", "dlrover", "dcp_async", "torch"]),
    ("durable on disk", "durable", ["baige", "dcp", "torch", "dlrover"]),
    ("restore from memory, into tensors", "mem", ["copy", "baige", "dlrover"]),
    ("restore from memory, fresh/views", "memfresh", ["baige", "dlrover"]),
    ("restore from disk, warm, new tensors", "warm", ["baige", "torch"]),
    ("restore from disk, warm, into tensors", "warminto", ["baige", "dcp"]),
    ("restore from disk, cold, new tensors", "cold", ["baige", "torch"]),
    ("restore from disk, cold, into tensors", "coldinto", ["baige", "dcp"]),
]
# Baige's time ÷ a peer's, per round: (row key, baige key, peer key, target)
RATIOS = [
    ("save: baige ÷ copy", "save.baige", "save.copy", None),
    ("save: baige ÷ dlrover", "save.baige", "save.dlrover", None),
    ("durable: baige ÷ dcp", "durable.baige", "durable.dcp", 1.2),
    ("durable: baige ÷ torch.save+fsync", "durable.baige", "durable.torch", None),
    ("durable: baige ÷ dlrover (no fsync)", "durable.baige", "durable.dlrover", None),
    ("memory restore: baige ÷ copy", "mem.baige", "mem.copy", 2.0),
    ("memory restore: baige ÷ dlrover", "mem.baige", "mem.dlrover", 1.0),
    ("memory restore fresh: baige ÷ dlrover views", "memfresh.baige", "memfresh.dlrover", None),
    ("disk warm: baige ÷ torch.load", "warm.baige", "warm.torch", 1.2),
    ("disk warm: baige into ÷ dcp.load", "warminto.baige", "warminto.dcp", 1.2),
    ("disk cold: baige ÷ torch.load", "cold.baige", "cold.torch", 1.2),
    ("disk cold: baige into ÷ dcp.load", "coldinto.baige", "coldinto.dcp", 1.2),
]


def report(result: dict[str, Any]) -> None:
    runs: dict[str, list[float]] = result["runs"]
    gb = result["bytes"] / GB
    print(f"\n{result['size_gb']:g} GB state ({gb:.2f} GB in {result['tensors']} tensors); "
          f"medians of {len(runs.get('save.copy', []))} rounds, seconds")  # fmt: skip
    for title, prefix, methods in ROWS:
        cells = []
        for m in methods:
            values = runs.get(f"{prefix}.{m}")
            if values:
                cells.append(f"{m} {statistics.median(values):7.3f}")
        if cells:
            print(f"  {title:<40} " + "  ".join(cells))
    print("  per-round ratios (median [min..max])")
    for title, a, b, target in RATIOS:
        xs, ys = runs.get(a), runs.get(b)
        if not xs or not ys:
            continue
        ratios = [x / y for x, y in zip(xs, ys, strict=False)]
        mid = statistics.median(ratios)
        verdict = ""
        if target is not None:
            verdict = f"  target <= {target:g}: {'met' if mid <= target else 'NOT met'}"
        print(f"    {title:<44} {mid:6.2f} x "
              f"[{min(ratios):.2f}..{max(ratios):.2f}]{verdict}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[0.5, 1, 2])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--disk", type=Path, default=None, help="local disk folder")
    parser.add_argument("--no-dlrover", action="store_true")
    parser.add_argument("--dlrover-dir", type=Path,
                        default=Path(tempfile.gettempdir()) / "baige-bench-dlrover")  # fmt: skip
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 0.05 GB, one round after the warm-up")  # fmt: skip
    parser.add_argument("--one", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.rounds = [0.05], 1
    if args.one is not None:
        disk = Path(tempfile.mkdtemp(prefix="baige-peers-", dir=args.disk))
        try:
            result = one_size(args.one, args.rounds, disk, not args.no_dlrover)
            print(json.dumps(result))
        finally:
            shutil.rmtree(disk, ignore_errors=True)
        return
    use_dlrover = not args.no_dlrover
    env = dict(os.environ)
    if use_dlrover:
        why = install_dlrover(args.dlrover_dir)
        if why is not None:
            print(f"DLRover skipped: {why}")
            use_dlrover = False
        else:
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (env.get("PYTHONPATH", ""), str(args.dlrover_dir)) if p
            )
    print(f"{os.cpu_count()} CPUs; /dev/shm free {shutil.disk_usage(SHM).free / GB:.1f} GB; "
          f"DLRover {'on' if use_dlrover else 'off'}")  # fmt: skip
    results = []
    failed = False
    for size in args.sizes:
        cmd = [sys.executable, __file__, "--one", str(size), "--rounds", str(args.rounds)]
        if args.disk:
            cmd += ["--disk", str(args.disk)]
        if not use_dlrover:
            cmd.append("--no-dlrover")
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
        if proc.returncode != 0:
            print(f"\n{size:g} GB: failed (exit {proc.returncode})\n{proc.stderr[-3000:]}")
            failed = True
            continue
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(result)
        report(result)
        sys.stdout.flush()
    if args.json:
        print(json.dumps(results, indent=1))
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
