"""Resnet in Resnet (RiR): Targ, Almeida and Lyman, "Resnet in Resnet: Generalizing Residual
Architectures", ICLR 2016 workshop (arXiv:1603.08029).

§2, the generalized residual block: two parallel streams, a residual stream r that "contains
identity shortcut connections" and a transient stream t, "a standard convolutional layer";
two more sets of filters carry information across the streams (Eq. 1):

    r_{l+1} = σ(conv(r_l, W_{l,r→r}) + conv(t_l, W_{l,t→r}) + shortcut(r_l))
    t_{l+1} = σ(conv(r_l, W_{l,r→t}) + conv(t_l, W_{l,t→t}))

"Same-stream and cross-stream activations are summed (along with the shortcut connection for
the residual stream) before applying batch normalization and ReLU nonlinearities (together
σ)." "We use equal numbers of filters for the residual and transient streams."

ResNet Init: the block is one convolution over the concatenated streams [r, t] whose kernel
has an identity added to its r→r part. `ResnetInit` computes it that way: one convolution
with the kernel [[W_r→r, W_t→r], [W_r→t, W_t→t]], plus r where the output is r. The identity
is no parameter, so weight decay reaches W alone (the paper's caution for L2 penalties).

"Replacing each of the convolutional layers within a residual block from the original ResNet
(Figure 1a) with a generalized residual block (Figure 1b) leads us to ... RiR (Figure 1d)":
`RiRBlock` stacks two `ResnetInit` layers and wraps them in an outer identity shortcut.

The CIFAR network, "18-layer + wide RiR" (Table 1: 94.99% on CIFAR-10, 77.10% on CIFAR-100):

    stage    map     per stream   RiR blocks   ResnetInit layers
    conv1    32x32   48 + 48      3x3 conv into both streams, BN, ReLU
    stage1   32x32   48           2            4
    stage2   16x16   96           3            6   (the first layer strides 2)
    stage3    8x8    192          3            6   (the first layer strides 2)
    head     1x1     r and t concatenated (384), global average pooling, fc, softmax

1 + 16 + 1 = 18 weighted layers. The paper's own architecture table could not be read here:
this table is the reading shared by the public reimplementations (per-stream widths 48, 96,
192 over 4, 6 and 6 layers); what rests on a reading is listed in the card's notes.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import NamedTuple

import torch
from cnnzoo import (
    FeatureInfo,
    ModelCard,
    PooledClassifierNet,
    PublishedError,
    variant,
)
from torch import nn

from cnnzoo_resnet.resnet import ZeroPadIdentity


class RiRStage(NamedTuple):
    """One row of the stage table: filters per stream, RiR blocks, stride of the first."""

    width: int
    blocks: int
    stride: int


# "18-layer + wide RiR": 48, 96 and 192 filters in each stream on 32, 16 and 8 pixel maps.
WIDE_RIR_18 = (RiRStage(48, 2, 1), RiRStage(96, 3, 2), RiRStage(192, 3, 2))
LAYERS_PER_BLOCK = 2  # Figure 1(d): "2-layer RiR block"


class ResnetInit(nn.Module):
    """One generalized residual block (§2, Eq. 1, Figure 1b) on the concatenated streams:
    the input holds r in its first `in_channels` maps and t in the last `in_channels`, the
    output r and t with `out_channels` maps each.

    `conv` is ResNet Init's single convolution, 2 x `in_channels` to 2 x `out_channels`;
    its four quarters are the paper's W_{r→r}, W_{t→r}, W_{r→t} and W_{t→t}. shortcut(r_l) is
    the identity, taken every `stride` pixels and padded with zero maps where the width
    grows ("an identity function with the appropriate padding"), which is what an identity
    added to the centre of a strided kernel computes.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        # No bias: the BatchNorm after the sum has its own shift.
        self.conv = nn.Conv2d(
            2 * in_channels, 2 * out_channels, 3, stride=stride, padding=1, bias=False
        )
        # BatchNorm is per map, so one over [r, t] is one for each stream.
        self.bn = nn.BatchNorm2d(2 * out_channels)
        self.relu = nn.ReLU(inplace=True)
        # r_l into the first out_channels maps, zeros into the rest and into t's.
        self.shortcut = ZeroPadIdentity(in_channels, 2 * out_channels, stride)

    def weight(self, source: str, target: str) -> torch.Tensor:
        """W_{source→target} of Eq. 1, source and target "r" or "t": a view of `conv`."""
        rows = {"r": slice(0, self.out_channels), "t": slice(self.out_channels, None)}
        columns = {"r": slice(0, self.in_channels), "t": slice(self.in_channels, None)}
        return self.conv.weight[rows[target], columns[source]]

    def forward(self, streams: torch.Tensor) -> torch.Tensor:
        residual = streams[:, : self.in_channels]
        return self.relu(self.bn(self.conv(streams) + self.shortcut(residual)))


