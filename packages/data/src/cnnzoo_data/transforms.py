"""Each paper's augmentation, by name: `augmentation: alexnet` in a recipe.

    none     resize to the model's input size; nothing random
    lenet    LeNet-5 §III.A: the digit centred in a 32x32 field, background at -0.1 and
             ink at 1.175 (mean about 0, variance about 1)
    cifar    ResNet §4.2: 4 pixels padded on each side, a random 32x32 crop, horizontal flips
    alexnet  AlexNet §2 and §4.1: the shorter side scaled to 256 and the centre 256x256 kept,
             random 224x224 crops with horizontal flips, PCA colour noise (sigma 0.1)

The work is split in two. Per image, on the loader's workers, the geometric part turns the
image into a uint8 tensor (crops, flips, resizing). Per batch, on the training device, the
photometric part turns uint8 into normalised floats and adds PCA colour noise: one
vectorised step instead of thousands of small ones, and a quarter of the bytes to move.
Test images get the same deterministic geometry; `test_crops="ten"` gives AlexNet's ten
crops (four corners and centre, and their mirror images, §4.1) as one (10, C, H, W) tensor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torchvision.transforms import v2

Augmentation = Literal["none", "lenet", "cifar", "alexnet"]
TestCrops = Literal["center", "ten"]
AUGMENTATIONS: tuple[str, ...] = ("none", "lenet", "cifar", "alexnet")

# LeNet-5 §III.A: "the background level (white) corresponds to a value of -0.1 and the
# foreground (black) corresponds to 1.175", i.e. x * 1.275 - 0.1 for x in [0, 1].
LENET_MEAN = (0.1 / 1.275,)
LENET_STD = (1 / 1.275,)


class StackCrops(nn.Module):
    """Turn TenCrop's tuple of crops into one (crops, C, H, W) tensor."""

    def forward(self, crops: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return torch.stack(crops)


class Normalize(nn.Module):
    """uint8 batches -> float batches with the dataset's mean and std, plus the training
    batches' photometric augmentation (AlexNet's PCA lighting) when there is one."""

    def __init__(self, mean, std, lighting: nn.Module | None = None) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(-1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(-1, 1, 1))
        self.lighting = lighting

    def forward(self, images: torch.Tensor, train: bool = False) -> torch.Tensor:
        images = images.float().div_(255) if images.dtype == torch.uint8 else images.float()
        if train and self.lighting is not None:
            images = self.lighting(images)
        return (images - self.mean.to(images.device)) / self.std.to(images.device)


@dataclass
class ImageTransform:
    """The per-image geometric transform and whether it draws random numbers."""

    geometry: v2.Compose
    random: bool


def _tensor(steps: list, ten_crops: bool = False) -> v2.Compose:
    # ToImage turns PIL images (or each crop of TenCrop's tuple) into uint8 tensors.
    return v2.Compose([*steps, v2.ToImage(), *([StackCrops()] if ten_crops else [])])


def build_transform(
    augmentation: Augmentation, *, train: bool, image_size: int, test_crops: TestCrops = "center"
) -> ImageTransform:
    """The per-image part of one paper's augmentation, for training or for evaluation."""
    if augmentation not in AUGMENTATIONS:
        raise ValueError(
            f"unknown augmentation {augmentation!r}; choose one of {', '.join(AUGMENTATIONS)}."
        )
    ten_crops = test_crops == "ten" and not train
    if ten_crops and augmentation in ("lenet", "cifar"):
        raise ValueError(
            f"ten-crop testing crops {image_size}x{image_size} patches from rescaled images "
            f"(AlexNet §4.1); the {augmentation} augmentation tests whole images. "
            f"Use test_crops: center."
        )
    # AlexNet crops 224 from 256: the same ratio at other input sizes.
    rescaled = round(image_size * 256 / 224)
    if augmentation == "lenet":
        # MNIST's 28x28 digits are centred in the 32x32 field by padding (CenterCrop pads).
        steps: list = [v2.CenterCrop(32)] + ([v2.Resize(image_size)] if image_size != 32 else [])
        return ImageTransform(_tensor(steps), random=False)
    if augmentation == "cifar":
        # CIFAR's 32x32 images at 32 pass through unchanged; any other image is brought to
        # image_size x image_size first (the shorter side, then the centre).
        steps = [v2.Resize(image_size), v2.CenterCrop(image_size)]
        if train:
            pad = 4 * image_size // 32
            steps += [v2.RandomCrop(image_size, padding=pad), v2.RandomHorizontalFlip()]
        return ImageTransform(_tensor(steps), random=train)
    if augmentation == "alexnet" and train:
        steps = [v2.Resize(rescaled), v2.CenterCrop(rescaled)]
        steps += [v2.RandomCrop(image_size), v2.RandomHorizontalFlip()]
        return ImageTransform(_tensor(steps), random=True)
    if ten_crops:
        steps = [v2.Resize(rescaled), v2.CenterCrop(rescaled), v2.TenCrop(image_size)]
        return ImageTransform(_tensor(steps, ten_crops=True), random=False)
    if augmentation == "alexnet":
        steps = [v2.Resize(rescaled), v2.CenterCrop(rescaled), v2.CenterCrop(image_size)]
    else:
        steps = [v2.Resize(image_size), v2.CenterCrop(image_size)]
    return ImageTransform(_tensor(steps), random=False)


def normalization(augmentation: Augmentation, mean, std) -> tuple[tuple, tuple]:
    """The mean and std an augmentation normalises with: LeNet-5 has its own."""
    return (LENET_MEAN, LENET_STD) if augmentation == "lenet" else (tuple(mean), tuple(std))
