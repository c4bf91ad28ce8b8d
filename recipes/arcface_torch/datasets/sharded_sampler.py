"""Epoch-seeded sampler that gives every rank the same number of full batches and can start mid-epoch.

Equal per-rank batch counts keep the all-gather of the partial-FC head in step on every rank; the
start offset lets `resume` continue an epoch exactly where the checkpoint left it.
"""

from __future__ import annotations

import torch
from torch.utils.data import Sampler


class ShardedEpochSampler(Sampler[int]):
    """Indices of a seeded permutation for (seed, epoch), rank r taking every world_size-th one, truncated
    to a whole number of batches; `set_epoch(e, start_batch=k)` skips the first k batches of the epoch."""

    def __init__(self, dataset_size: int, batch_size: int, rank: int = 0, world_size: int = 1, seed: int = 0):
        self.batches_per_epoch = dataset_size // world_size // batch_size
        if self.batches_per_epoch < 1:
            raise ValueError(
                f"the dataset has {dataset_size} samples, fewer than one global batch "
                f"(batch_size {batch_size} x {world_size} ranks); lower config.batch_size or use more data"
            )
        self.dataset_size, self.batch_size, self.rank, self.world_size, self.seed = (
            dataset_size,
            batch_size,
            rank,
            world_size,
            seed,
        )
        self.epoch, self.start_batch = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.dataset_size, generator=generator)
        mine = order[self.rank :: self.world_size][: self.batches_per_epoch * self.batch_size]
        return iter(mine[self.start_batch * self.batch_size :].tolist())

    def __len__(self) -> int:
        return (self.batches_per_epoch - self.start_batch) * self.batch_size
