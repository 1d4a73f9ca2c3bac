"""The base of every classification data module: splits, the paper's transforms, loaders.

A subclass says where its images come from (`load`) and what they are (`num_classes`,
`in_chans`, `classes`, `mean`, `std`, `default_augmentation`); the base does the rest:
a seeded train/val split, each split's transform, reproducible sampling, and loaders.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from cnnzoo_data.sampling import EpochSampler, EvalSampler, TransformedDataset
from cnnzoo_data.transforms import Augmentation, TestCrops, build_transform


@dataclass
class Splits:
    """The untransformed datasets of (PIL image, label) a subclass loads."""

    train: Dataset
    test: Dataset | None  # None: test on the validation split
    val: Dataset | None = None  # None: split `val_fraction` off train


def default_num_workers() -> int:
    # Leave a core for the training process itself.
    return max(0, min(4, (os.cpu_count() or 1) - 1))


class ClassificationDataModule(L.LightningDataModule):
    """Shared behaviour of the image-classification data modules.

    Args:
        batch_size: images per training batch (per process under DDP).
        eval_batch_size: images per evaluation batch; defaults to batch_size.
        num_workers: loader processes; None picks up to 4, leaving one core free.
        val_fraction: share of the training set held out for validation when the dataset
            has no validation split of its own.
        seed: seeds the split, the shuffling and the augmentation.
        image_size: side of the network's input; None uses the dataset's default.
        augmentation: the paper's augmentation (see `cnnzoo_data.transforms`); None uses
            the dataset's default.
        test_crops: "center", or AlexNet's "ten" crops averaged.
    """

    num_classes: int
    in_chans: int
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    default_image_size: int
    default_augmentation: Augmentation = "none"

    def __init__(
        self,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int | None = None,
        val_fraction: float = 0.1,
        seed: int = 0,
        image_size: int | None = None,
        augmentation: Augmentation | None = None,
        test_crops: TestCrops = "center",
    ) -> None:
        super().__init__()
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1); got {val_fraction}.")
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = default_num_workers() if num_workers is None else num_workers
        self.val_fraction = val_fraction
        self.seed = seed
        self.image_size = image_size or self.default_image_size
        self.augmentation = augmentation or self.default_augmentation
        self.test_crops = test_crops
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None

    def load(self) -> Splits:
        raise NotImplementedError

    def train_transform_extras(self, train: Dataset) -> dict[str, Any]:
        """Extra arguments of the training transform fitted on the training images
        (AlexNet's PCA lighting); none by default."""
        return {}

    def transform(self, train: bool, **extras: Any):
        return build_transform(
            self.augmentation,
            train=train,
            image_size=self.image_size,
            mean=self.mean,
            std=self.std,
            test_crops=self.test_crops,
            **extras,
        )

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        splits = self.load()
        train, val = splits.train, splits.val
        if val is None:
            order = torch.randperm(len(train), generator=torch.Generator().manual_seed(self.seed))
            num_val = round(len(train) * self.val_fraction)
            train, val = Subset(train, order[num_val:].tolist()), Subset(train, order[:num_val].tolist())
        extras = self.train_transform_extras(train)
        self.train_set = TransformedDataset(train, self.transform(True, **extras), seed=self.seed)
        self.val_set = TransformedDataset(val, self.transform(False))
        self.test_set = (
            TransformedDataset(splits.test, self.transform(False))
            if splits.test is not None
            else self.val_set
        )

    def _loader(self, dataset: Dataset, train: bool) -> DataLoader:
        sampler = EpochSampler(dataset, seed=self.seed) if train else EvalSampler(dataset)
        return DataLoader(
            dataset,
            batch_size=self.batch_size if train else self.eval_batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            drop_last=False,
            # Worker seeds come from this generator, never from the global RNG, so that
            # creating a loader does not change the random stream of the training itself.
            generator=torch.Generator().manual_seed(self.seed),
        )

    def train_dataloader(self) -> DataLoader:
        if len(self.train_set) == 0:
            raise ValueError("the training split is empty: lower val_fraction or add images.")
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, train=False)
