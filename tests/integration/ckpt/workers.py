"""Trainer processes for the checkpoint integration tests, run as
``python -m tests.integration.ckpt.workers SCENARIO …`` so each is a real process that a
test can kill with SIGKILL, and so multi-rank runs use real torch.distributed over gloo.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from baige.ckpt import Checkpointer, ThrottledWriter, rng_state, set_rng_state

torch.set_num_threads(1)


def small_state(step: int, numel: int = 1000) -> dict[str, Any]:
    """A deterministic state whose every value depends on the step."""
    g = torch.Generator().manual_seed(step)
    return {
        "w": torch.randn(numel, generator=g),
        "b": torch.arange(7, dtype=torch.int64) * step,
        "half": torch.randn(3, 5, generator=g).to(torch.bfloat16),
        "meta": {"step": step, "name": f"s{step}"},
    }


class Stall:
    """A value whose pickling announces itself and never finishes: the trainer is then
    inside save(), its tensors copied, the slot not yet marked ready."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        Path(self.marker).write_text("inside save")
        time.sleep(600)
        return (str, ("unreachable",))


def stall(args: argparse.Namespace) -> None:
    ck = Checkpointer(args.dir, shm_dir=args.shm, linger_s=120)
    ck.save(1, small_state(1))
    ck.wait()
    ck.save(2, {**small_state(2), "stall": Stall(args.marker)})


def save_then_hang(args: argparse.Namespace) -> None:
    """Save step 1 and step 2 through a slow disk, then wait to be killed."""
    writer = ThrottledWriter(args.rate) if args.rate else None
    ck = Checkpointer(args.dir, shm_dir=args.shm, linger_s=120, writer=writer)
    ck.save(1, small_state(1, args.numel))
    ck.wait()
    ck.save(2, small_state(2, args.numel))
    Path(args.marker).write_text("saved")
    time.sleep(600)


def hold(args: argparse.Namespace) -> None:
    """Attach to a checkpoint directory and stay alive."""
    Checkpointer(args.dir, shm_dir=args.shm, linger_s=5)
    Path(args.marker).write_text("attached")
    time.sleep(600)


# ---------------------------------------------------------------- DDP training


