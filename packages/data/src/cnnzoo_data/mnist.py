"""MNIST through torchvision: its downloader for online users, any local copy for others."""

from __future__ import annotations

from pathlib import Path

from cnnzoo.errors import DatasetError
from torch.utils.data import Subset
from torchvision.datasets import MNIST
from torchvision.transforms import v2

from cnnzoo_data.datamodule import ClassificationDataModule, Splits, TensorImages
from cnnzoo_data.distorted_mnist import (
    DISTORTION_STATS,
    IMAGE_SIZE,
    FreshDistortion,
    check_distortion,
    distorted_split,
)
from cnnzoo_data.sampling import TransformedDataset


def _in_memory(mnist: MNIST) -> TensorImages:
    return TensorImages(mnist.data.unsqueeze(1), mnist.targets, [str(d) for d in range(10)])


RAW_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


class MNISTDataModule(ClassificationDataModule):
    """MNIST's 60,000 training and 10,000 test digits (the paper's setup for LeNet-5).

    Args:
        root: folder holding `MNIST/raw/` with the four IDX files (as torchvision lays it out).
        download: fetch MNIST into `root` when it is not there.
        distortion: the distorted MNIST of Jaderberg et al. 2015, §4.1 (`cnnzoo_data.
            distorted_mnist`): "r" (rotated), "rts" (rotated, translated and scaled, in a
            42x42 image), "p" (projective) or "e" (elastic). Test and validation digits are
            distorted once, as their (split, index) seeds them; training digits afresh in
            every epoch. None: the plain digits. The images come at the distortion's own
            size, taken whole (augmentation "none" unless one is given).
    """

    dataset_name = "MNIST"
    num_classes = 10
    in_chans = 1
    classes = [str(d) for d in range(10)]
    mean = (0.1307,)
    std = (0.3081,)
    default_image_size = 32
    default_augmentation = "lenet"

    def __init__(
        self,
        root: str = "data/mnist",
        download: bool = False,
        distortion: str | None = None,
        **kwargs,
    ) -> None:
        if distortion is not None and str(distortion).lower() != "none":
            self.distortion = check_distortion(distortion)
            self.dataset_name = f"MNIST {self.distortion.upper()}"
            self.default_image_size = IMAGE_SIZE[self.distortion]
            self.default_augmentation = "none"
            self.mean, self.std = DISTORTION_STATS[self.distortion]
        else:
            self.distortion = None
        super().__init__(**kwargs)
        if self.distortion is not None and self.on_device:
            raise DatasetError(
                f"on_device: true holds fixed training images on the device; the "
                f"{self.dataset_name} training digits are distorted afresh each epoch on the "
                f"loader's workers. Use on_device: false."
            )
        self.root = root
        self.download = download
        self._plain_train: TensorImages | None = None

    def prepare_data(self) -> None:
        if self.download:
            MNIST(self.root, train=True, download=True)
            MNIST(self.root, train=False, download=True)

    def load(self) -> Splits:
        raw = Path(self.root) / "MNIST" / "raw"
        missing = [name for name in RAW_FILES if not (raw / name).exists()]
        if missing and not self.download:
            raise DatasetError(
                f"MNIST not found under {Path(self.root).resolve()}: expected the IDX files "
                f"{', '.join(RAW_FILES)} in {raw}/ (missing: {', '.join(missing)}). "
                f"Pass --data.download true to fetch them, or --data.root to point at a copy."
            )
        try:
            train = _in_memory(MNIST(self.root, train=True, download=self.download))
            test = _in_memory(MNIST(self.root, train=False, download=self.download))
        except Exception as exc:
            raise DatasetError(
                f"MNIST under {raw} could not be read ({exc}); the files may be corrupt."
            ) from exc
        if self.distortion is None:
            return Splits(train=train, test=test)
        self._plain_train = train
        return Splits(train=self._distorted(train, "train"), test=self._distorted(test, "test"))

    def setup(self, stage: str | None = None) -> None:
        fresh = self.train_set is None and self.distortion is not None
        super().setup(stage)
        if fresh:
            self.train_set = self._freshly_distorted(self.train_set)

    def _freshly_distorted(self, train: TransformedDataset) -> TransformedDataset:
        """The training split's plain digits (those the held-out validation left), each
        distorted afresh per epoch before the training geometry."""
        plain = self._plain_train
        base = Subset(plain, train.base.indices) if isinstance(train.base, Subset) else plain
        geometry = self._transform(train=True).geometry
        transform = v2.Compose([FreshDistortion(self.distortion), geometry])
        return TransformedDataset(base, transform, seed=self.seed, random=True)

    def _distorted(self, digits: TensorImages, split: str) -> TensorImages:
        images = distorted_split(digits.images, self.distortion, split)
        return TensorImages(images, digits.labels, digits.classes)
