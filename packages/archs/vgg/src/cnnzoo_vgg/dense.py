"""VGG's dense evaluation (§3.2): "the fully-connected layers are first converted to
convolutional layers (the first FC layer to a 7x7 conv. layer, the last two FC layers to 1x1
conv. layers). The resulting fully-convolutional net is then applied to the whole
(uncropped) image. The result is a class score map with the number of channels equal to the
number of classes, and a variable spatial resolution, dependent on the input image size.
Finally, to obtain a fixed-size vector of class scores for the image, the class score map is
spatially averaged (sum-pooled)."
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import TYPE_CHECKING

import torch
from cnnzoo import InputShapeError
from torch import nn

if TYPE_CHECKING:  # vgg.py builds on this module; this one only names its class
    from cnnzoo_vgg.vgg import VGG

DENSE_MIN_SIZE = 7 * 32  # fc6's 7x7 window over pool5, five 2x poolings down


def _as_conv(fc: nn.Linear, in_chans: int, kernel_size: int) -> nn.Conv2d:
    """A fully-connected layer as the convolution that computes it at every position. torch
    flattens (C, H, W) row-major, so the weight (out, C*H*W) is a view (out, C, H, W)."""
    conv = nn.Conv2d(in_chans, fc.out_features, kernel_size).to(fc.weight.device)
    with torch.no_grad():
        conv.weight.copy_(fc.weight.reshape(fc.out_features, in_chans, kernel_size, kernel_size))
        conv.bias.copy_(fc.bias)
    return conv


class FullyConvolutionalVGG(nn.Module):
    """The test-time form of a VGG net (§3.2): its convolutional layers, fc6 as a 7x7
    convolution, fc7 and fc8 as 1x1 convolutions. `score_map(x)` is the class score map;
    `forward(x)` its spatial average. Images must be at least 224x224 (a 7x7 pool5 map)."""

    def __init__(self, model: VGG) -> None:
        super().__init__()
        self.num_classes = model.num_classes
        self.features = copy.deepcopy(model.features)
        self.fc6 = nn.Sequential(
            OrderedDict(conv=_as_conv(model.fc6.fc, 512, 7), relu=nn.ReLU(inplace=True))
        )
        self.fc7 = nn.Sequential(
            OrderedDict(conv=_as_conv(model.fc7.fc, 4096, 1), relu=nn.ReLU(inplace=True))
        )
        self.fc8 = _as_conv(model.fc8, 4096, 1)

    def score_map(self, x: torch.Tensor) -> torch.Tensor:
        """(N, classes, h, w): 1x1 for a 224x224 image, one more per 32 pixels beyond."""
        if min(x.shape[-2:]) < DENSE_MIN_SIZE:
            raise InputShapeError(
                f"VGG's fully convolutional form needs images of at least {DENSE_MIN_SIZE}x"
                f"{DENSE_MIN_SIZE} (fc6 is a 7x7 convolution over pool5, a 32nd of the image); "
                f"got {x.shape[-2]}x{x.shape[-1]}. Test at the paper's scales (the input size "
                f"224 gives Q = 256), or on crops (test_crops: center)."
            )
        return self.fc8(self.fc7(self.fc6(self.features(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.score_map(x).mean(dim=(2, 3))


def to_fully_convolutional(model: VGG) -> FullyConvolutionalVGG:
    """The fully-convolutional net of §3.2, with copies of `model`'s weights (the FC weights
    reshaped); in eval mode it gives `model`'s logits on 224x224 images."""
    return FullyConvolutionalVGG(model).train(model.training)
