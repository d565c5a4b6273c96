"""Each rank's uneven, contiguous share of every global batch.

``torch.utils.data.DistributedSampler`` deals samples round-robin, one per rank in turn,
which can only give every rank the same number. Here the epoch's order (one permutation,
the same on every rank, from the seed and the epoch) is cut into global batches, and rank
``r`` takes the slice ``[offset_r, offset_r + samples_r)`` of each. The ranks of one step
therefore see exactly the samples that a single process with the whole global batch would
see in that step, which is what makes the mixed run comparable to a homogeneous one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized

import torch
from torch.utils.data import Sampler

from baige.train.plan import HeteroPlan

__all__ = ["HeteroSampler"]


class HeteroSampler(Sampler[int]):
    """Indices for one rank: its share of each global batch, step after step.

    Use it with ``DataLoader(batch_size=<the rank's local batch>, drop_last=True)`` so that
    each loader batch is that rank's part of one optimizer step. The samples left over after
    the last whole global batch of an epoch are skipped in that epoch (``len(dataset) %
    global_batch`` of them), as a homogeneous run with ``drop_last`` does; with shuffling
    they are different samples each epoch. Call :meth:`set_epoch` before each epoch.
    """

    def __init__(
        self,
        dataset: Sized | int,
        plan: HeteroPlan,
        rank: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
    ) -> None:
        self.size = dataset if isinstance(dataset, int) else len(dataset)
        if not 0 <= rank < plan.world_size:
            raise ValueError(f"rank {rank} is not in the plan (ranks 0..{plan.world_size - 1})")
        if self.size < plan.global_batch:
            raise ValueError(
                f"the dataset has {self.size} samples, fewer than one global batch "
                f"({plan.global_batch})"
            )
        self.global_batch = plan.global_batch
        self.start = plan.offset(rank)
        self.samples = plan.share(rank).samples
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0

    @property
    def steps(self) -> int:
        """Optimizer steps per epoch."""
        return self.size // self.global_batch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self) -> torch.Tensor:
        """The epoch's order of the whole dataset, identical on every rank."""
        if not self.shuffle:
            return torch.arange(self.size)
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        return torch.randperm(self.size, generator=g)

    def __iter__(self) -> Iterator[int]:
        order = self.order()[: self.steps * self.global_batch].view(self.steps, -1)
        mine = order[:, self.start : self.start + self.samples]
        return iter(mine.reshape(-1).tolist())

    def __len__(self) -> int:
        return self.steps * self.samples
