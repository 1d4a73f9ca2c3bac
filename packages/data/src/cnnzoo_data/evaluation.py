"""The papers' test-time protocols, by name: `--data.test_crops googlenet144`.

    center        the centre crop: one view of each image
    ten           AlexNet §4.1: the four corners and the centre, and their mirror images
    googlenet144  GoogLeNet §7: 4 scales x 3 squares x 6 crops x 2 mirrors = 144 crops
    dense         VGG §3.2: the whole image at shorter side Q = 256, and its mirror image,
                  through the network made fully convolutional (the model's `dense()`)
    multiscale    VGG §4.2: dense evaluation at Q = 256, 384 and 512 (the test scales of
                  nets trained with scale jittering S in [256, 512])

The model averages the softmax of every view of an image. Sizes are the papers' for a 224
input and scale with the model card's input size (`image_size`): GoogLeNet's 256 is
256/224 of it, so a net at 112 is tested at shorter sides 128, 144, 160 and 176.

The crops of an image are one uint8 tensor (crops, C, H, W). Dense evaluation sees each
image whole, as the paper did: the images of a batch differ in size and cannot be stacked,
so a batch is a list, per image, of one (2, C, H, W) tensor per scale (the image and its
mirror), and the model runs one image at a time.
"""

from __future__ import annotations

from typing import Literal

import torch
from cnnzoo.errors import DatasetError
from torch import nn
from torch.utils.data import default_collate
from torchvision.transforms.v2 import functional as TF

TestCrops = Literal["center", "ten", "googlenet144", "dense", "multiscale"]
TEST_CROPS: tuple[str, ...] = ("center", "ten", "googlenet144", "dense", "multiscale")
# The protocols that look at an image at several scales, each from a bigger image than the
# network's input: data whose images are smaller than that input cannot give them.
RESCALING_PROTOCOLS = ("googlenet144", "dense", "multiscale")
DENSE_PROTOCOLS = ("dense", "multiscale")

PAPER_INPUT_SIZE = 224  # the input size the papers' scales are given for
# GoogLeNet §7: "we resize the image to 4 scales where the shorter dimension (height or
# width) is 256, 288, 320 and 352 respectively".
GOOGLENET_SCALES = (256, 288, 320, 352)
# VGG §3.2 / Table 3: a single test scale Q = 256 (= S for nets trained at S = 256); §4.2 /
# Table 4: Q = {S_min, 0.5 (S_min + S_max), S_max} = {256, 384, 512} for jittered S.
VGG_DENSE_SCALES = (256,)
VGG_MULTI_SCALES = (256, 384, 512)


def scaled(side: int, image_size: int) -> int:
    """A paper's side for a 224 input, at the model's input size."""
    return round(side * image_size / PAPER_INPUT_SIZE)


def three_squares(image: torch.Tensor) -> list[torch.Tensor]:
    """GoogLeNet §7: "take the left, center and right square of these resized images (in the
    case of portrait images, we take the top, center and bottom squares)"."""
    height, width = image.shape[-2:]
    side = min(height, width)
    longer = max(height, width)
    offsets = (0, (longer - side) // 2, longer - side)
    if width >= height:
        return [image[..., :, left : left + side] for left in offsets]
    return [image[..., top : top + side, :] for top in offsets]


def six_crops(square: torch.Tensor, size: int) -> list[torch.Tensor]:
    """GoogLeNet §7: "For each square, we then take the 4 corners and the center 224x224 crop
    as well as the square resized to 224x224": top-left, top-right, bottom-left,
    bottom-right, centre (TenCrop's order), then the whole square."""
    side = square.shape[-1]
    far = side - size
    centre = round(far / 2)
    return [
        square[..., :size, :size],
        square[..., :size, far:],
        square[..., far:, :size],
        square[..., far:, far:],
        square[..., centre : centre + size, centre : centre + size],
        TF.resize(square, [size, size], antialias=True),
    ]


class GoogLeNetCrops(nn.Module):
    """One image -> its 144 crops (144, C, size, size), uint8. Crop k is
    ((scale * 3 + square) * 6 + crop) * 2 + mirror: each crop is followed by its mirror."""

    def __init__(self, image_size: int) -> None:
        super().__init__()
        self.image_size = image_size
        self.scales = tuple(scaled(side, image_size) for side in GOOGLENET_SCALES)

    def forward(self, image) -> torch.Tensor:
        image = TF.to_image(image).as_subclass(torch.Tensor)
        crops = []
        for side in self.scales:
            resized = TF.resize(image, side, antialias=True)  # the shorter side to `side`
            for square in three_squares(resized):
                for crop in six_crops(square, self.image_size):
                    crops += [crop, crop.flip(-1)]
        return torch.stack(crops)


class WholeImageScales(nn.Module):
    """One image -> a list with, for each test scale Q, the whole image with its shorter side
    at Q and its mirror image: (2, C, H_Q, W_Q), uint8 (VGG §3.2: "we also augment the test
    set by horizontal flipping of the images")."""

    def __init__(self, image_size: int, scales: tuple[int, ...]) -> None:
        super().__init__()
        self.scales = tuple(scaled(side, image_size) for side in scales)

    def forward(self, image) -> list[torch.Tensor]:
        image = TF.to_image(image).as_subclass(torch.Tensor)
        views = []
        for side in self.scales:
            resized = TF.resize(image, side, antialias=True)
            views.append(torch.stack([resized, resized.flip(-1)]))
        return views


def evaluation_geometry(test_crops: str, image_size: int) -> nn.Module:
    """The per-image transform of a multi-scale protocol (googlenet144, dense, multiscale)."""
    if test_crops == "googlenet144":
        return GoogLeNetCrops(image_size)
    if test_crops == "dense":
        return WholeImageScales(image_size, VGG_DENSE_SCALES)
    if test_crops == "multiscale":
        return WholeImageScales(image_size, VGG_MULTI_SCALES)
    raise ValueError(f"{test_crops!r} is not a multi-scale protocol; see cnnzoo_data.evaluation")


def collate_whole_images(batch: list[tuple[list[torch.Tensor], int]]):
    """A batch of dense evaluation: (per image its list of scales, labels). Whole images of
    different sizes cannot be stacked into one tensor."""
    views, labels = zip(*batch, strict=True)
    return list(views), default_collate(list(labels))


def check_image_side(test_crops: str, dataset: str, native_size: int, image_size: int) -> None:
    """Refuse a multi-scale protocol on images smaller than the network's input (CIFAR's
    32x32 at a 224 input): every view would be a blown-up copy of one small picture."""
    if test_crops in RESCALING_PROTOCOLS and native_size < image_size:
        raise DatasetError(
            f"test_crops: {test_crops} looks at {dataset}'s images rescaled to shorter sides of "
            f"{scaled(256, image_size)} and more (the paper's 256 for a {PAPER_INPUT_SIZE} "
            f"input, at the input size {image_size}), but its images are {native_size}x"
            f"{native_size}: every view would be a blown-up copy of one small picture. Use "
            f"test_crops: center, or a model at the data's size (--data.image_size "
            f"{native_size} if the model takes it)."
        )
