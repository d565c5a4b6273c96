"""Benchmark: one data-parallel job on two chip types of different speeds, against the two
types training apart.

The question: a cluster has fast and slow chips. Running one job across all of them with
``baige.train.hetero`` should deliver (nearly) the throughput of running one job on the fast
chips plus another on the slow chips, provided the batch is split in proportion to speed.
An even split instead leaves the fast chips waiting for the slow ones each step.

**Declared emulation.** There are no chips of two speeds here: every rank is a CPU process,
and a chip's speed is emulated by pacing. Each micro-batch of ``n`` samples on a type of
relative speed ``s`` runs its real forward pass and then sleeps until ``n × sample_ms / s``
have passed since it began, before its (real, small) backward pass; so a 0.4× type takes
1/0.4 = 2.5 times as long per sample. The gradients are real and exchanged for real (gloo on
127.0.0.1, the library's hierarchical hook), so the communication cost and the waiting at
the gradient exchange are measured, not modelled; the compute is not. Sleeping processes
leave the CPUs free, so four ranks on two cores do not slow each other's "compute".

Jobs (each a fresh set of processes; per job, ``--warmup`` steps are run and not counted):

* ``fast only``  — the fast ranks, each taking its speed-proportional share;
* ``slow only``  — the slow ranks, likewise;
* ``mixed, even``  — all ranks, the same global batch split evenly;
* ``mixed, by speed`` — all ranks, the global batch split in proportion to speed
  (``split_by_speed``, the split the control plane hands a mixed job);
* ``sweep, slow N`` — every other split of the same micro-batches (the slow ranks take N
  samples each), to check the planner's split against the best one found by trying them all
  (``--no-sweep`` skips them). The planner's predicted throughput (the declared speeds' ideal)
  is compared with the measured one.

Throughput is samples per second over the counted steps, measured on rank 0 between a
barrier before the first counted step and the end of the last. Each round runs the four
jobs in a rotating order; a ratio is taken within a round (both sides ran seconds apart), and
the tables give medians over rounds. Goal (issue "Mixed-chip training, end to end"): mixed by
speed ≥ 97% of fast only + slow only.

    python bench/mixed_training.py [--rounds 5] [--speeds 1.0 0.4] [--ranks-per-type 2]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from baige.train import hetero
from baige.train.plan import HeteroPlan, parse_plan, split_by_speed

GOAL = 0.97


# --------------------------------------------------------------------------- one rank


def calibrate_backward(module: nn.Module, micro_batch: int, width: int) -> float:
    """The median time of this model's real backward pass on one micro-batch, alone."""
    x, y = torch.randn(micro_batch, width), torch.randn(micro_batch, width)
    times = []
    for _ in range(7):
        loss = F.mse_loss(module(x), y)
        began = time.perf_counter()
        loss.backward()
        times.append(time.perf_counter() - began)
    module.zero_grad(set_to_none=True)
    return statistics.median(times[2:])


def worker(config: dict[str, Any]) -> None:
    """One rank of one job: train a small MLP with paced 'compute', report throughput."""

    torch.set_num_threads(1)
    ctx = hetero.init()
    speed = config["speeds"][ctx.type]
    sample_s = config["sample_ms"] / 1e3 / speed
    width = config["width"]
    torch.manual_seed(0)
    module = nn.Sequential(
        nn.Linear(width, config["hidden"]), nn.ReLU(), nn.Linear(config["hidden"], width)
    )
    backward_s = calibrate_backward(module, ctx.micro_batch_size, width)
    model = ctx.wrap(module)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    steps = config["warmup"] + config["steps"]
    data = TensorDataset(
        torch.randn(steps * ctx.global_batch, width), torch.randn(steps * ctx.global_batch, width)
    )
    start = 0.0
    for step, (x, y) in enumerate(ctx.loader(data, seed=1)):
        if step == config["warmup"]:
            dist.barrier()
            start = time.perf_counter()
        for mx, my in ctx.micro_steps(model, x, y):
            began = time.perf_counter()
            loss = F.mse_loss(model(mx), my) / ctx.micro_batches
            # the micro-batch's forward + backward take n × sample_s in all: sleep for what
            # the real backward (measured alone, without communication) will not take
            pause = began + len(mx) * sample_s - backward_s - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            loss.backward()
        opt.step()
        opt.zero_grad()
    elapsed = time.perf_counter() - start
    if ctx.rank == 0:
        samples = config["steps"] * ctx.global_batch
        print(
            json.dumps(
                {"samples_per_s": samples / elapsed, "step_ms": elapsed / config["steps"] * 1e3}
            )
        )
    ctx.close()


