"""Data parallelism across chip types under ``baige run``: uneven batches, flash checkpoints.

    BAIGE_HETERO_PLAN=plan.json baige run --nproc-per-node 3 -- \
        python examples/runtime/train_hetero.py --steps 200 --pace-from-plan

Every rank reads the plan (``$BAIGE_HETERO_PLAN``: which rank is which chip type and how many
micro-batches it takes, see docs/train.md; a Baige job on a mixed cluster is given one) and
``baige.train.hetero`` does the rest: each rank takes its slice of every global batch, and the
gradients are weighted by samples and reduced within each type, then between the types'
leaders, so the model trains exactly as it would on one machine with the whole batch.

It is resumable bit for bit, like ``train_transformer.py``: the global batch of step ``s`` is
a function of (seed, s) alone, each rank takes the slice the plan gives it, there is no
dropout, and a ``baige.ckpt.Checkpointer`` saves model, optimizer and RNG state every
``--save-every`` steps, so a killed rank of either type restarts the group, which resumes from
shared memory and ends with the loss an uninterrupted run ends with.

Fake chips: on fake cards each rank paces its compute to its type's speed
(``baige.train.pacing``: ``BAIGE_FAKE_SPEED``, set by ``baige up --fake-accelerators``), or,
with ``--pace-from-plan`` on one machine, to the catalog speed of its type in the plan.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import baige.runtime
from baige.ckpt import Checkpointer, rng_state, set_rng_state
from baige.hw.discovery import fake_speed
from baige.train import hetero
from baige.train.pacing import Pacer


def global_batch(seed: int, step: int, size: int, features: int) -> tuple[torch.Tensor, ...]:
    """Step ``step``'s whole batch: a fixed teacher network's answers to random inputs."""
    teacher = torch.Generator().manual_seed(seed)
    w = torch.randn(features, 1, generator=teacher)
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    x = torch.randn(size, features, generator=g)
    y = 2 * torch.tanh(x @ w / math.sqrt(features)) + 0.05 * torch.randn(size, 1, generator=g)
    return x, y


def make_pacer(ctx: hetero.HeteroContext, from_plan: bool) -> Pacer:
    if not from_plan:
        return Pacer.from_env()
    speeds = {t: fake_speed(t) for t in ctx.plan.types}
    return Pacer(speeds[ctx.type], max(speeds.values()))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--save-every", type=int, default=5)
    p.add_argument("--ckpt-dir", default="")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--features", type=int, default=16)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--log-every", type=int, default=1)
    p.add_argument("--pace-from-plan", action="store_true", help="fake speeds by plan type")
    p.add_argument("--linger", type=float, default=600.0, help="shared memory kept after a crash")
    p.add_argument("--out", default="", help="rank 0 writes its final loss here (JSON)")
    args = p.parse_args()

    torch.set_num_threads(1)
    progress = baige.runtime.attach(total_steps=args.steps)
    ctx = hetero.init()
    pacer = make_pacer(ctx, args.pace_from_plan)
    print(
        f"rank={ctx.rank}/{ctx.world_size} type={ctx.type} local_batch={ctx.local_batch_size} "
        f"of {ctx.global_batch} pace={pacer.factor:.2f} t={time.time():.3f}",
        flush=True,
    )
    torch.manual_seed(args.seed)
    model = nn.Sequential(
        nn.Linear(args.features, args.hidden), nn.Tanh(), nn.Linear(args.hidden, 1)
    )
    ddp = ctx.wrap(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=args.lr, momentum=0.5)
    ckpt_dir = args.ckpt_dir or str(Path(os.environ.get("BAIGE_RUN_DIR", ".")) / "ckpt")
    ck = Checkpointer(ckpt_dir, keep=2, linger_s=args.linger)

    start = 0
    restored = ck.load()
    if restored is not None:
        model.load_state_dict(restored.state["model"])
        opt.load_state_dict(restored.state["optimizer"])
        set_rng_state(restored.state["rng"])
        start = restored.state["step"] + 1
        progress.restored(restored.state["step"], restored.source)
        print(f"rank={ctx.rank} restored step={restored.state['step']} "
              f"source={restored.source} t={time.time():.3f}", flush=True)  # fmt: skip

    offset, local = ctx.plan.offset(ctx.rank), ctx.local_batch_size
    value = math.nan
    for step in range(start, args.steps):
        x, y = global_batch(args.seed, step, ctx.global_batch, args.features)
        x, y = x[offset : offset + local], y[offset : offset + local]
        with pacer.compute():
            mean = 0.0
            for mx, my in ctx.micro_steps(ddp, x, y):
                loss = F.mse_loss(ddp(mx), my) / ctx.micro_batches  # the local batch's mean
                loss.backward()
                mean += loss.item()
        opt.step()
        opt.zero_grad(set_to_none=True)
        value = ctx.global_mean(mean)  # the whole batch's loss, weighted by samples
        progress.step(step, loss=value)
        if args.log_every and (step % args.log_every == 0 or step == args.steps - 1):
            print(f"rank={ctx.rank} step={step} loss={value!r} t={time.time():.3f}", flush=True)
        stopping = progress.stop_requested
        if (step + 1) % args.save_every == 0 or step == args.steps - 1 or stopping:
            state = {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "rng": rng_state(),
                "step": step,
            }
            ck.save(step, state)
        if stopping:
            ck.wait()
            print(f"rank={ctx.rank} stopped at step={step}, saved", flush=True)
            ck.close()
            ctx.close()
            return

    if ctx.rank == 0 and args.out:
        Path(args.out).write_text(
            json.dumps({"step": args.steps - 1, "loss": value, "loss_hex": value.hex()})
        )
    ck.close()
    progress.finish()
    ctx.close()


if __name__ == "__main__":
    main()
