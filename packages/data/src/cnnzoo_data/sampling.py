"""Samplers and a dataset wrapper that make every epoch reproducible.

The order of epoch e is a permutation seeded by (seed, e), and the random augmentation of
sample i in epoch e is seeded by (seed, e, i). Neither depends on the number of workers or
processes, nor on what ran before, so a run resumed from a checkpoint sees exactly the
batches the uninterrupted run would have seen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sized
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


class TransformedDataset(Dataset):
    """A base dataset of (image, label) pairs seen through a transform.

    With `seed` set, the transform's randomness for sample i in epoch `epoch` is drawn
    from its own generator state, seeded by (seed, epoch, i).
    """

    def __init__(self, base: Dataset, transform: Callable[[Any], Any], seed: int | None = None):
        self.base = base
        self.transform = transform
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image, label = self.base[index]
        if self.seed is None:
            return self.transform(image), label
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(hash((self.seed, self.epoch, index)) & 0x7FFF_FFFF_FFFF_FFFF)
            return self.transform(image), label


class EpochSampler(DistributedSampler):
    """Training order: shuffled by (seed, epoch) and sharded across processes.

    Lightning calls `set_epoch` before each epoch and leaves a DistributedSampler in place
    under DDP; the epoch is passed on to a `TransformedDataset` for its augmentation seeds.
    """

    def __init__(self, dataset: Sized, seed: int, shuffle: bool = True) -> None:
        num_replicas, rank = _world()
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        if isinstance(self.dataset, TransformedDataset):
            self.dataset.epoch = epoch


class EvalSampler(DistributedSampler):
    """Evaluation order: each sample exactly once across all processes (no padding), so
    top-k errors synced over DDP equal the single-process figures."""

    def __init__(self, dataset: Sized) -> None:
        num_replicas, rank = _world()
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, len(self.dataset), self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, len(self.dataset), self.num_replicas))