# --------------------------------------------------------------------------- the jobs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_job(plan: HeteroPlan, config: dict[str, Any], tmp: Path) -> dict[str, float]:
    """Start one process per rank of ``plan``; return rank 0's figures."""
    plan_file = tmp / "plan.json"
    plan_file.write_text(plan.model_dump_json())
    port = free_port()
    procs = []
    for rank in range(plan.world_size):
        env = dict(os.environ)
        env.update(
            RANK=str(rank),
            WORLD_SIZE=str(plan.world_size),
            LOCAL_RANK=str(rank),
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            OMP_NUM_THREADS="1",
            BAIGE_HETERO_PLAN=str(plan_file),
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, __file__, "--worker", json.dumps(config)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    if any(p.returncode for p in procs):
        raise SystemExit("a job failed:\n" + "\n---\n".join(o[-3000:] for o in outputs))
    last = [line for line in outputs[0].splitlines() if line.startswith("{")][-1]
    return {k: float(v) for k, v in json.loads(last).items()}


def jobs(args: argparse.Namespace) -> dict[str, HeteroPlan]:
    """The four plans. Every job's ranks take their speed-proportional share, so the jobs'
    steps last about as long, except the even split, which gives every rank the same."""
    fast, slow = "fast", "slow"
    per_type = args.ranks_per_type
    ranks = [(fast, args.speeds[0])] * per_type + [(slow, args.speeds[1])] * per_type
    by_speed = split_by_speed(ranks, args.global_batch, args.micro_batch)
    shares = {r.type: r.micro_batches for r in by_speed.ranks}

    def alone(chip: str) -> HeteroPlan:
        mb = shares[chip]
        return parse_plan(
            {
                "global_batch": mb * args.micro_batch * per_type,
                "ranks": [
                    {
                        "rank": i,
                        "type": chip,
                        "micro_batches": mb,
                        "micro_batch_size": args.micro_batch,
                    }
                    for i in range(per_type)
                ],
            },
            chip,
        )

    world = 2 * per_type
    if args.global_batch % (world * args.micro_batch):
        raise SystemExit(
            f"--global-batch must be a multiple of {world} × --micro-batch for the even split"
        )
    even = parse_plan(
        {
            "global_batch": args.global_batch,
            "ranks": [
                {
                    "rank": i,
                    "type": chip,
                    "micro_batches": args.global_batch // world // args.micro_batch,
                    "micro_batch_size": args.micro_batch,
                }
                for i, (chip, _) in enumerate(ranks)
            ],
        },
        "even",
    )
    plans = {
        "fast only": alone(fast),
        "slow only": alone(slow),
        "mixed, even": even,
        "mixed, by speed": by_speed,
    }
    if args.sweep:
        # every other split of the same micro-batches: the slow ranks take k each
        total = args.global_batch // args.micro_batch
        for k in range(1, total // (2 * per_type) + 1):
            fast_mb = (total - k * per_type) // per_type
            if fast_mb * per_type + k * per_type != total or k == shares[slow]:
                continue
            if fast_mb == k:  # the even split, already there
                continue
            plans[f"sweep, slow {k * args.micro_batch}"] = parse_plan(
                {
                    "global_batch": args.global_batch,
                    "ranks": [
                        {
                            "rank": i,
                            "type": chip,
                            "micro_batches": fast_mb if chip == fast else k,
                            "micro_batch_size": args.micro_batch,
                        }
                        for i, (chip, _) in enumerate(ranks)
                    ],
                },
                f"sweep {k}",
            )
    return plans


def describe(plan: HeteroPlan) -> str:
    return ", ".join(f"{r.type}:{r.samples}" for r in plan.ranks) + f" (global {plan.global_batch})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--speeds", type=float, nargs=2, default=[1.0, 0.4], metavar=("FAST", "SLOW")
    )
    parser.add_argument("--ranks-per-type", type=int, default=2)
    parser.add_argument("--global-batch", type=int, default=280)
    parser.add_argument("--micro-batch", type=int, default=10)
    parser.add_argument(
        "--sample-ms", type=float, default=1.0, help="emulated ms per sample at speed 1.0"
    )
    parser.add_argument("--steps", type=int, default=12, help="counted steps per job")
    parser.add_argument("--warmup", type=int, default=3, help="uncounted steps per job")
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    parser.add_argument(
        "--no-sweep",
        dest="sweep",
        action="store_false",
        help="skip the other splits (the sweep the planner's split is compared with)",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(json.loads(args.worker))
        return

    config = {
        "speeds": {"fast": args.speeds[0], "slow": args.speeds[1]},
        "sample_ms": args.sample_ms,
        "steps": args.steps,
        "warmup": args.warmup,
        "width": args.width,
        "hidden": args.hidden,
    }
    plans = jobs(args)
    params = args.width * args.hidden * 2 + args.hidden + args.width
    # what the declared speeds allow: the slowest rank's step sets the pace
    ideal = {
        name: min(config["speeds"][r.type] / r.samples for r in p.ranks)
        * p.global_batch
        * 1e3
        / args.sample_ms
        for name, p in plans.items()
    }
    print(
        f"mixed-chip data parallelism, emulated chips (pacing; see the docstring): "
        f"fast {args.speeds[0]}×, slow {args.speeds[1]}×, {args.ranks_per_type} ranks each, "
        f"{args.sample_ms} ms/sample at 1.0×; MLP {params / 1e6:.2f} M parameters; gloo; "
        f"{args.warmup} warm-up + {args.steps} counted steps per job; {args.rounds} rounds"
    )
    for name, p in plans.items():
        print(f"  {name:16s} {describe(p)}")
    names = list(plans)
    rounds: list[dict[str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds):
            order = names[i % len(names) :] + names[: i % len(names)]
            figures = {name: run_job(plans[name], config, Path(tmp)) for name in order}
            rounds.append(figures)
            total = figures["fast only"]["samples_per_s"] + figures["slow only"]["samples_per_s"]
            print(
                f"round {i + 1}: "
                + ", ".join(f"{n} {figures[n]['samples_per_s']:.0f}/s" for n in names)
                + f"; by speed ÷ sum {figures['mixed, by speed']['samples_per_s'] / total:.1%}"
                + f", even ÷ sum {figures['mixed, even']['samples_per_s'] / total:.1%}"
            )

    def med(name: str, key: str = "samples_per_s") -> float:
        return statistics.median(r[name][key] for r in rounds)

    def ratio(name: str) -> list[float]:
        return [
            r[name]["samples_per_s"]
            / (r["fast only"]["samples_per_s"] + r["slow only"]["samples_per_s"])
            for r in rounds
        ]

    print(f"\n{'job':18s} {'samples/s':>10s} {'step ms':>8s} {'ideal/s':>8s} {'of ideal':>9s}")
    for name in names:
        print(
            f"{name:18s} {med(name):10.0f} {med(name, 'step_ms'):8.1f} {ideal[name]:8.0f} "
            f"{med(name) / ideal[name]:9.1%}"
        )
    summed = statistics.median(
        r["fast only"]["samples_per_s"] + r["slow only"]["samples_per_s"] for r in rounds
    )
    print(f"{'fast + slow apart':18s} {summed:10.0f}")
    by_speed, even = ratio("mixed, by speed"), ratio("mixed, even")
    verdict = "met" if statistics.median(by_speed) >= GOAL else "NOT met"
    print(
        f"\nmixed by speed ÷ (fast only + slow only): median {statistics.median(by_speed):.1%} "
        f"(per round {', '.join(f'{x:.1%}' for x in by_speed)}); goal ≥ {GOAL:.0%}: {verdict}"
    )
    print(
        f"mixed even     ÷ (fast only + slow only): median {statistics.median(even):.1%} "
        f"(per round {', '.join(f'{x:.1%}' for x in even)})"
    )
    mixed = [n for n in names if n not in ("fast only", "slow only")]
    best = max(mixed, key=med)
    planner = "mixed, by speed"
    vs_best = [r[planner]["samples_per_s"] / r[best]["samples_per_s"] for r in rounds]
    error = [r[planner]["samples_per_s"] / ideal[planner] - 1 for r in rounds]
    print(
        f"best split of {len(mixed)} tried: {best} ({describe(plans[best])}); the planner's "
        f"split ÷ it: median {statistics.median(vs_best):.1%} "
        f"(per round {', '.join(f'{x:.1%}' for x in vs_best)})"
    )
    print(
        f"planner's predicted throughput {ideal[planner]:.0f}/s vs measured: error median "
        f"{statistics.median(error):+.1%} (per round {', '.join(f'{x:+.1%}' for x in error)})"
    )
    if args.json:
        print(
            json.dumps(
                {
                    "rounds": rounds,
                    "by_speed_ratio": by_speed,
                    "even_ratio": even,
                    "best_split": best,
                    "planner_vs_best": vs_best,
                    "prediction_error": error,
                }
            )
        )


if __name__ == "__main__":
    main()
