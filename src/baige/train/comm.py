"""The DDP communication hook: sample-weighted, hierarchical gradient all-reduce.

Why weighted: with uneven local batches, averaging the ranks' gradients (what DDP does by
default, dividing by the world size) over-weights the samples of ranks with small batches.
If every rank's loss is the mean over its own samples, its gradient ``g_r`` is the mean of
its ``n_r`` per-sample gradients; then ``sum_r (n_r / B) · g_r`` is the mean over the global
batch ``B``, exactly what one process with the whole batch computes. So the hook scales the
bucket by ``n_r / B`` and *sums*.

Why hierarchical: chips of one type share a fast native fabric and library (NCCL, HCCL, …)
that cannot talk to another vendor's chips. The sum is done in three legs: a reduce to the
type's leader (its lowest rank) over the type's own process group, an all-reduce between
the leaders over gloo on host memory (in float32), and a broadcast from each leader back
over the type's group. A type with one rank skips its legs; a job of one type is a plain
all-reduce.
"""

# No ``from __future__ import annotations`` here: DDP checks that the hook's ``bucket``
# annotation *is* the GradBucket class, and a string is not.
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch._C._distributed_c10d import GradBucket
from torch.distributed import ProcessGroup

__all__ = ["HookState", "broadcast_from_rank0_", "hierarchical_hook", "hierarchical_sum_"]


@dataclass(frozen=True, slots=True)
class HookState:
    """What the hook needs on one rank.

    ``type_group`` is None when the rank's type has it alone; ``leaders_group`` is None on
    ranks that are not their type's leader and in jobs of a single type.
    """

    weight: float
    type_group: ProcessGroup | None
    type_leader: int
    leaders_group: ProcessGroup | None
    single_type: bool


def hierarchical_sum_(tensor: torch.Tensor, state: HookState) -> torch.Tensor:
    """Replace ``tensor`` on every rank by the sum of everyone's ``tensor``, in place.

    Blocking on the host only where it must be: on the leader, the copy to host memory for
    the gloo leg waits for the type's reduce. On NCCL/HCCL the within-type legs are
    ordered on the current stream, so the caller (DDP) reads the result in order.
    """
    if state.single_type:
        if state.type_group is not None:
            dist.all_reduce(tensor, group=state.type_group)
        return tensor
    if state.type_group is not None:
        dist.reduce(tensor, dst=state.type_leader, group=state.type_group)
    if state.leaders_group is not None:
        staged = tensor.to(device="cpu", dtype=torch.float32)
        dist.all_reduce(staged, group=state.leaders_group)
        if staged is not tensor:
            tensor.copy_(staged)
    if state.type_group is not None:
        dist.broadcast(tensor, src=state.type_leader, group=state.type_group)
    return tensor


def hierarchical_hook(state: HookState, bucket: GradBucket) -> torch.futures.Future[torch.Tensor]:
    """DDP communication hook (``DistributedDataParallel.register_comm_hook``).

    DDP hands the hook the bucket of this rank's *local* gradients, undivided (dividing by
    the world size is the default hook's doing, which this one replaces).
    """
    tensor = bucket.buffer()
    tensor.mul_(state.weight)
    if state.single_type and state.type_group is not None:
        # one type: a plain all-reduce, left asynchronous so it overlaps the backward pass
        work = dist.all_reduce(tensor, group=state.type_group, async_op=True)
        assert work is not None
        summed: torch.futures.Future[torch.Tensor] = work.get_future().then(_first)
        return summed
    hierarchical_sum_(tensor, state)
    done: torch.futures.Future[torch.Tensor] = torch.futures.Future()
    done.set_result(tensor)
    return done


def _first(fut: torch.futures.Future[list[torch.Tensor]]) -> torch.Tensor:
    return fut.value()[0]


def broadcast_from_rank0_(tensors: list[torch.Tensor], state: HookState) -> None:
    """Make every rank's ``tensors`` (detached: parameters and buffers) equal to global
    rank 0's, along the same legs.

    Rank 0 is always a leader (the lowest rank of its type), so its values go to the other
    leaders over gloo and from each leader to its type.
    """
    for tensor in tensors:
        if state.leaders_group is not None:
            staged = tensor.to("cpu", copy=True)
            dist.broadcast(staged, src=0, group=state.leaders_group)
            tensor.copy_(staged)
        if state.type_group is not None:
            dist.broadcast(tensor, src=state.type_leader, group=state.type_group)