def ddp(args: argparse.Namespace) -> None:
    """A 2-process DDP run; saves every ``--every`` steps, may SIGKILL itself after step
    ``--die-at``, may resume from the newest checkpoint. Appends ``step loss.hex()`` lines."""
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Dropout(0.2), nn.Linear(16, 1))
    net = nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.AdamW(net.parameters(), lr=0.02)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=4, gamma=0.5)
    torch.manual_seed(100 + rank)
    ck = Checkpointer(args.dir, shm_dir=args.shm, linger_s=120)
    out = Path(args.out) / f"rank{rank}.txt"
    start = 0
    if args.resume:
        restored = ck.load()
        assert restored is not None, "nothing to resume from"
        state = restored.state
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        start = state["next_step"]
        with out.open("a") as f:
            f.write(f"resumed {restored.step} {restored.source}\n")
    for step in range(start, args.steps):
        x = torch.randn(16, 8)
        y = x.sum(dim=1, keepdim=True)
        loss = F.mse_loss(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        with out.open("a") as f:
            f.write(f"{step} {loss.item().hex()}\n")
        if (step + 1) % args.every == 0:
            ck.save(
                step + 1,
                {
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "rng": rng_state(),
                    "next_step": step + 1,
                },
            )
        if step + 1 == args.die_at:
            os.kill(os.getpid(), signal.SIGKILL)
    ck.close()
    dist.destroy_process_group()


def agree(args: argparse.Namespace) -> None:
    """2 ranks: ``--phase save`` saves steps 1 and 2 and closes; ``--phase load`` loads and
    reports what every rank got."""
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    ck = Checkpointer(args.dir, shm_dir=args.shm, linger_s=30)
    if args.phase == "save":
        for step in (1, 2):
            ck.save(step, {"rank": rank, **small_state(10 * step + rank)})
        ck.close()
    else:
        restored = ck.load()
        assert restored is not None
        ok = torch.equal(restored.state["w"], small_state(10 * restored.step + rank)["w"])
        report = {
            "step": restored.step,
            "source": restored.source,
            "equal": ok,
            "rank_in_state": restored.state["rank"],
            "skipped": [[s.step, s.reason] for s in restored.skipped],
        }
        (Path(args.out) / f"rank{rank}.json").write_text(json.dumps(report))
        ck.close()
    dist.destroy_process_group()


# ---------------------------------------------------------------- FSDP2 / DTensor


def fsdp(args: argparse.Namespace) -> None:
    """FSDP2 over gloo on CPU. ``save``: train 2 steps, save step 2 through Baige, write the
    full tensors for reference. ``load``: load at this world size into a fresh model and
    compare with the reference; ``--direct`` also reads the DCP files with plain DCP;
    ``--resave N`` then saves step N at this layout and keeps it in memory."""
    # Only this scenario needs FSDP; the others start faster without it.
    from torch.distributed.checkpoint import load as dcp_load  # noqa: PLC0415
    from torch.distributed.checkpoint.state_dict import (  # noqa: PLC0415
        get_state_dict,
        set_state_dict,
    )
    from torch.distributed.device_mesh import init_device_mesh  # noqa: PLC0415
    from torch.distributed.fsdp import fully_shard  # noqa: PLC0415

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    mesh = init_device_mesh("cpu", (world,))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 3))
    fully_shard(model, mesh=mesh)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    ck = Checkpointer(args.dir, shm_dir=args.shm, linger_s=30)
    out = Path(args.out)

    def full(msd: dict[str, Any], osd: dict[str, Any]) -> dict[str, torch.Tensor]:
        tensors = {f"model.{k}": v.full_tensor() for k, v in msd.items()}
        for fqn, st in osd["state"].items():
            tensors[f"optim.{fqn}.exp_avg"] = st["exp_avg"].full_tensor()
            tensors[f"optim.{fqn}.step"] = st["step"]
        return tensors

    if args.phase == "save":
        g = torch.Generator().manual_seed(1)
        for _ in range(2):
            loss = model(torch.randn(4, 6, generator=g)).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        msd, osd = get_state_dict(model, opt)
        ck.save(args.step, {"model": msd, "optim": osd, "note": f"saved by {world} ranks"})
        reference = full(msd, osd)
        if rank == 0:
            torch.save(reference, out / f"reference-{args.step}.pt")
        if args.detach:
            ck.wait()
            ck.detach()
        else:
            ck.close()
    else:
        msd, osd = get_state_dict(model, opt)
        restored = ck.load({"model": msd, "optim": osd})
        assert restored is not None
        set_state_dict(
            model,
            opt,
            model_state_dict=restored.state["model"],
            optim_state_dict=restored.state["optim"],
        )
        msd2, osd2 = get_state_dict(model, opt)
        got = full(msd2, osd2)
        reference = torch.load(out / f"reference-{args.reference}.pt")
        report: dict[str, Any] = {
            "step": restored.step,
            "source": restored.source,
            "note": restored.state["note"],
            "equal": sorted(k for k in reference if torch.equal(reference[k], got[k])),
            "keys": sorted(reference),
        }
        if args.direct:
            # Plain DCP, no Baige: the sharded part is an ordinary DCP checkpoint.
            fresh = {k: torch.zeros_like(v) for k, v in msd2.items()}
            folder = Path(args.dir) / f"step-{restored.step:09d}" / "dcp"
            dcp_load({"model": fresh}, checkpoint_id=folder)
            report["direct_equal"] = all(
                torch.equal(fresh[k].full_tensor(), reference[f"model.{k}"]) for k in fresh
            )
        (out / f"load{world}-step{restored.step}-rank{rank}.json").write_text(json.dumps(report))
        if args.resave:
            ck.save(args.resave, {"model": msd2, "optim": osd2, "note": f"saved by {world} ranks"})
            if rank == 0:
                torch.save(got, out / f"reference-{args.resave}.pt")
            ck.wait()
            ck.detach()
        else:
            ck.close()
    dist.destroy_process_group()


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("scenario")
    p.add_argument("--dir", required=True)
    p.add_argument("--shm", required=True)
    p.add_argument("--out", default=".")
    p.add_argument("--marker", default="")
    p.add_argument("--phase", default="save")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--every", type=int, default=3)
    p.add_argument("--die-at", type=int, default=-1)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--rate", type=float, default=0.0)
    p.add_argument("--numel", type=int, default=1000)
    p.add_argument("--step", type=int, default=2)
    p.add_argument("--detach", action="store_true")
    p.add_argument("--direct", action="store_true")
    p.add_argument("--resave", type=int, default=0)
    p.add_argument("--reference", type=int, default=2)
    args = p.parse_args(argv)
    scenarios = {
        "stall": stall,
        "save_then_hang": save_then_hang,
        "hold": hold,
        "ddp": ddp,
        "agree": agree,
        "fsdp": fsdp,
    }
    scenarios[args.scenario](args)


if __name__ == "__main__":
    main(sys.argv[1:])
