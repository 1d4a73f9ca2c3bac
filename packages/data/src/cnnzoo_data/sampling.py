"""Samplers and a dataset wrapper that make every epoch reproducible.

The order of epoch e is a permutation seeded by (seed, e); each loader worker of epoch e
seeds its augmentation by (seed, e, worker). A run resumed from a checkpoint therefore sees
exactly the batches the uninterrupted run would have seen, with the same number of workers.
With no workers the augmentation draws from the main process's RNG, which the checkpoint
restores.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sized
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler, get_worker_info


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


class TransformedDataset(Dataset):
    """A base dataset of (image, label) pairs seen through a per-image transform."""

    def __init__(self, base: Dataset, transform: Callable[[Any], Any] | None, seed: int = 0):
        self.base = base
        self.transform = transform
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image, label = self.base[index]
        return (self.transform(image) if self.transform is not None else image), label


def seed_worker(worker_id: int) -> None:
    """DataLoader worker_init_fn: seed torch by (seed, epoch, worker, rank)."""
    info = get_worker_info()
    dataset = info.dataset
    _, rank = _world()
    if isinstance(dataset, TransformedDataset):
        torch.manual_seed(
            hash((dataset.seed, dataset.epoch, worker_id, rank)) & 0x7FFF_FFFF_FFFF_FFFF
        )


class EpochSampler(DistributedSampler):
    """Training order: shuffled by (seed, epoch) and sharded across processes.

    Lightning calls `set_epoch` before each epoch and leaves a DistributedSampler in place
    under DDP; the epoch is passed on to a `TransformedDataset` for its workers' seeds.
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


class _FirstBatchIterator:
    """An iterator that makes the loader's real iterator only when the first batch is asked."""

    def __init__(self, start: Callable[[], Iterator]) -> None:
        self._start = start
        self._iterator: Iterator | None = None

    def __iter__(self) -> _FirstBatchIterator:
        return self

    def __next__(self):
        if self._iterator is None:
            self._iterator = self._start()
        return next(self._iterator)


class EpochDataLoader(DataLoader):
    """The training loader: its iterator draws indices and starts workers at the first batch.

    Lightning makes the training iterator before it calls `set_epoch`, and on resuming keeps
    that iterator for the first epoch (Lightning issue #21938); a multi-process iterator
    draws its first indices and forks its workers when it is made, so the resumed epoch
    would replay epoch 0's order and augmentation. Deferred, they are those of the epoch set.
    """

    def __iter__(self) -> Iterator:
        return _FirstBatchIterator(super().__iter__)
