"""Data parallelism across accelerator types of different speeds, in a few lines of a script.

::

    from baige.train import hetero

    ctx = hetero.init()                       # reads $BAIGE_HETERO_PLAN, makes the groups
    model = ctx.wrap(model.to(ctx.device))    # DDP with the sample-weighted hierarchical hook
    for x, y in ctx.loader(dataset):          # this rank's share of each global batch
        for mx, my in ctx.micro_steps(model, x, y):
            (loss_fn(model(mx), my) / ctx.micro_batches).backward()
        opt.step()
        opt.zero_grad()

A fast chip takes more samples per step than a slow one (the plan says how many), so all
ranks finish their backward pass together; the gradients are weighted by samples, so the
model trains exactly as a homogeneous run with the same global batch would. Nothing of DDP
is rewritten: the library makes process groups (``torch.distributed.new_group``) and
registers a communication hook (:mod:`baige.train.comm`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sized
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch._C._distributed_c10d import HashStore
from torch.distributed import ProcessGroup
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from baige.train.comm import HookState, broadcast_from_rank0_, hierarchical_hook
from baige.train.plan import PLAN_ENV, HeteroPlan, PlanError, RankShare, load_plan, plan_from_env
from baige.train.sampler import HeteroSampler

__all__ = ["HeteroContext", "auto_backend", "init"]

_LAUNCH_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def auto_backend() -> str:
    """The collective library for this rank's own chips: NCCL on CUDA (and ROCm, which
    PyTorch calls CUDA), HCCL on Ascend (``torch_npu``), gloo otherwise."""
    if torch.cuda.is_available() and dist.is_nccl_available():
        return "nccl"
    npu = getattr(torch, "npu", None)
    if npu is not None and npu.is_available():
        return "hccl"
    return "gloo"


def _device_for(backend: str) -> torch.device:
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if backend == "nccl":
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    if backend == "hccl":
        return torch.device("npu", local)
    return torch.device("cpu")


@dataclass(eq=False)
class HeteroContext:
    """One rank's view of a mixed-chip data-parallel job. Made by :func:`init`."""

    plan: HeteroPlan
    source: str
    rank: int
    backend: str
    device: torch.device
    type_group: ProcessGroup
    hook_state: HookState
    cpu_group: ProcessGroup | None
    owns_default_group: bool
    _closed: bool = field(default=False, repr=False)

    @property
    def share(self) -> RankShare:
        return self.plan.share(self.rank)

    @property
    def type(self) -> str:
        return self.share.type

    @property
    def world_size(self) -> int:
        return self.plan.world_size

    @property
    def global_batch(self) -> int:
        return self.plan.global_batch

    @property
    def local_batch_size(self) -> int:
        """Samples this rank processes per optimizer step."""
        return self.share.samples

    @property
    def micro_batches(self) -> int:
        return self.share.micro_batches

    @property
    def micro_batch_size(self) -> int:
        return self.share.micro_batch_size

    @property
    def weight(self) -> float:
        """This rank's gradient weight, ``local_batch_size / global_batch``."""
        return self.hook_state.weight

    @property
    def is_leader(self) -> bool:
        return self.rank == self.hook_state.type_leader

    def wrap(self, module: nn.Module, **ddp_kwargs: Any) -> DistributedDataParallel:
        """``DistributedDataParallel`` over this rank's type, with the hierarchical hook.

        DDP's own process group is the type's, so its checks, start-up broadcast and buffer
        broadcasts run on the type's native backend; before that, this checks that every
        rank holds the same parameter shapes and copies global rank 0's parameters and
        buffers to all ranks (to the other types over gloo). Buffers (batch-norm
        statistics) are then kept equal within a type only, by DDP.
        """
        if "process_group" in ddp_kwargs:
            raise TypeError("wrap() chooses DDP's process group (the rank's type); drop it")
        self._check_same_shapes(module)
        with torch.no_grad():
            states = [p.detach() for p in module.parameters()]
            states += [b.detach() for b in module.buffers()]
            broadcast_from_rank0_(states, self.hook_state)
        model = DistributedDataParallel(module, process_group=self.type_group, **ddp_kwargs)
        model.register_comm_hook(self.hook_state, hierarchical_hook)
        return model

    def sampler(
        self, dataset: Sized | int, *, shuffle: bool = True, seed: int = 0
    ) -> HeteroSampler:
        """This rank's uneven, contiguous share of every global batch (see
        :class:`HeteroSampler`); call ``set_epoch`` on it each epoch when shuffling."""
        return HeteroSampler(dataset, self.plan, self.rank, shuffle=shuffle, seed=seed)

    def loader(
        self, dataset: Dataset[Any], *, shuffle: bool = True, seed: int = 0, **kwargs: Any
    ) -> DataLoader[Any]:
        """A ``DataLoader`` whose every batch is this rank's part of one optimizer step."""
        if not isinstance(dataset, Sized):
            raise TypeError("the dataset must have a length (map-style)")
        sampler = self.sampler(dataset, shuffle=shuffle, seed=seed)
        return DataLoader(
            dataset, batch_size=self.local_batch_size, sampler=sampler, drop_last=True, **kwargs
        )

    def micro_steps(
        self, model: DistributedDataParallel, *tensors: torch.Tensor
    ) -> Iterator[tuple[torch.Tensor, ...]]:
        """Cut a local batch into the plan's micro-batches; all but the last are yielded
        under ``model.no_sync()`` so gradients are exchanged once per optimizer step.

        Run each micro-batch's backward in the loop body, dividing a mean loss by
        :attr:`micro_batches` so the rank's gradient is the mean over its local batch.
        """
        for t in tensors:
            if t.shape[0] != self.local_batch_size:
                raise ValueError(
                    f"a local batch of {t.shape[0]} samples, but rank {self.rank} takes "
                    f"{self.local_batch_size} ({self.micro_batches} × {self.micro_batch_size})"
                )
        pieces = [torch.split(t, self.micro_batch_size) for t in tensors]
        last = self.micro_batches - 1
        for i in range(self.micro_batches):
            sync = contextlib.nullcontext() if i == last else model.no_sync()
            with sync:
                yield tuple(p[i] for p in pieces)

    def global_mean(self, value: float | torch.Tensor) -> float:
        """The sample-weighted mean over all ranks of a per-rank mean (a loss, an accuracy):
        the figure a homogeneous run would log for the whole global batch."""
        local = float(value.detach().item() if isinstance(value, torch.Tensor) else value)
        total = torch.tensor([local * self.weight], dtype=torch.float64)
        dist.all_reduce(total, group=self.cpu_group)
        return float(total.item())

    def close(self) -> None:
        """Destroy the default process group if :func:`init` made it (and with it the
        groups made here)."""
        if not self._closed and self.owns_default_group and dist.is_initialized():
            dist.destroy_process_group()
        self._closed = True

    def __enter__(self) -> HeteroContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_same_shapes(self, module: nn.Module) -> None:
        """Fail on every rank alike, with the first difference, if the ranks' models differ;
        mismatched buckets would otherwise hang or garble the gloo leg between types."""
        mine = [(n, tuple(p.shape), str(p.dtype)) for n, p in module.named_parameters()]
        everyone: list[Any] = [None] * self.world_size
        dist.all_gather_object(everyone, mine, group=self.cpu_group)
        for rank, theirs in enumerate(everyone):
            if theirs != everyone[0]:
                diff = next(
                    (f"{a} vs {b}" for a, b in zip(everyone[0], theirs, strict=False) if a != b),
                    f"{len(everyone[0])} vs {len(theirs)} parameters",
                )
                kind = self.plan.share(rank).type
                raise RuntimeError(
                    f"rank {rank} ({kind}) has a different model from rank 0: {diff}"
                )