class RiRBlock(nn.Module):
    """Figure 1(d): a ResNet block whose layers are generalized residual blocks, two
    `ResnetInit` layers and an outer identity shortcut around them.

    The outer shortcut joins the residual stream alone (the transient stream has no
    shortcut by definition) and is added after the last layer's σ, with no activation
    after the sum. Where the block downsamples, its first layer carries the stride and the
    outer shortcut is subsampled and zero-padded as the inner ones are.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.in_channels = in_channels
        layers = [ResnetInit(in_channels, out_channels, stride)]
        layers += [ResnetInit(out_channels, out_channels) for _ in range(LAYERS_PER_BLOCK - 1)]
        self.layers = nn.Sequential(*layers)
        self.shortcut = ZeroPadIdentity(in_channels, 2 * out_channels, stride)

    def forward(self, streams: torch.Tensor) -> torch.Tensor:
        residual = streams[:, : self.in_channels]
        return self.layers(streams) + self.shortcut(residual)


class ResnetInResnet(PooledClassifierNet):
    """An RiR network for 32x32 images from a stage table (`WIDE_RIR_18`: the paper's
    "18-layer + wide RiR"). The two streams travel as one tensor, r's maps first; the feature
    maps of each stage, and of `forward_features`, hold both streams."""

    def __init__(
        self, stages: Sequence[RiRStage], num_classes: int = 10, in_chans: int = 3
    ) -> None:
        super().__init__()
        if not stages:
            raise ValueError("an RiR network needs at least one stage")
        self.num_classes = num_classes
        self.in_chans = in_chans
        width = stages[0].width
        # The image enters both streams through one 3x3 convolution split in two halves
        # (the same as one convolution for each stream).
        self.conv1 = nn.Sequential(
            OrderedDict(
                conv=nn.Conv2d(in_chans, 2 * width, 3, padding=1, bias=False),
                bn=nn.BatchNorm2d(2 * width),
                relu=nn.ReLU(inplace=True),
            )
        )
        self.feature_info = [FeatureInfo("conv1", 2 * width, 1)]
        self.stage_names: list[str] = []
        stride = 1
        for index, stage in enumerate(stages, start=1):
            blocks = [RiRBlock(width, stage.width, stage.stride)]
            blocks += [RiRBlock(stage.width, stage.width) for _ in range(stage.blocks - 1)]
            width, stride = stage.width, stride * stage.stride
            name = f"stage{index}"
            self.add_module(name, nn.Sequential(*blocks))
            self.stage_names.append(name)
            self.feature_info.append(FeatureInfo(name, 2 * width, stride))
        # Both streams, concatenated, into the classifier.
        self.build_head(2 * width, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # He et al.'s initialisation, as in the ResNets RiR is compared with; the paper
        # searched over initialisations and the one it kept could not be read here.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        for name in self.stage_names:
            x = self.get_submodule(name)(x)
        return x


def streams(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(r, t): the residual and transient streams of a feature map of `ResnetInResnet`."""
    return x.chunk(2, dim=1)


PAPER = "Resnet in Resnet: Generalizing Residual Architectures"
AUTHORS = "S. Targ, D. Almeida, K. Lyman"
URL = "https://arxiv.org/abs/1603.08029"
EVALUATION = "single view of the 32x32 test image"

# Our count of WIDE_RIR_18 with 10 classes, written out: conv1 3*96*9 + 2*96; per ResnetInit
# layer 9 * (2 c_in) * (2 c_out) + 2 * (2 c_out); 4 layers of 48, 6 of 96 (the first from
# 48), 6 of 192 (the first from 96); fc 384 * 10 + 10.
PARAMS = (
    3 * 96 * 9
    + 2 * 96
    + 4 * (36 * 48 * 48 + 4 * 48)
    + (36 * 48 * 96 + 4 * 96)
    + 5 * (36 * 96 * 96 + 4 * 96)
    + (36 * 96 * 192 + 4 * 192)
    + 5 * (36 * 192 * 192 + 4 * 192)
    + 384 * 10
    + 10
)


@variant(
    ModelCard(
        paper=PAPER,
        authors=AUTHORS,
        year=2016,
        url=URL,
        input_size=(3, 32, 32),
        num_classes=10,
        published_params=PARAMS,
        params_source="not printed (no count could be read in the paper): the stage table "
        "written out, 18-layer + wide RiR with 10 classes (9,469,930)",
        published_errors=(
            PublishedError(
                "CIFAR-10 test",
                top1=5.01,
                evaluation=EVALUATION,
                source="Table 1: 18-layer + wide RiR, 94.99% accuracy",
                recipe="rir_cifar10",
            ),
            PublishedError(
                "CIFAR-100 test",
                top1=22.90,
                evaluation=EVALUATION,
                source="Table 1: 18-layer + wide RiR, 77.10% accuracy",
            ),
        ),
        recipe="rir_cifar10",
        notes="From the paper (§2, Eq. 1, Fig. 1): σ = BatchNorm then ReLU after the sum, "
        "the shortcut inside σ; equal widths in both streams; ResNet Init, one convolution "
        "over [r, t] with the identity on its r→r part; 2-layer RiR blocks; shortcuts 'an "
        "identity function with the appropriate padding or a projection' (we take the "
        "identity). A reading, not confirmed in the paper's words: the stage table (48/96/192 "
        "filters per stream over 4/6/6 layers, as the public reimplementations have it); one "
        "3x3 convolution, split in two, feeding both streams; the first layer of a stage "
        "striding 2; the outer shortcut joining the residual stream alone, after the last σ; "
        "global average pooling of both streams into one fc (two reimplementations use a 1x1 "
        "convolution and BatchNorm instead, 20 parameters more); no convolution biases; He "
        "initialisation; and the recipe's training settings, He et al.'s for CIFAR.",
    )
)
def rir_cifar10(num_classes: int = 10, in_chans: int = 3) -> ResnetInResnet:
    """The paper's 18-layer + wide RiR for CIFAR (Table 1): 16 ResnetInit layers in 8 RiR
    blocks; 9,469,930 parameters with 10 classes."""
    return ResnetInResnet(WIDE_RIR_18, num_classes, in_chans)


__all__ = [
    "LAYERS_PER_BLOCK",
    "WIDE_RIR_18",
    "ResnetInResnet",
    "ResnetInit",
    "RiRBlock",
    "RiRStage",
    "rir_cifar10",
    "streams",
]
