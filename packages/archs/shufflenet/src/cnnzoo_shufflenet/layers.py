"""What both ShuffleNets share: the channel shuffle, and the authors' initialisation."""

from __future__ import annotations

import torch
from torch import nn


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet §3.1, Fig. 1(c): "suppose a convolutional layer with g groups whose output
    has g x n channels; we first reshape the output channel dimension into (g, n),
    transposing and then flattening it back". Channel i·n + j goes to j·g + i, so each group
    of the next grouped convolution receives channels from every group of this one."""
    batch, channels, height, width = x.shape
    x = x.reshape(batch, groups, channels // groups, height, width)
    return x.transpose(1, 2).reshape(batch, channels, height, width)


class ChannelShuffle(nn.Module):
    """`channel_shuffle` as a layer: "Channel Shuffle" in ShuffleNet Fig. 2 and ShuffleNet V2
    Fig. 3."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_shuffle(x, self.groups)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


def init_as_released(model: nn.Module, first_conv: nn.Conv2d) -> None:
    """Neither paper gives an initialisation; the authors' release (megvii-model/
    ShuffleNet-Series, for both versions) draws each convolution's weights from
    N(0, 1 / fan-in channels per group), the first convolution's from N(0, 0.01), the
    classifier's from N(0, 0.01), and starts BN's scale at 1 and shift at 1e-4."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            std = 0.01 if module is first_conv else 1.0 / module.weight.shape[1]
            nn.init.normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.constant_(module.bias, 1e-4)
        elif isinstance(module, nn.Linear):
            init_classifier_as_released(module)


def init_classifier_as_released(fc: nn.Linear) -> None:
    """The classifier of `init_as_released`: N(0, 0.01), bias 0."""
    nn.init.normal_(fc.weight, std=0.01)
    if fc.bias is not None:
        nn.init.zeros_(fc.bias)
