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


def schedule(duration: float, every: float, nproc: int, factor: float) -> str:
    kinds = ("kill", "hang", "slow")
    faults = []
    for k in range(1, int(duration // every)):
        kind, rank, at = kinds[(k - 1) % 3], k % nproc, k * every
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
        "--save-every", "5",
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
    if kind == "baige":
        cmd = [sys.executable, "-m", "baige.runtime", "--run-dir", str(run_dir),
               "--nproc-per-node", str(args.nproc), "--max-restarts", "100",
               "--hang-timeout", str(args.hang_timeout), "--", *train]  # fmt: skip
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
    stop_all(run_dir, grace_s=40)
    return analyse(kind, run_dir, out_path.read_text(), t_launch, t_stop)


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
        if kind == "baige":
            det = [e["detect_s"] for e in events if e.get("injected") == fault]
            row["detect_s"] = next((d for d in det if d is not None), None)
        if rec["kind"] == "slow":
            rows.append(row)
            continue
        started = [t for t, _, r in trace.started if t > ts and r == 0]
        restored = [(t, s) for t, r, s, _ in trace.restored if t > ts and r == 0]
        if kind != "baige":
            row["detect_s"] = None
            row["restart_s"] = round(started[0] - ts, 2) if started else None
        if not restored:
            row["resume_s"] = None
            row["lost_steps"] = None
            rows.append(row)
            continue
        t_back, step_back = restored[0]
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
    p.add_argument("--keep", action="store_true", help="keep the run directories")
    args = p.parse_args()
    faults = schedule(args.duration, args.fault_every, args.nproc, args.slow_factor)
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
    if not args.keep:
        import shutil  # noqa: PLC0415

        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"\nrun directories: {work}")


if __name__ == "__main__":
    main()
