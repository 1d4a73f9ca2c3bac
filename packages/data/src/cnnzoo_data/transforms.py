"""Each paper's augmentation, by name: `augmentation: alexnet` in a recipe.

    none     resize to the model's input size; nothing random
    lenet    LeNet-5 §III.A: the digit centred in a 32x32 field, background at -0.1 and
             ink at 1.175 (mean about 0, variance about 1)
    lenet_distorted  the same, with §III.C's random planar affine distortions of the
             training digits (`cnnzoo_data.distortions`): 9 in 10 distorted
    capsnet  CapsNet §5: the 28x28 digit shifted by up to 2 pixels each way, zero padded;
             pixel intensities in [0, 1], not normalised (its decoder reconstructs them)
    cifar    ResNet §4.2: 4 pixels padded on each side, a random 32x32 crop, horizontal flips
    alexnet  AlexNet §2 and §4.1: the shorter side scaled to 256 and the centre 256x256 kept,
             random 224x224 crops with horizontal flips, PCA colour noise (sigma 0.1)
    vgg      VGG §3.1: scale jittering, the shorter side S drawn uniformly from [256, 512],
             a random 224x224 crop, horizontal flips, AlexNet's PCA colour noise
    resnet   ResNet §3.4: the same with the shorter side drawn from [256, 480]
    inception  GoogLeNet §6 (and Inception-v3 after it): a random crop of 8% to 100% of the
             image's area with an aspect ratio in [3/4, 4/3], resized to the input size, and
             horizontal flips; the paper's photometric distortions (Howard 2013) are left out

The work is split in two. Per image, on the loader's workers, the geometric part turns the
image into a uint8 tensor (crops, flips, resizing). Per batch, on the training device, the
photometric part turns uint8 into normalised floats and adds PCA colour noise: one
vectorised step instead of thousands of small ones, and a quarter of the bytes to move.
Test images get the same deterministic geometry; `test_crops="ten"` gives AlexNet's ten
crops (four corners and centre, and their mirror images, §4.1) as one (10, C, H, W) tensor;
GoogLeNet's 144 crops and VGG's dense and multi-scale evaluation are in
`cnnzoo_data.evaluation`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import nn
from torchvision.transforms import v2

from cnnzoo_data.distortions import LeNetDistortion
from cnnzoo_data.evaluation import TEST_CROPS, TestCrops, evaluation_geometry

Augmentation = Literal[
    "none",
    "lenet",
    "lenet_distorted",
    "capsnet",
    "cifar",
    "alexnet",
    "vgg",
    "resnet",
    "inception",
]
AUGMENTATIONS: tuple[str, ...] = get_args(Augmentation)
# LeNet-5's digits in their 32x32 field, with and without the distortions of §III.C.
LENET: tuple[str, ...] = ("lenet", "lenet_distorted")
# The augmentations that add AlexNet's PCA colour noise to each training batch ("the colour
# shift of [AlexNet]": VGG §3.1, ResNet §3.4).
COLOUR_SHIFTED: tuple[str, ...] = ("alexnet", "vgg", "resnet")
# The shorter side's range of the scale-jittering augmentations, for a 224 input.
SCALE_JITTER = {"vgg": (256, 512), "resnet": (256, 480)}
# GoogLeNet §6: "patches whose size is distributed evenly between 8% and 100% of the image
# area with aspect ratio constrained to the interval [3/4, 4/3]".
INCEPTION_AREA = (0.08, 1.0)
INCEPTION_ASPECT = (3 / 4, 4 / 3)

# LeNet-5 §III.A: "the background level (white) corresponds to a value of -0.1 and the
# foreground (black) corresponds to 1.175", i.e. x * 1.275 - 0.1 for x in [0, 1].
LENET_MEAN = (0.1 / 1.275,)
LENET_STD = (1 / 1.275,)
# CapsNet §5: "trained on 28 × 28 MNIST images that have been shifted by up to 2 pixels in
# each direction with zero padding", as pixel intensities (the reconstruction's targets).
CAPSNET_SHIFT = 2
UNNORMALISED = ((0.0,), (1.0,))


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
    if test_crops not in TEST_CROPS:
        raise ValueError(
            f"unknown test_crops {test_crops!r}; choose one of {', '.join(TEST_CROPS)}."
        )
    ten_crops = test_crops == "ten" and not train
    if test_crops != "center" and not train and augmentation in (*LENET, "cifar"):
        raise ValueError(
            f"test_crops: {test_crops} looks at {image_size}x{image_size} patches or whole "
            f"images rescaled beyond {image_size} (AlexNet §4.1, GoogLeNet §7, VGG §3.2); the "
            f"{augmentation} augmentation tests whole images at their own size. "
            f"Use test_crops: center."
        )
    if test_crops not in ("center", "ten") and not train:
        return ImageTransform(evaluation_geometry(test_crops, image_size), random=False)
    # AlexNet crops 224 from 256: the same ratio at other input sizes.
    rescaled = round(image_size * 256 / 224)
    if augmentation in LENET:
        # MNIST's 28x28 digits are centred in the 32x32 field by padding (CenterCrop pads).
        steps: list = [v2.CenterCrop(32)] + ([v2.Resize(image_size)] if image_size != 32 else [])
        if augmentation == "lenet_distorted" and train:
            return ImageTransform(v2.Compose([*steps, v2.ToImage(), LeNetDistortion()]), True)
        return ImageTransform(_tensor(steps), random=False)
    if augmentation == "capsnet":
        steps = [v2.CenterCrop(28)] + ([v2.Resize(image_size)] if image_size != 28 else [])
        if train:
            shift = round(CAPSNET_SHIFT * image_size / 28)
            steps += [v2.RandomCrop(image_size, padding=shift)]
        return ImageTransform(_tensor(steps), random=train)
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
    if augmentation in SCALE_JITTER and train:
        # RandomResize draws the shorter side uniformly from [low, high] (its upper bound is
        # exclusive), at the same ratio to the input size as the paper's to 224.
        low, high = (round(side * image_size / 224) for side in SCALE_JITTER[augmentation])
        steps = [v2.RandomResize(low, high + 1), v2.RandomCrop(image_size)]
        return ImageTransform(_tensor([*steps, v2.RandomHorizontalFlip()]), random=True)
    if augmentation == "inception" and train:
        crop = v2.RandomResizedCrop(image_size, scale=INCEPTION_AREA, ratio=INCEPTION_ASPECT)
        return ImageTransform(_tensor([crop, v2.RandomHorizontalFlip()]), random=True)
    if ten_crops:
        steps = [v2.Resize(rescaled), v2.CenterCrop(rescaled), v2.TenCrop(image_size)]
        return ImageTransform(_tensor(steps, ten_crops=True), random=False)
    if augmentation in ("alexnet", "vgg", "resnet", "inception"):
        # the centre crop of the image at shorter side 256 for a 224 input (Inception's 87.5%)
        steps = [v2.Resize(rescaled), v2.CenterCrop(rescaled), v2.CenterCrop(image_size)]
    else:
        steps = [v2.Resize(image_size), v2.CenterCrop(image_size)]
    return ImageTransform(_tensor(steps), random=False)


def normalization(augmentation: Augmentation, mean, std) -> tuple[tuple, tuple]:
    """The mean and std an augmentation normalises with: LeNet-5 has its own, and CapsNet
    takes pixel intensities as they are."""
    if augmentation in LENET:
        return LENET_MEAN, LENET_STD
    if augmentation == "capsnet":
        return UNNORMALISED
    return tuple(mean), tuple(std)
