"""A training script that runs anywhere: linear regression by SGD, pure Python.

Prints its loss every few steps; with BAIGE_REPLICAS > 1 each replica trains on its own
shard (RANK/WORLD_SIZE, as torch.distributed would set them).
"""

from __future__ import annotations

import argparse
import os
import random
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--sleep", type=float, default=0.02, help="seconds per step")
    args = parser.parse_args()
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    devices = os.environ.get("CUDA_VISIBLE_DEVICES", "none")
    print(
        f"rank {rank}/{world} on {os.environ.get('BAIGE_NODE', '?')}, devices {devices}", flush=True
    )
    rng = random.Random(rank)
    true_w, true_b = 3.0, -1.0
    w, b, lr = 0.0, 0.0, 0.05
    for step in range(1, args.steps + 1):
        x = rng.uniform(-1, 1)
        y = true_w * x + true_b + rng.gauss(0, 0.05)
        error = w * x + b - y
        w -= lr * error * x
        b -= lr * error
        if step % 20 == 0 or step == args.steps:
            print(f"step {step} loss {error * error:.5f} w {w:.3f} b {b:.3f}", flush=True)
        time.sleep(args.sleep)
    print("done", flush=True)


if __name__ == "__main__":
    main()
