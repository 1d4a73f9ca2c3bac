"""The base of every classification data module: splits, the paper's transforms, loaders.

A subclass says where its images come from (`load`) and what they are (`num_classes`,
`in_chans`, `classes`, `mean`, `std`, `default_augmentation`); the base does the rest:
a seeded train/val split, each split's transform, reproducible sampling, and loaders.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import lightning as L
import torch
from cnnzoo.errors import DatasetError
from torch.utils.data import DataLoader, Dataset, Subset

from cnnzoo_data.device_augment import BATCHED_AUGMENTATIONS, draw_crop_flips, gather_crops
from cnnzoo_data.evaluation import DENSE_PROTOCOLS, check_image_side, collate_whole_images
from cnnzoo_data.sampling import (
    EpochDataLoader,
    EpochSampler,
    EvalSampler,
    TransformedDataset,
)
from cnnzoo_data.transforms import (
    COLOUR_SHIFTED,
    Augmentation,
    ImageTransform,
    Normalize,
    TestCrops,
    build_transform,
    normalization,
)


class TensorImages(Dataset):
    """Images held in memory as one uint8 tensor (N, C, H, W), with their labels."""

    def __init__(
        self, images: torch.Tensor, labels: torch.Tensor, classes: list[str] | None = None
    ):
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(
                f"TensorImages takes uint8 (N, C, H, W); got {images.dtype} {tuple(images.shape)}."
            )
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels.")
        self.images = images
        self.labels = labels.long()
        self.classes = classes

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.labels[index])

    def mapped(self, geometry, chunk: int = 4096) -> TensorImages:
        """The same images through a deterministic transform, computed once for all."""
        images = torch.cat(
            [geometry(part).as_subclass(torch.Tensor) for part in self.images.split(chunk)]
        )
        return TensorImages(images, self.labels, self.classes)


class ImageIndices(Dataset):
    """The fast path's view of a split held in memory: the loader yields only indices, and
    the images and labels are copied once to the training device, where whole batches are
    gathered (`ClassificationDataModule(on_device=True)`)."""

    def __init__(self, images: TensorImages, split: str) -> None:
        self.images = images
        self.split = split  # which split a batch of indices points into
        self._on_device: tuple[torch.Tensor, torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> int:
        return index

    def collate(self, indices: list[int]) -> tuple[torch.Tensor, str]:
        return torch.tensor(indices, dtype=torch.long), self.split

    def on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The images and labels on `device`, copied there at the first call."""
        if self._on_device is None or self._on_device[0].device != device:
            self._on_device = (
                self.images.images.to(device, non_blocking=True),
                self.images.labels.to(device, non_blocking=True),
            )
        return self._on_device


def _in_memory(dataset: TransformedDataset) -> TensorImages:
    """The images of a prepared in-memory split, a held-out part of one included."""
    base = dataset.base
    if isinstance(base, Subset):
        indices = torch.as_tensor(base.indices, dtype=torch.long)
        images = base.dataset
        return TensorImages(images.images[indices], images.labels[indices], images.classes)
    return base


