"""A batch sampler that shards over processes and resumes mid-epoch exactly.

Epoch e shuffles with a generator seeded by (seed, e), the same on every process; process r of W
takes positions r, r + W, ... of the permutation (padded by wrapping so every process gets the same
number of batches, as torch's DistributedSampler), in batches of ``batch_size``. Batch k of one
process with batch size b * W holds exactly the images of batch k of the W processes together.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch


class ResumableBatchSampler:
    """-> lists of dataset indices; :meth:`set_epoch` (epoch, first batch) before each epoch."""

    def __init__(
        self, length: int, batch_size: int, *, shuffle: bool, seed: int = 0, rank: int = 0, world: int = 1
    ) -> None:
        if length < 1:
            raise ValueError("the dataset is empty")
        self.length, self.batch_size, self.shuffle = length, batch_size, shuffle
        self.seed, self.rank, self.world = seed, rank, world
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Iterate epoch ``epoch`` from its batch ``start`` on (resume)."""
        self.epoch, self.start = epoch, start

    def _order(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.length, generator=g).tolist()
        else:
            order = list(range(self.length))
        total = -(-self.length // (self.batch_size * self.world)) * self.batch_size * self.world
        order = (order * (-(-total // self.length)))[:total]  # wrap so every process gets full batches
        return order[self.rank :: self.world]

    def __iter__(self) -> Iterator[list[int]]:
        mine = self._order()
        for k in range(self.start, len(self)):
            yield mine[k * self.batch_size : (k + 1) * self.batch_size]

    def __len__(self) -> int:
        return -(-self.length // (self.batch_size * self.world))
