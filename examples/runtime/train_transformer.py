"""A small transformer language model trained on CPU with gloo, fault-tolerant under Baige.

    baige run --nproc-per-node 2 -- python examples/runtime/train_transformer.py --steps 300
    BAIGE_FAULT=kill:rank=1:step=100 baige run --nproc-per-node 2 -- python \
        examples/runtime/train_transformer.py --steps 300

What makes it resumable, and bit-for-bit so:
- ``baige.runtime.attach()`` / ``progress.step()``: the agent sees every step (and the
  fault plan in ``BAIGE_FAULT`` fires here);
- ``baige.ckpt.Checkpointer``: ``save`` copies model, optimizer and RNG state into shared
  memory every ``--save-every`` steps; after a restart ``load`` finds it there (or on disk)
  and the loop continues from the step after it;
- the batch of step ``s`` on rank ``r`` is a function of (seed, s, r) alone, and there is no
  dropout, so a resumed run computes exactly what an uninterrupted one would.

It runs unchanged under plain ``torchrun`` or ``python`` (one rank); the beacons are then off.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

import baige.runtime
from baige.ckpt import Checkpointer, rng_state, set_rng_state


class TinyLM(nn.Module):
    """Token and position embeddings, a causal transformer encoder, a tied output head."""

    def __init__(self, vocab: int, d_model: int, layers: int, heads: int, seq: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        self.pos = nn.Parameter(torch.zeros(seq, d_model))
        layer = nn.TransformerEncoderLayer(
            d_model, heads, dim_feedforward=4 * d_model, dropout=0.0, batch_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(seq))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.embed(tokens) + self.pos[: tokens.shape[1]]
        h = self.blocks(h, mask=self.mask, is_causal=True)
        return self.norm(h) @ self.embed.weight.T / math.sqrt(self.embed.embedding_dim)


def batch(
    seed: int, step: int, rank: int, size: int, seq: int, vocab: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequences that count up from a random start with a random stride: learnable, and the
    same for the same (seed, step, rank) whatever happened before."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step * 1_009 + rank)
    start = torch.randint(vocab, (size, 1), generator=g)
    stride = torch.randint(1, 4, (size, 1), generator=g)
    tokens = (start + stride * torch.arange(seq + 1)) % vocab
    return tokens[:, :-1], tokens[:, 1:]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--save-every", type=int, default=5)
    p.add_argument("--ckpt-dir", default="")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vocab", type=int, default=64)
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--seq", type=int, default=32)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--pg-timeout", type=float, default=600.0, help="gloo collective timeout")
    p.add_argument("--linger", type=float, default=600.0, help="shared memory kept after a crash")
    p.add_argument("--out", default="", help="rank 0 writes its final loss here (JSON)")
    args = p.parse_args()

    torch.set_num_threads(1)
    attempt = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    progress = baige.runtime.attach(total_steps=args.steps)
    dist.init_process_group("gloo", timeout=timedelta(seconds=args.pg_timeout))
    rank, world = dist.get_rank(), dist.get_world_size()
    print(f"attempt={attempt} rank={rank}/{world} started t={time.time():.3f}", flush=True)

    torch.manual_seed(args.seed)
    model = TinyLM(args.vocab, args.d_model, args.layers, args.heads, args.seq)
    net = nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr)
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
        print(
            f"rank={rank} restored step={restored.state['step']} source={restored.source} "
            f"t={time.time():.3f}",
            flush=True,
        )

    value = math.nan
    for step in range(start, args.steps):
        x, y = batch(args.seed, step, rank, args.batch, args.seq, args.vocab)
        loss = F.cross_entropy(net(x).flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        value = loss.item()
        progress.step(step, loss=value)
        if args.log_every and (step % args.log_every == 0 or step == args.steps - 1):
            print(f"rank={rank} step={step} loss={value:.6f} t={time.time():.3f}", flush=True)
        # progress.stop_requested: the job is being preempted or shrunk and declared
        # `checkpoint:` — save now, so no step is lost, and leave
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
            ck.wait()  # on disk: the job may restart on another node
            print(f"rank={rank} stopped at step={step}, saved", flush=True)
            ck.close()
            return

    if rank == 0 and args.out:
        Path(args.out).write_text(
            json.dumps({"step": args.steps - 1, "loss": value, "loss_hex": value.hex()})
        )
    ck.close()
    progress.finish()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
