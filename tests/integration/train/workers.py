"""A rank of the mixed-chip correctness test, run as ``python -m
tests.integration.train.workers OUT_DIR STEPS`` with torchrun-style environment variables
and ``BAIGE_HETERO_PLAN``, so every rank is a real process talking gloo on 127.0.0.1.

Each rank trains the same tiny MLP twice from the same start: once with ``baige.train.hetero``
(sample-weighted, hierarchical) and once with plain DDP over the world group (which averages
the ranks' gradients, the naive thing to do with uneven batches). It writes the global-batch
loss of every step and its final parameters to ``OUT_DIR/rank-R.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import TensorDataset

from baige.train import hetero

FEATURES = 8
DATA_SEED = 1234
MODEL_SEED = 0
SHUFFLE_SEED = 7
LR = 0.1


def dataset(samples: int) -> TensorDataset:
    """A fixed regression problem: a random teacher network plus noise."""
    g = torch.Generator().manual_seed(DATA_SEED)
    x = torch.randn(samples, FEATURES, generator=g)
    w = torch.randn(FEATURES, 1, generator=g)
    y = 2 * torch.tanh(x @ w / FEATURES**0.5) + 0.05 * torch.randn(samples, 1, generator=g)
    return TensorDataset(x, y)


def model(seed: int = MODEL_SEED) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(FEATURES, 32), nn.Tanh(), nn.Linear(32, 1))


def optimizer(m: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(m.parameters(), lr=LR, momentum=0.5)


def train(
    ctx: hetero.HeteroContext, ddp: DistributedDataParallel, data: TensorDataset, steps: int
) -> list[float]:
    opt = optimizer(ddp)
    losses = []
    for step, (x, y) in enumerate(ctx.loader(data, seed=SHUFFLE_SEED)):
        if step == steps:
            break
        local = 0.0
        for mx, my in ctx.micro_steps(ddp, x, y):
            loss = F.mse_loss(ddp(mx), my) / ctx.micro_batches
            loss.backward()
            local += loss.item()
        losses.append(ctx.global_mean(local))
        opt.step()
        opt.zero_grad()
    return losses


def main(out: Path, steps: int) -> None:
    torch.set_num_threads(1)
    ctx = hetero.init()
    data = dataset(ctx.global_batch * steps + 5)
    # every rank but 0 starts elsewhere: wrap() must bring them all to rank 0's parameters
    weighted = ctx.wrap(model(MODEL_SEED + ctx.rank))
    hetero_losses = train(ctx, weighted, data, steps)
    naive = DistributedDataParallel(model(MODEL_SEED))  # world group, gradients averaged
    naive_losses = train(ctx, naive, data, steps)
    params = torch.cat([p.detach().reshape(-1) for p in weighted.module.parameters()])
    record = {
        "rank": ctx.rank,
        "type": ctx.type,
        "local_batch": ctx.local_batch_size,
        "hetero": hetero_losses,
        "naive": naive_losses,
        "params": params.tolist(),
    }
    (out / f"rank-{ctx.rank}.json").write_text(json.dumps(record))
    ctx.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
