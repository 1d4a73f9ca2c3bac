"""scikit-learn's 1,797 real handwritten digits: the offline default, no download needed.

The 8x8 images (UCI optical digits, 16 grey levels) are scaled up to 20x20 and centred in
a 28x28 field, the layout of MNIST (LeCun et al. 1998, §III.A), so the LeNet-5 pipeline
treats them as it treats MNIST.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cnnzoo_data.datamodule import ClassificationDataModule, Splits, TensorImages


def digit_fields(images: torch.Tensor) -> torch.Tensor:
    """(N, 8, 8) digits with values 0..16 -> (N, 1, 28, 28) uint8, each digit scaled to
    20x20 and centred in the 28x28 field as MNIST's digits are."""
    scaled = F.interpolate(images.float().unsqueeze(1) * (255 / 16), size=(20, 20), mode="bilinear")
    return F.pad(scaled, (4, 4, 4, 4)).round().clamp(0, 255).to(torch.uint8)


class DigitsDataModule(ClassificationDataModule):
    """The scikit-learn digits: `test_fraction` of them held out for testing, by `seed`."""

    dataset_name = "scikit-learn digits"
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
        images, labels = (
            digit_fields(torch.from_numpy(digits.images)),
            torch.from_numpy(digits.target),
        )
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(self.seed))
        num_test = round(len(order) * self.test_fraction)
        test, train = order[:num_test], order[num_test:]
        return Splits(
            train=TensorImages(images[train], labels[train], self.classes),
            test=TensorImages(images[test], labels[test], self.classes),
        )