@dataclass
class Splits:
    """The untransformed datasets of (image, label) a subclass loads: PIL images, or
    `TensorImages` for datasets small enough to hold in memory."""

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
            has no validation split of its own; 0 trains on all of it and validates on the
            test split (curves only: test the last checkpoint, choose nothing by it).
        seed: seeds the split, the shuffling and the augmentation.
        image_size: side of the network's input; None uses the dataset's default (the
            `cnnzoo` command sets it to the model's input size).
        augmentation: the paper's augmentation (see `cnnzoo_data.transforms`); None uses
            the dataset's default.
        test_crops: the evaluation protocol of the validation and test splits: "center",
            AlexNet's "ten" crops, GoogLeNet's "googlenet144" crops, VGG's "dense" or
            "multiscale" evaluation (see `cnnzoo_data.evaluation`); the softmax of the
            views is averaged.
        pca_lighting_std: AlexNet's PCA colour noise (0.1 in the paper; 0 turns it off),
            with the principal components of ImageNet's RGB pixels (fb.resnet.torch's figures).
        on_device: the fast path for small datasets held in memory (MNIST, CIFAR, the
            digits): their uint8 images move once to the training device, the loader yields
            only indices, and each batch is gathered and augmented there in one step
            (`cnnzoo_data.device_augment`), so that the GPU, not the loader, bounds an epoch.
            Same epoch order, DDP sharding and mid-epoch resume as the default path; the
            augmentation's random numbers are a different, equally distributed stream.
            Takes the augmentations "none", "lenet" and "cifar", and test_crops "center".
        chunk: training batches per training step: the training loader yields `chunk`
            batches at a time, as a list of (images, labels) batches, for an
            `ImageClassifier(chunk=...)` that takes one optimiser step on each (the `cnnzoo`
            command passes it on), so that the trainer's own work is paid once per chunk.
            The batches, their order and their augmentation are those of chunk 1; the
            trainer's `limit_train_batches` and the loader's position count chunks.
    """

    # As papers name it in their tables, so that `cnnzoo reproduce` finds the paper's row.
    dataset_name: str = "images"
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
        pca_lighting_std: float = 0.1,
        on_device: bool = False,
        chunk: int = 1,
    ) -> None:
        super().__init__()
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1); got {val_fraction}.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1; got {batch_size}.")
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = default_num_workers() if num_workers is None else num_workers
        self.val_fraction = val_fraction
        self.seed = seed
        self.image_size = image_size or self.default_image_size
        self.augmentation = augmentation or self.default_augmentation
        self.test_crops = test_crops
        self.pca_lighting_std = pca_lighting_std
        self.on_device = on_device
        if chunk < 1:
            raise ValueError(f"chunk must be at least 1 (batches per training step); got {chunk}.")
        self.chunk = chunk
        self._labels_checked = False  # all labels checked at setup (datasets in memory)
        if on_device:
            self._check_on_device()
        self.normalize = Normalize(
            *normalization(self.augmentation, self.mean, self.std), self._lighting()
        )
        if chunk > 1 and self.normalize.lighting is not None:
            # Drawn per batch from the random stream that dropout draws from too: normalised
            # a chunk at a time, its draws would come in another order than chunk 1's.
            raise ValueError(
                f"chunk {chunk} with PCA lighting (augmentation {self.augmentation!r}) would "
                f"draw the colour noise in another order than chunk 1. Use chunk 1, or "
                f"pca_lighting_std 0."
            )
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None

    def load(self) -> Splits:
        raise NotImplementedError

    def _check_on_device(self) -> None:
        if self.augmentation not in BATCHED_AUGMENTATIONS:
            raise ValueError(
                f"on_device: true does the augmentation batched on the device, which it can "
                f"for {', '.join(BATCHED_AUGMENTATIONS)}, not {self.augmentation!r} (its "
                f"crops differ in size from image to image). Use augmentation: cifar, lenet "
                f"or none, or on_device: false."
            )
        if self.test_crops != "center":
            raise ValueError(
                f"on_device: true evaluates one view of each image; test_crops is "
                f"{self.test_crops!r}. Use test_crops: center, or on_device: false."
            )

    def _check_labels(self, labels: torch.Tensor) -> None:
        # A label outside the classes otherwise surfaces as an index error deep in the loss
        # (or a CUDA assert).
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.num_classes):
            bad = labels[(labels < 0) | (labels >= self.num_classes)].unique().tolist()
            raise DatasetError(
                f"labels {bad[:10]} are outside the data's {self.num_classes} classes (0 to "
                f"{self.num_classes - 1}). The dataset's labels are wrong: fix them, or the "
                f"data module's classes."
            )

    def _lighting(self):
        if (
            self.augmentation not in COLOUR_SHIFTED
            or self.pca_lighting_std == 0
            or self.in_chans != 3
        ):
            return None
        from cnnzoo_data.pca_lighting import IMAGENET_PCA, PCALighting

        return PCALighting(**IMAGENET_PCA, std=self.pca_lighting_std)

    def _transform(self, train: bool) -> ImageTransform:
        # The fast path computes the deterministic geometry once for every split; the
        # training batches' random crops and flips are drawn on the device.
        return build_transform(
            self.augmentation,
            train=train and not self.on_device,
            image_size=self.image_size,
            test_crops=self.test_crops,
        )

    @staticmethod
    def _prepared(base: Dataset, transform: ImageTransform, multi_view: bool) -> TransformedDataset:
        # In-memory images go through deterministic geometry once, not once per epoch.
        if isinstance(base, TensorImages) and not transform.random and not multi_view:
            return TransformedDataset(base.mapped(transform.geometry), None)
        return TransformedDataset(base, transform.geometry, random=transform.random)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        splits = self.load()
        if self.on_device:
            held = (splits.train, splits.val, splits.test)
            if not all(split is None or isinstance(split, TensorImages) for split in held):
                raise DatasetError(
                    f"on_device: true holds a dataset's images on the training device, which "
                    f"{type(self).__name__} does not keep in memory ({self.dataset_name} is "
                    f"read from image files). Use on_device: false, or a dataset held in "
                    f"memory: MNIST, CIFAR-10/100 or the digits."
                )
        # Labels held in memory are checked once here, not batch by batch as they load.
        held = [split for split in (splits.train, splits.val, splits.test) if split is not None]
        self._labels_checked = all(isinstance(split, TensorImages) for split in held)
        if self._labels_checked:
            for split in held:
                self._check_labels(split.labels)
        multi_view = self.test_crops != "center"  # many views of each image: not precomputed
        for split in (splits.val, splits.test, splits.train):
            if isinstance(split, TensorImages):  # images of one known size
                side = min(split.images.shape[-2:])
                check_image_side(self.test_crops, self.dataset_name, side, self.image_size)
        train = self._prepared(splits.train, self._transform(train=True), multi_view=False)
        if splits.val is not None:
            val = self._prepared(splits.val, self._transform(train=False), multi_view)
        elif self.val_fraction == 0:
            # Train on every training image, as the papers did, and watch the test split
            # (for curves only: choose nothing by it, test the last checkpoint).
            val = self._prepared(splits.test, self._transform(train=False), multi_view)
        else:
            order = torch.randperm(len(train), generator=torch.Generator().manual_seed(self.seed))
            num_val = round(len(train) * self.val_fraction)
            held_out = self._prepared(splits.train, self._transform(train=False), multi_view)
            train.base = Subset(train.base, order[num_val:].tolist())
            held_out.base = Subset(held_out.base, order[:num_val].tolist())
            val = held_out
        train.seed = self.seed
        self.train_set, self.val_set = train, val
        self.test_set = (
            self._prepared(splits.test, self._transform(train=False), multi_view)
            if splits.test is not None
            else self.val_set
        )
        if self.on_device:
            self._hold_in_memory()

    def _hold_in_memory(self) -> None:
        """Each split as indices into its images (their labels were checked in setup)."""
        held = {}
        for name in ("train", "val", "test"):
            dataset = getattr(self, f"{name}_set")
            if id(dataset) not in held:  # the test split may be the validation split
                held[id(dataset)] = ImageIndices(_in_memory(dataset), name)
            setattr(self, f"{name}_set", held[id(dataset)])

    def device_batch(
        self, indices: torch.Tensor, split: str, epoch: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The fast path's batch: uint8 images and labels gathered on the indices' device,
        the training split's with the CIFAR crops and flips of (seed, epoch, image)."""
        dataset = {"train": self.train_set, "val": self.val_set, "test": self.test_set}[split]
        images, labels = dataset.on(indices.device)
        if split != "train" or self.augmentation != "cifar":
            return images[indices], labels[indices]
        padding = 4 * self.image_size // 32  # ResNet §4.2: 4 pixels for a 32x32 image
        crops = draw_crop_flips(indices, padding, self.seed, epoch)
        return gather_crops(images, indices, padding, crops), labels[indices]

    def _training_epoch(self) -> int:
        """The epoch of the training batch at hand, as its loader's sampler counts it."""
        loader = self.trainer.train_dataloader
        if not isinstance(loader, EpochDataLoader):
            raise TypeError(f"on_device: true trains from its own loader, not {type(loader)}.")
        return loader.sampler.epoch

    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        if isinstance(batch, torch.Tensor):  # a model's example input (its summary): no labels
            return batch
        # Checked on the CPU, before the batch moves; labels held in memory were all checked
        # once, in setup.
        if not self._labels_checked:
            self._check_labels(batch[1])
        return batch

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        if isinstance(batch, torch.Tensor):  # a model's example input (its summary)
            return batch
        if self.on_device:
            indices, split = batch
            epoch = self._training_epoch() if split == "train" else 0
            images, labels = self.device_batch(indices, split, epoch)
            return self._chunked(self.normalize(images, train=split == "train"), labels, split)
        images, labels = batch
        training = self.trainer is not None and self.trainer.training
        if isinstance(images, list):  # dense evaluation: per image, one tensor per scale
            return [[self.normalize(views) for views in scales] for scales in images], labels
        split = "train" if training else "eval"
        return self._chunked(self.normalize(images, train=training), labels, split)

    def _chunked(self, images: torch.Tensor, labels: torch.Tensor, split: str):
        """A training chunk as its batches (views, not copies), or the batch as it is."""
        if split != "train" or self.chunk == 1:
            return images, labels
        return list(zip(images.split(self.batch_size), labels.split(self.batch_size), strict=True))

    def _loader(self, dataset: Dataset, train: bool) -> DataLoader:
        sampler = EpochSampler(dataset, seed=self.seed) if train else EvalSampler(dataset)
        if isinstance(dataset, ImageIndices):  # the fast path: batches of indices only
            return (EpochDataLoader if train else DataLoader)(
                dataset,
                batch_size=self.batch_size * self.chunk if train else self.eval_batch_size,
                sampler=sampler,
                collate_fn=dataset.collate,
            )
        return (EpochDataLoader if train else DataLoader)(
            dataset,
            batch_size=self.batch_size * self.chunk if train else self.eval_batch_size,
            sampler=sampler,
            # In-memory images with nothing left to compute per image need no workers:
            # shipping their batches between processes would cost more than indexing them.
            num_workers=0 if dataset.transform is None else self.num_workers,
            pin_memory=torch.cuda.is_available(),
            # The loader's own generator, never the global RNG, so that creating a loader does
            # not change the random stream of the training itself.
            generator=torch.Generator().manual_seed(self.seed),
            # Dense evaluation sees whole images, which differ in size: a list, not a stack.
            **({"collate_fn": collate_whole_images} if self._dense(train) else {}),
        )

    def _dense(self, train: bool) -> bool:
        return not train and self.test_crops in DENSE_PROTOCOLS

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
