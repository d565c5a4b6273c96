"""Benchmark: effective training time under faults, ``baige run`` against plain torchrun.

A small transformer (``examples/runtime/train_transformer.py``: 2 ranks, gloo, CPU, a flash
checkpoint into shared memory every 5 steps) trains for ``--duration`` seconds (default 600)
with a fault injected every ``--fault-every`` seconds (default 60), cycling kill, hang and slow
over the ranks (``BAIGE_FAULT`` with ``at=`` triggers, so both launchers get the same faults at
the same times). Then the same run under ``torchrun --standalone --max-restarts N`` with the
same script, which also restores from shared memory: the only difference is the launcher.

Per fault it prints:
* detect: seconds from the injection to the launcher noticing (baige: its event log; torchrun
  does not say, so its column is the time until its new workers printed that they started,
  an upper bound);
* resume: seconds from the injection to the first step of the restarted group;
* lost: steps computed before the fault that had to be computed again.

Per run: ETTR = useful steps × fault-free step time / wall time, where useful steps is the
last step reached (every lost or slowed step counts against it) and the fault-free step time
is the median before the first fault.

Notes. torch 2.13's torchrun cannot restart a gloo group at all with its default shared
rendezvous store (pytorch/pytorch#135712: the restarted workers read the previous attempt's
addresses); the baseline runs with its documented workaround
``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1``. A hang under torchrun ends only when gloo's
collective timeout (``--pg-timeout``, default 600 s, NCCL's default watchdog) fails a peer.

    python bench/runtime_faults.py [--duration 600] [--fault-every 60] [--skip-torchrun]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "runtime" / "train_transformer.py"

STEP = re.compile(r"rank=(\d+) step=(\d+) loss=\S+ t=([\d.]+)")
RESTORED = re.compile(r"rank=(\d+) restored step=(\d+) source=(\w+) t=([\d.]+)")
STARTED = re.compile(r"attempt=(\d+) rank=(\d+)/\d+ started t=([\d.]+)")
KINDS = ("kill", "hang", "slow")
SAVE_EVERY = 5


def schedule(
    duration: float, every: float, nproc: int, factor: float, kinds: tuple[str, ...] = KINDS
) -> str:
    faults = []
    for k in range(1, int(duration // every)):
        kind, rank, at = kinds[(k - 1) % len(kinds)], k % nproc, k * every
        spec = f"{kind}:rank={rank}:at={at:g}"
        if kind == "slow":
            spec += f":factor={factor:g}:for={every / 2:g}"
        faults.append(spec)
    return ",".join(faults)


@dataclass
class Trace:
    steps: list[tuple[float, int, int]] = field(default_factory=list)  # t, rank, step
    restored: list[tuple[float, int, int, str]] = field(default_factory=list)
    started: list[tuple[float, int, int]] = field(default_factory=list)  # t, attempt, rank


def parse(text: str) -> Trace:
    trace = Trace()
    for line in text.splitlines():
        if m := STEP.search(line):
            trace.steps.append((float(m[3]), int(m[1]), int(m[2])))
        elif m := RESTORED.search(line):
            trace.restored.append((float(m[4]), int(m[1]), int(m[2]), m[3]))
        elif m := STARTED.search(line):
            trace.started.append((float(m[3]), int(m[1]), int(m[2])))
    for rows in (trace.steps, trace.restored, trace.started):
        rows.sort()
    return trace


def processes_of(run_dir: Path) -> list[int]:
    needle = f"BAIGE_RUN_DIR={run_dir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
    return found


def stop_all(run_dir: Path, grace_s: float) -> None:
    """End every process this run started (workers, checkpoint persisters), by pid."""
    deadline = time.monotonic() + grace_s
    while processes_of(run_dir) and time.monotonic() < deadline:
        time.sleep(0.5)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in processes_of(run_dir):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        time.sleep(1.0)


def run_one(kind: str, args: argparse.Namespace, faults: str, work: Path) -> dict[str, Any]:
    run_dir = work / kind
    run_dir.mkdir(parents=True)
    train = [
        str(EXAMPLE),
        "--steps", "10000000",
        "--save-every", str(SAVE_EVERY),
        "--log-every", "1",
        "--d-model", str(args.d_model),
        "--layers", str(args.layers),
        "--seq", "64",
        "--batch", "16",
        "--linger", "30",
        "--pg-timeout", str(args.pg_timeout),
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("BAIGE_")}
    t_launch = time.time()
    env.update(BAIGE_FAULT=faults, BAIGE_RUN_DIR=str(run_dir), BAIGE_RUN_START=repr(t_launch))
    if kind in ("baige", "baige-cold"):
        cold = ["--cold"] if kind == "baige-cold" else []
        cmd = [sys.executable, "-m", "baige.runtime", "--run-dir", str(run_dir),
               "--nproc-per-node", str(args.nproc), "--max-restarts", "100",
               "--hang-timeout", str(args.hang_timeout), *cold, "--", *train]  # fmt: skip
    elif kind == "dlrover":  # dlrover-run, its local master and agent (dlrover_run_compat)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(args.dlrover_dir), env.get("PYTHONPATH", "")) if p
        )
        cmd = [sys.executable, str(ROOT / "bench" / "dlrover_run_compat.py"), "--standalone",
               "--nproc_per_node", str(args.nproc), "--max-restarts", "100", *train]  # fmt: skip
    else:
        env["TORCH_DISABLE_SHARE_RDZV_TCP_STORE"] = "1"
        torchrun = str(Path(sys.executable).with_name("torchrun"))
        cmd = [torchrun, "--standalone", "--nproc-per-node", str(args.nproc),
               "--max-restarts", "100", *train]  # fmt: skip
    out_path, err_path = run_dir / "stdout.log", run_dir / "stderr.log"
    print(f"[{kind}] {args.duration:g} s: {' '.join(cmd[:8])} …", file=sys.stderr, flush=True)
    with out_path.open("w") as out, err_path.open("w") as err:
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=err,
                                start_new_session=True)  # fmt: skip
        try:
            proc.wait(timeout=args.duration)
        except subprocess.TimeoutExpired:
            t_stop = time.time()
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        else:
            t_stop = time.time()
        with contextlib.suppress(ProcessLookupError):  # what the launcher left (a master)
            os.killpg(proc.pid, signal.SIGKILL)
    stop_all(run_dir, grace_s=40)
    result = analyse(kind, run_dir, out_path.read_text(), t_launch, t_stop)
    result["snapshot"] = read_snapshot(run_dir / "ckpt")
    return result


def read_snapshot(root: Path) -> dict[str, Any] | None:
    """The newest persisted step: its bytes, and seconds to read them back from disk with
    the page cache dropped for them first (``posix_fadvise``), i.e. a cold disk restore's
    reading part."""
    steps = sorted(p for p in root.glob("step-*") if p.is_dir() and p.name[5:].isdigit())
    if not steps:
        return None
    files = [f for f in steps[-1].rglob("*") if f.is_file()]
    nbytes = sum(f.stat().st_size for f in files)
    started = time.perf_counter()
    for f in files:
        fd = os.open(f, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            while os.read(fd, 1 << 22):
                pass
        finally:
            os.close(fd)
    return {"step": steps[-1].name, "bytes": nbytes, "cold_read_s": time.perf_counter() - started}


def save_stall(rank0: list[tuple[float, int]]) -> float | None:
    """Seconds a flash save blocks the step: the median gap between a step that saved (every
    ``SAVE_EVERY``-th; the example saves after logging the step) and the next, less the
    median gap between steps that did not save, over every pair of consecutive steps of rank
    0 (gaps over five times the plain median — a fault, a restart — left out)."""
    pairs = [(t1 - t0, (s0 + 1) % SAVE_EVERY == 0)
             for (t0, s0), (t1, s1) in itertools.pairwise(rank0) if s1 == s0 + 1]  # fmt: skip
    plain = [gap for gap, saved in pairs if not saved]
    if len(plain) < 3:
        return None
    limit = 5 * statistics.median(plain)
    saving = [gap for gap, saved in pairs if saved and gap < limit]
    plain = [gap for gap in plain if gap < limit]
    if len(saving) < 3:
        return None
    return round(max(0.0, statistics.median(saving) - statistics.median(plain)), 4)


def analyse(kind: str, run_dir: Path, text: str, t_launch: float, t_stop: float) -> dict[str, Any]:
    trace = parse(text)
    ledger = sorted(
        (json.loads(p.read_text()) for p in (run_dir / "faults").glob("fired-*.json")),
        key=lambda r: r["ts"],
    )
    events: list[dict[str, Any]] = []
    if (run_dir / "events.jsonl").exists():
        events = [json.loads(line) for line in (run_dir / "events.jsonl").open()]
    rank0 = [(t, s) for t, r, s in trace.steps if r == 0]
    first_fault = ledger[0]["ts"] if ledger else t_stop
    clean = [(t, s) for t, s in rank0 if t < first_fault]
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(clean[5:]) if b[1] == a[1] + 1]
    t_ref = statistics.median(gaps) if gaps else float("nan")
    final_step = max((s for _, s in rank0), default=-1)
    wall = t_stop - t_launch
    rows = []
    for rec in ledger:
        ts, fault = rec["ts"], rec["fault"]
        row: dict[str, Any] = {"fault": fault, "at_s": round(ts - t_launch, 1)}
        if kind.startswith("baige"):
            det = [e["detect_s"] for e in events if e.get("injected") == fault]
            row["detect_s"] = next((d for d in det if d is not None), None)
        if rec["kind"] == "slow":
            rows.append(row)
            continue
        started = [t for t, _, r in trace.started if t > ts and r == 0]
        restored = [(t, s) for t, r, s, _ in trace.restored if t > ts and r == 0]
        if not kind.startswith("baige"):
            row["detect_s"] = None
            row["restart_s"] = round(started[0] - ts, 2) if started else None
        if not restored:
            row["resume_s"] = None
            row["lost_steps"] = None
            rows.append(row)
            continue
        t_back, step_back = restored[0]
        row["restore_source"] = next(
            src for t, r, _, src in trace.restored if t == t_back and r == 0
        )
        if kind.startswith("baige") and started and row.get("detect_s") is not None:
            # detection → the new process printed it started (launch, rendezvous) → restored
            row["restart_s"] = round(started[0] - ts - row["detect_s"], 3)
            row["restore_s"] = round(t_back - started[0], 3)
        resumed = [t for t, s in rank0 if t > t_back]
        until = started[0] if started else t_back
        before = [s for t, _, s in trace.steps if t < until]
        row["resume_s"] = round(resumed[0] - ts, 2) if resumed else None
        row["lost_steps"] = max(before) - step_back if before else None
        rows.append(row)
    return {
        "launcher": kind,
        "wall_s": round(wall, 1),
        "fault_free_step_s": round(t_ref, 4),
        "save_stall_s": save_stall(rank0),
        "final_step": final_step,
        "ettr": round((final_step + 1) * t_ref / wall, 3) if final_step >= 0 else 0.0,
        "restarts": len([t for t, a, r in trace.started if r == 0 and a > 0]),
        "faults": rows,
        "run_dir": str(run_dir),
    }


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.1f}{unit}"
    return f"{value}{unit}"


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(
        f"\n{args.duration:g} s per launcher, a fault every {args.fault_every:g} s, "
        f"{args.nproc} ranks (gloo, CPU), hang timeout {args.hang_timeout:g} s, "
        f"gloo timeout {args.pg_timeout:g} s\n"
    )
    heads = ["fault", "at"]
    for r in results:
        name = r["launcher"]
        heads += [f"{name} detect", f"{name} resume", f"{name} lost"]
    print("  ".join(f"{h:>16}" if i else f"{h:<38}" for i, h in enumerate(heads)))
    for i, base in enumerate(results[0]["faults"]):
        cells = [f"{base['fault']:<38}", f"{base['at_s']:>15.0f}s"]
        for r in results:
            row = r["faults"][i] if i < len(r["faults"]) else {}
            detect = row.get("detect_s")
            if detect is None and row.get("restart_s") is not None:
                cells.append(f"{'≤' + _fmt(row['restart_s'], ' s'):>16}")
            else:
                cells.append(f"{_fmt(detect, ' s'):>16}")
            cells.append(f"{_fmt(row.get('resume_s'), ' s'):>16}")
            cells.append(f"{_fmt(row.get('lost_steps')):>16}")
        print("  ".join(cells))
    print()
    for r in results:
        print(
            f"{r['launcher']:>9}: ETTR {r['ettr']:.3f}  last step {r['final_step']}  "
            f"restarts {r['restarts']}  fault-free step {r['fault_free_step_s'] * 1000:.0f} ms  "
            f"wall {r['wall_s']:.0f} s"
        )


def restart_model(result: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """The simulator's restart model (``training.restart.measured`` in a scenario) from
    ``baige run``'s measured crash recoveries: median detection, and median time from
    detection to training again, charged as initialization (it holds the process start, the
    rendezvous and the restore). A hang's detection is its timeout, a setting rather than a
    cost of the machinery, so only kills count."""
    kills = [f for f in result["faults"] if str(f["fault"]).startswith("kill")
             and f.get("detect_s") is not None and f.get("resume_s") is not None]  # fmt: skip
    if not kills:
        raise SystemExit("no kill was detected and recovered: no restart model to write")
    detect = statistics.median(f["detect_s"] for f in kills)
    again = statistics.median(f["resume_s"] - f["detect_s"] for f in kills)
    return {
        "detection": round(detect, 3),
        "rescheduling": 0.0,
        "initialization": round(max(0.0, again), 3),
        "checkpoint_load": 0.0,
        "faults": len(kills),
        "source": (
            f"bench/runtime_faults.py on {platform.node()} {time.strftime('%Y-%m-%d')}: "
            f"{args.nproc} ranks (gloo, CPU), a killed rank restarted in place and restored "
            "from its flash checkpoint in shared memory (no reschedule, no node loss)"
        ),
    }


def recovery_model(result: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """The simulator's recovery model (``training.recovery.model`` in a scenario; schema:
    ``baige.sim.recovery.RecoveryModel``) from ``baige run``'s measured crash recoveries:
    medians over the killed ranks of detection, restart (detection to the new process up and
    in the rendezvous) and restore (from the flash checkpoint in that node's shared memory).
    A hang's detection is its timeout, a setting rather than a cost, so only kills count.
    What this benchmark cannot see (a spare swap, a full reschedule, a restore from a buddy
    or from disk on a new node) is taken from the command line and says so in ``sources``."""
    kills = [f for f in result["faults"] if str(f["fault"]).startswith("kill")
             and f.get("restore_s") is not None]  # fmt: skip
    if not kills:
        raise SystemExit("no kill was detected and recovered: no recovery model to write")
    local = statistics.median(f["restore_s"] for f in kills)
    snapshot = result.get("snapshot") or {"bytes": 0, "cold_read_s": 0.0}
    peer_extra = snapshot["bytes"] / args.peer_rate
    disk_extra = snapshot["cold_read_s"]
    size = f"the {snapshot['bytes'] / 1e6:.1f} MB snapshot"
    stall = result.get("save_stall_s")
    host = f"{platform.node()} {time.strftime('%Y-%m-%d')}"
    measured = f"measured by bench/runtime_faults.py on {host}, median of {len(kills)} kills"
    given = "not measured by bench/runtime_faults.py: given with"
    return {
        "kind": "RecoveryModel",
        "version": 1,
        "name": f"runtime-faults-{time.strftime('%Y%m%d')}",
        "source": (
            f"bench/runtime_faults.py --duration {args.duration:g} --fault-every "
            f"{args.fault_every:g} --kinds {args.kinds} --write-model on {host}: "
            f"{args.nproc} ranks of examples/runtime/train_transformer.py (d_model "
            f"{args.d_model}, {args.layers} layers; gloo, CPU), {len(kills)} killed ranks "
            "restarted in place by baige run and restored from their flash checkpoint in "
            "shared memory; a tiny model, so restore times are a floor"
        ),
        "detection": statistics.median(f["detect_s"] for f in kills),
        "swap": args.swap,
        "reschedule": args.reschedule,
        "restart": statistics.median(f["restart_s"] for f in kills),
        "restore": {
            "local_memory": local,
            "peer_memory": round(local + peer_extra, 3),
            "disk": round(local + disk_extra, 3),
        },
        "checkpoint_stall": stall if stall is not None else 0.0,
        "sources": {
            "detection": measured,
            "restart": measured + " (relaunch and rendezvous, up to the restore)",
            "restore.local_memory": measured
            + " (from the new process up to its state restored: model, DDP and the"
            " checkpointer built, then the load)",
            "checkpoint_stall": (
                f"measured: median gap after a saving step less a plain one ({host})"
                if stall is not None
                else "not measured (too few steps before the first fault)"
            ),
            "swap": f"{given} --swap {args.swap:g}",
            "reschedule": f"{given} --reschedule {args.reschedule:g}",
            "restore.peer_memory": f"the local restore plus {size} sent at --peer-rate "
            f"{args.peer_rate / 1e9:g} GB/s (one connection's HMAC bound, bench/ckpt_peer.py)",
            "restore.disk": f"the local restore plus {size} read back cold from disk "
            f"({disk_extra:.3f} s, measured after the run)",
        },
        "measured": {
            "faults": len(kills),
            "lost_steps_median": statistics.median(f.get("lost_steps") or 0 for f in kills),
            "step_s": result["fault_free_step_s"],
            "resume_s_median": statistics.median(f["resume_s"] for f in kills),
            "restore_sources": sorted({str(f.get("restore_source")) for f in kills}),
        },
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=600.0, help="seconds per launcher")
    p.add_argument("--fault-every", type=float, default=60.0)
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--hang-timeout", type=float, default=20.0, help="baige run --hang-timeout")
    p.add_argument("--pg-timeout", type=float, default=600.0, help="gloo collective timeout")
    p.add_argument("--slow-factor", type=float, default=3.0)
    p.add_argument("--d-model", type=int, default=96)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--skip-torchrun", action="store_true")
    p.add_argument("--out", default="", help="write the results as JSON here")
    p.add_argument(
        "--restart-model",
        default="",
        help="write baige run's measured restart costs here, as a simulator restart model",
    )
    p.add_argument(
        "--kinds", default=",".join(KINDS), help="fault kinds to cycle through (kill,hang,slow)"
    )
    p.add_argument(
        "--write-model",
        default="",
        help="write baige run's measured recovery figures here as a simulator recovery model",
    )
    p.add_argument(
        "--swap",
        type=float,
        default=0.0,
        help="--write-model: seconds to swap a hot spare in (not measured here)",
    )
    p.add_argument(
        "--reschedule",
        type=float,
        default=30.0,
        help="--write-model: seconds to requeue and place a job (not measured here)",
    )
    p.add_argument(
        "--peer-rate",
        type=float,
        default=1.2e9,
        help="--write-model: bytes/s of a restore from a buddy's memory",
    )
    p.add_argument("--keep", action="store_true", help="keep the run directories")
    args = p.parse_args()
    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    if not kinds or any(k not in KINDS for k in kinds):
        p.error(f"--kinds: expected some of {','.join(KINDS)}, not {args.kinds!r}")
    faults = schedule(args.duration, args.fault_every, args.nproc, args.slow_factor, kinds)
    print(f"BAIGE_FAULT={faults}", file=sys.stderr)
    work = Path(tempfile.mkdtemp(prefix="baige-runtime-bench-"))
    results = [run_one("baige", args, faults, work)]
    if not args.skip_torchrun:
        results.append(run_one("torchrun", args, faults, work))
    report(results, args)
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    if args.restart_model:
        model = restart_model(results[0], args)
        Path(args.restart_model).write_text(json.dumps(model, indent=2) + "\n")
        print(f"restart model: {model}")
    if args.write_model:
        model = recovery_model(results[0], args)
        Path(args.write_model).write_text(json.dumps(model, indent=2) + "\n")
        print(f"recovery model written to {args.write_model}")
    if not args.keep:
        import shutil  # noqa: PLC0415

        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"\nrun directories: {work}")


if __name__ == "__main__":
    main()
