"""A 2-rank gloo loop that times its collectives with ``progress.comm()``: per step, a fixed
amount of compute, then an all-reduce of a 4 MB tensor, as data parallelism does.

    baige run --nproc-per-node 2 -- python comm_trainer.py --steps 80
"""

from __future__ import annotations

import argparse
from datetime import timedelta

import torch
import torch.distributed as dist

import baige.runtime


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=80)
    p.add_argument("--compute", type=int, default=16, help="matmuls per step")
    p.add_argument("--numel", type=int, default=1 << 20)
    args = p.parse_args()
    torch.set_num_threads(1)
    progress = baige.runtime.attach(total_steps=args.steps)
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    a = torch.randn(192, 192)
    grads = torch.ones(args.numel)
    for step in range(args.steps):
        for _ in range(args.compute):
            a = torch.tanh(a @ a)
        with progress.comm():
            dist.all_reduce(grads)
        grads.fill_(1.0)
        progress.step(step)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
