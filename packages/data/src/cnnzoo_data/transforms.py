"""Each paper's augmentation, by name: `augmentation: alexnet` in a recipe.

    none     resize to the model's input size; nothing random
    lenet    LeNet-5 §III.A: the digit centred in a 32x32 field, background at -0.1 and
             ink at 1.175 (mean about 0, variance about 1)
    cifar    ResNet §4.2: 4 pixels padded on each side, a random 32x32 crop, horizontal flips
    alexnet  AlexNet §2 and §4.1: the shorter side scaled to 256 and the centre 256x256 kept,
             random 224x224 crops with horizontal flips, PCA colour noise (sigma 0.1)

Test images get the same deterministic part; `test_crops="ten"` averages AlexNet's ten
crops (four corners and centre, and their mirror images, §4.1).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torchvision.transforms import v2

Augmentation = Literal["none", "lenet", "cifar", "alexnet"]
TestCrops = Literal["center", "ten"]
AUGMENTATIONS: tuple[str, ...] = ("none", "lenet", "cifar", "alexnet")

# LeNet-5 §III.A: "the background level (white) corresponds to a value of -0.1 and the
# foreground (black) corresponds to 1.175", i.e. x * 1.275 - 0.1 for x in [0, 1].
LENET_MEAN = (0.1 / 1.275,)
LENET_STD = (1 / 1.275,)


class StackCrops(torch.nn.Module):
    """Turn TenCrop's tuple of crops into one (crops, C, H, W) tensor."""

    def forward(self, crops: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return torch.stack(crops)


def _tensor_steps(mean, std, lighting: Callable | None = None) -> list:
    return [
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        *([lighting] if lighting is not None else []),
        v2.Normalize(mean=list(mean), std=list(std)),
    ]


def build_transform(
    augmentation: Augmentation,
    *,
    train: bool,
    image_size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    test_crops: TestCrops = "center",
    pca_lighting: Callable | None = None,
) -> v2.Compose:
    """The transform of one paper's augmentation, for training or for evaluation."""
    if augmentation not in AUGMENTATIONS:
        raise ValueError(
            f"unknown augmentation {augmentation!r}; choose one of {', '.join(AUGMENTATIONS)}."
        )
    ten_crops = test_crops == "ten" and not train
    # AlexNet crops 224 from 256: the same ratio at other input sizes.
    rescaled = round(image_size * 256 / 224)
    if ten_crops and augmentation in ("lenet", "cifar"):
        raise ValueError(
            f"ten-crop testing crops {image_size}x{image_size} patches from rescaled images "
            f"(AlexNet §4.1); the {augmentation} augmentation tests whole images. "
            f"Use test_crops: center."
        )
    if augmentation == "lenet":
        # MNIST's 28x28 digits are centred in the 32x32 field by padding (CenterCrop pads).
        steps: list = [v2.CenterCrop(32)]
        if image_size != 32:
            steps.append(v2.Resize(image_size))
        return v2.Compose([*steps, *_tensor_steps(LENET_MEAN, LENET_STD)])
    if augmentation == "cifar":
        steps = [] if image_size == 32 else [v2.Resize(image_size)]
        if train:
            pad = 4 * image_size // 32
            steps += [v2.RandomCrop(image_size, padding=pad), v2.RandomHorizontalFlip()]
        return v2.Compose([*steps, *_tensor_steps(mean, std)])
    if augmentation == "alexnet" and train:
        steps = [v2.Resize(rescaled), v2.CenterCrop(rescaled)]
        steps += [v2.RandomCrop(image_size), v2.RandomHorizontalFlip()]
        return v2.Compose([*steps, *_tensor_steps(mean, std, pca_lighting)])
    if ten_crops:
        steps = [v2.Resize(rescaled), v2.CenterCrop(rescaled), v2.TenCrop(image_size)]
        # v2 transforms apply to each crop of the tuple; the crops are stacked at the end.
        return v2.Compose([*steps, *_tensor_steps(mean, std), StackCrops()])
    if augmentation == "alexnet":
        steps = [v2.Resize(rescaled), v2.CenterCrop(rescaled), v2.CenterCrop(image_size)]
    else:
        steps = [v2.Resize(image_size), v2.CenterCrop(image_size)]
    return v2.Compose([*steps, *_tensor_steps(mean, std)])
