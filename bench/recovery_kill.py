"""Benchmark: a rank killed → the job training again, `baige run` against `baige run --cold`,
plain `torchrun` and `dlrover-run`, on the same trainer with the same checkpoints.

The trainer is ``examples/runtime/train_transformer.py`` (2 ranks, gloo, CPU, a flash
checkpoint into shared memory every 5 steps; it restores from there under every launcher).
Each round runs every launcher for ``--duration`` seconds with a rank killed (SIGKILL, by
``BAIGE_FAULT``'s ``at=`` trigger, the same times for all) every ``--every`` seconds, the
order of the launchers rotating from round to round; round 0 is a warm-up and not counted.
A recovery is the time from the kill to rank 0's first step after its restore (from the
workers' own log lines; ``bench/runtime_faults.py`` does the parsing).

`baige run` starts a Python script's ranks warm (``baige.runtime.warm``: forked from a
process that has torch imported); ``--cold`` starts them as new processes, as torchrun does.
``dlrover-run`` (DLRover's launcher: a local master, its own agent and rendezvous) is
installed on first use into its own folder (``--dlrover-dir``, torch untouched) and run
through ``bench/dlrover_run_compat.py`` (one argument torch 2.13 added); when it cannot be
installed it is left out, with the reason.

    python bench/recovery_kill.py [--rounds 3] [--duration 45] [--every 12]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import runtime_faults as rf  # the benchmark next to this one
from ckpt_peers import DLROVER_RUN_PKGS, install_dlrover  # DLRover in its own folder

LAUNCHERS = ("baige", "baige-cold", "torchrun", "dlrover")


def one_run(kind: str, args: argparse.Namespace, work: Path) -> list[float]:
    faults = rf.schedule(args.duration, args.every, args.nproc, 1.0, ("kill",))
    result = rf.run_one(kind, args, faults, work)
    return [row["resume_s"] for row in result["faults"] if row.get("resume_s") is not None]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3, help="counted rounds (after a warm-up)")
    p.add_argument("--duration", type=float, default=45.0, help="seconds per launcher per round")
    p.add_argument("--every", type=float, default=12.0, help="seconds between kills")
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--launchers", default=",".join(LAUNCHERS))
    p.add_argument("--dlrover-dir", type=Path,
                   default=Path(tempfile.gettempdir()) / "baige-bench-dlrover-run")  # fmt: skip
    args = p.parse_args()
    launchers = [x.strip() for x in args.launchers.split(",") if x.strip()]
    if not launchers or any(x not in LAUNCHERS for x in launchers) or "baige" not in launchers:
        p.error(f"--launchers: baige and some of {', '.join(LAUNCHERS)}")
    if args.rounds < 1 or args.every * 2 > args.duration:
        p.error("--rounds >= 1, and --duration must hold at least one kill (2 × --every)")
    if "dlrover" in launchers:
        probe = "import dlrover.python.master.main, dlrover.trainer.torch.elastic_run"
        why = install_dlrover(args.dlrover_dir, DLROVER_RUN_PKGS, probe)
        if why is not None:
            print(f"dlrover-run left out: {why}", flush=True)
            launchers.remove("dlrover")
    # what run_one expects of runtime_faults' own arguments
    args.hang_timeout, args.pg_timeout, args.d_model, args.layers = 20.0, 600.0, 96, 3
    work = Path(tempfile.mkdtemp(prefix="baige-recovery-bench-"))
    medians: dict[str, list[float]] = {k: [] for k in launchers}
    for index in range(args.rounds + 1):
        order = launchers[index % len(launchers) :] + launchers[: index % len(launchers)]
        label = "warm-up" if index == 0 else f"round {index}"
        for kind in order:
            times = one_run(kind, args, work / f"r{index}")
            shown = ", ".join(f"{t:.2f}" for t in times) or "none recovered"
            print(f"{label:>8} {kind:>10}: kill → training again {shown} s", flush=True)
            if index and times:
                medians[kind].append(statistics.median(times))
    print("\nmedian of each round's median (kill → rank 0's first step after the restart)")
    for kind, values in medians.items():
        if values:
            rounds = ", ".join(f"{v:.2f}" for v in values)
            print(f"  {kind:>10}: {statistics.median(values):5.2f} s  (rounds {rounds})")
    base = medians["baige"]
    for other in launchers:
        if other == "baige" or len(medians[other]) != len(base) or not base:
            continue
        ratios = [b / o for b, o in zip(base, medians[other], strict=True)]
        print(f"  baige ÷ {other}: {statistics.median(ratios):.2f} "
              f"(rounds {', '.join(f'{r:.2f}' for r in ratios)})")  # fmt: skip


if __name__ == "__main__":
    main()
