"""scikit-learn's 1,797 real handwritten digits: the offline default, no download needed.

The 8x8 images (UCI optical digits, 16 grey levels) are scaled up to 20x20 and centred in
a 28x28 field, the layout of MNIST (LeCun et al. 1998, §III.A), so the LeNet-5 pipeline
treats them as it treats MNIST.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from cnnzoo_data.datamodule import ClassificationDataModule, Splits


class DigitImages(Dataset):
    """(PIL 28x28 image, label) pairs from arrays of 8x8 digits with values 0..16."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        pixels = (self.images[index] * (255 / 16)).round().astype(np.uint8)
        digit = Image.fromarray(pixels, mode="L").resize((20, 20), Image.BILINEAR)
        field = Image.new("L", (28, 28))
        field.paste(digit, (4, 4))
        return field, int(self.labels[index])


class DigitsDataModule(ClassificationDataModule):
    """The scikit-learn digits: `test_fraction` of them held out for testing, by `seed`."""

    num_classes = 10
    in_chans = 1
    classes = [str(d) for d in range(10)]
    mean = (0.1307,)
    std = (0.3081,)
    default_image_size = 32
    default_augmentation = "lenet"

    def __init__(self, test_fraction: float = 0.2, **kwargs) -> None:
        super().__init__(**kwargs)
        self.test_fraction = test_fraction

    def load(self) -> Splits:
        from sklearn.datasets import load_digits

        digits = load_digits()
        order = torch.randperm(len(digits.target), generator=torch.Generator().manual_seed(self.seed))
        order = order.numpy()
        num_test = round(len(order) * self.test_fraction)
        test, train = order[:num_test], order[num_test:]
        return Splits(
            train=DigitImages(digits.images[train], digits.target[train]),
            test=DigitImages(digits.images[test], digits.target[test]),
        )