def _resolve_plan(plan: HeteroPlan | str | os.PathLike[str] | None) -> tuple[HeteroPlan, str]:
    if isinstance(plan, HeteroPlan):
        return plan, "plan"
    if plan is None:
        return plan_from_env(), os.environ.get(PLAN_ENV, PLAN_ENV)
    return load_plan(plan), str(Path(plan))


def init(
    plan: HeteroPlan | str | os.PathLike[str] | None = None,
    *,
    backend: str | None = None,
    timeout: timedelta | None = None,
) -> HeteroContext:
    """Join the job and make its process groups.

    ``plan``: a :class:`HeteroPlan`, a path to a plan file, or None for the file named by
    ``BAIGE_HETERO_PLAN``. ``backend`` overrides this rank's within-type backend (the plan's
    ``backends`` entry, else ``auto``). The default process group, when not yet made, is
    made over gloo from the launcher's ``RANK``/``WORLD_SIZE``/``MASTER_ADDR``/
    ``MASTER_PORT`` (torchrun, ``baige``), since it spans all types; a one-rank plan needs
    no launcher. Every rank must call this, in the same order relative to other group
    creations.
    """
    the_plan, source = _resolve_plan(plan)
    owns = False
    if not dist.is_initialized():
        if all(k in os.environ for k in _LAUNCH_ENV):
            dist.init_process_group("gloo", timeout=timeout)
        elif the_plan.world_size == 1:
            dist.init_process_group(
                "gloo", store=HashStore(), rank=0, world_size=1, timeout=timeout
            )
        else:
            missing = [k for k in _LAUNCH_ENV if k not in os.environ]
            raise PlanError(
                f"{source}: the plan has {the_plan.world_size} ranks but {', '.join(missing)} "
                "is not set: start the ranks with torchrun or a Baige job"
            )
        owns = True
    world = dist.get_world_size()
    if world != the_plan.world_size:
        if owns:
            dist.destroy_process_group()
        raise PlanError(
            f"{source}: ranks: the plan has {the_plan.world_size} ranks but the job has "
            f"{world} (WORLD_SIZE)"
        )
    rank = dist.get_rank()
    my_type = the_plan.share(rank).type
    mine = backend or the_plan.backend_of(my_type)
    if mine == "auto":
        mine = auto_backend()

    type_group: ProcessGroup | None = None
    for chip_type in the_plan.types:
        members = list(the_plan.ranks_of(chip_type))
        # non-members create nothing, but must still take part, in the same order
        group = dist.new_group(
            members,
            timeout=timeout,
            backend=mine if chip_type == my_type else "gloo",
            group_desc=f"baige_hetero_type_{chip_type}",
        )
        if chip_type == my_type:
            type_group = group
    assert type_group is not None
    leaders = [the_plan.leader_of(t) for t in the_plan.types]
    leaders_group: ProcessGroup | None = None
    if len(leaders) > 1:
        group = dist.new_group(
            leaders, timeout=timeout, backend="gloo", group_desc="baige_hetero_leaders"
        )
        leaders_group = group if rank in leaders else None
    cpu_group: ProcessGroup | None = None
    if dist.get_backend() != "gloo":
        cpu_group = dist.new_group(timeout=timeout, backend="gloo", group_desc="baige_hetero_cpu")

    leader = the_plan.leader_of(my_type)
    state = HookState(
        weight=the_plan.weight(rank),
        type_group=type_group if len(the_plan.ranks_of(my_type)) > 1 else None,
        type_leader=leader,
        leaders_group=leaders_group,
        single_type=len(leaders) == 1,
    )
    return HeteroContext(
        plan=the_plan,
        source=source,
        rank=rank,
        backend=mine,
        device=_device_for(mine),
        type_group=type_group,
        hook_state=state,
        cpu_group=cpu_group,
        owns_default_group=owns,
    )
