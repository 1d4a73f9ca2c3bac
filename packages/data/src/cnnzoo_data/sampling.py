"""Samplers, a dataset wrapper and a training loader that make every run reproducible,
and every interrupted run resumable to the same result, even from the middle of an epoch.

- The order of epoch e is a permutation seeded by (seed, e), sharded across processes.
- The augmentation of image i in epoch e draws from a generator seeded by (seed, e, i), so it
  is the same with any number of loader workers and after any resume.
- The training loader is stateful: a checkpoint records how many batches of the epoch were
  drawn, and a run resumed from it skips those indices (without loading their images) and
  goes on with the next batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sized
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


class TransformedDataset(Dataset):
    """A base dataset of (image, label) pairs seen through a per-image transform.

    A random transform draws from torch's CPU generator seeded by (seed, epoch, index), whose
    state is restored afterwards, so that the training's own random stream (dropout) is left
    as it was.
    """

    def __init__(
        self,
        base: Dataset,
        transform: Callable[[Any], Any] | None,
        seed: int = 0,
        random: bool = False,
    ):
        self.base = base
        self.transform = transform
        self.seed = seed
        self.random = random
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image, label = self.base[index]
        if self.transform is None:
            return image, label
        if not self.random:
            return self.transform(image), label
        # The CPU generator alone, saved and restored by hand: `fork_rng` + `manual_seed`
        # also visit every accelerator's generators, ~200 us an image against ~3 us.
        generator = torch.default_generator
        state = generator.get_state()
        try:
            generator.manual_seed(hash((self.seed, self.epoch, index)) & 0x7FFF_FFFF_FFFF_FFFF)
            return self.transform(image), label
        finally:
            generator.set_state(state)


class EpochSampler(DistributedSampler):
    """Training order: shuffled by (seed, epoch) and sharded across processes.

    Lightning calls `set_epoch` before each epoch and leaves a DistributedSampler in place
    under DDP; the epoch is passed on to a `TransformedDataset` for its augmentation seeds.
    `skip` drops the first indices of the next iteration only (a resumed epoch).
    """

    def __init__(self, dataset: Sized, seed: int, shuffle: bool = True) -> None:
        num_replicas, rank = _world()
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)
        self.skip = 0

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        if isinstance(self.dataset, TransformedDataset):
            self.dataset.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())[self.skip :]
        self.skip = 0
        return iter(indices)


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


class _CountingIterator:
    """The loader's iterator, made only when the first batch is asked, counting batches."""

    def __init__(self, loader: EpochDataLoader) -> None:
        self._loader = loader
        self._iterator: Iterator | None = None

    def __iter__(self) -> _CountingIterator:
        return self

    def __next__(self):
        if self._iterator is None:
            self._iterator = self._loader._start_epoch()
        batch = next(self._iterator)
        self._loader.batches_drawn += 1
        return batch


class EpochDataLoader(DataLoader):
    """The training loader: resumable mid-epoch, and started at the epoch's first batch.

    Lightning makes the training iterator before it calls `set_epoch`, and on resuming keeps
    that iterator for the first epoch (Lightning issue #21938); a multi-process iterator
    draws its first indices and forks its workers when it is made, so the resumed epoch
    would replay epoch 0's order. Deferred to the first batch, they are those of the epoch set.

    Lightning saves `state_dict()` in each checkpoint and hands it back to `load_state_dict`
    before resuming. It fetches no batch ahead from a loader of known length, so the batches
    drawn are exactly the batches trained on when a checkpoint is written.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.batches_drawn = 0
        self._resume: dict[str, int] | None = None

    def __iter__(self) -> Iterator:
        return _CountingIterator(self)

    def _start_epoch(self) -> Iterator:
        sampler = self.sampler
        resume, self._resume = self._resume, None
        skip = resume["batches"] if resume and resume["epoch"] == sampler.epoch else 0
        sampler.skip = skip * self.batch_size
        self.batches_drawn = skip
        return super().__iter__()

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.sampler.epoch, "batches": self.batches_drawn}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._resume = dict(state)
