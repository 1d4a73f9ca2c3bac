"""DenseNet's building blocks, named as Huang et al. 2017 name them (§3, Fig. 1 and 2).

Every convolution is pre-activated: batch normalisation, then ReLU, then the convolution
("H_ℓ ... a composite function of three consecutive operations: batch normalization, a
rectified linear unit and a 3x3 convolution", §3 Composite function).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


class BNReLUConv(nn.Sequential):
    """BN-ReLU-Conv, the pre-activated convolution of every DenseNet layer (§3), followed by
    dropout where the paper used it (§4.2: "after each convolutional layer (except the first
    one)", on the data sets without augmentation). The convolutions have no bias, as in the
    authors' Torch code: the next batch normalisation would cancel it."""

    def __init__(
        self, in_chans: int, out_chans: int, kernel_size: int, drop_rate: float = 0.0
    ) -> None:
        layers = OrderedDict(
            norm=nn.BatchNorm2d(in_chans),
            relu=nn.ReLU(inplace=True),
            conv=nn.Conv2d(in_chans, out_chans, kernel_size, padding=kernel_size // 2, bias=False),
        )
        if drop_rate > 0:
            layers["dropout"] = nn.Dropout(drop_rate)
        super().__init__(layers)


class DenseLayer(nn.Module):
    """One layer ℓ of a dense block: x_ℓ = H_ℓ([x_0, x_1, ..., x_ℓ-1]) gives k new feature
    maps, k the growth rate (§3 Growth rate).

    With `bottleneck` (DenseNet-B, §3 Bottleneck layers) a 1x1 convolution first reduces the
    concatenated input to 4k maps: BN-ReLU-Conv(1x1)-BN-ReLU-Conv(3x3).
    """

    def __init__(
        self, in_chans: int, growth_rate: int, bottleneck: bool, drop_rate: float = 0.0
    ) -> None:
        super().__init__()
        # "we let each 1x1 convolution produce 4k feature-maps" (§3 Bottleneck layers)
        width = 4 * growth_rate if bottleneck else in_chans
        self.conv1x1 = BNReLUConv(in_chans, width, 1, drop_rate) if bottleneck else None
        self.conv3x3 = BNReLUConv(width, growth_rate, 3, drop_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv1x1 is not None:
            x = self.conv1x1(x)
        return self.conv3x3(x)


class DenseBlock(nn.ModuleDict):
    """A dense block (§3 Dense connectivity, Fig. 1): each layer takes the concatenation of
    the block's input and of all earlier layers' outputs; the block gives the concatenation
    of all of them, `in_chans + num_layers * growth_rate` maps of unchanged size."""

    def __init__(
        self,
        in_chans: int,
        num_layers: int,
        growth_rate: int,
        bottleneck: bool,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__(
            {
                f"layer{i + 1}": DenseLayer(
                    in_chans + i * growth_rate, growth_rate, bottleneck, drop_rate
                )
                for i in range(num_layers)
            }
        )
        self.out_chans = in_chans + num_layers * growth_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(torch.cat(features, dim=1)))
        return torch.cat(features, dim=1)


class Transition(nn.Sequential):
    """A transition layer between two dense blocks (§3 Pooling layers): batch normalisation,
    a 1x1 convolution and 2x2 average pooling. With compression θ < 1 (DenseNet-C, §3
    Compression) the convolution gives floor(θm) maps from m."""

    def __init__(self, in_chans: int, out_chans: int, drop_rate: float = 0.0) -> None:
        # The authors' code puts the ReLU after the normalisation here too, and the dropout
        # after the convolution, before pooling.
        layers = OrderedDict(
            norm=nn.BatchNorm2d(in_chans),
            relu=nn.ReLU(inplace=True),
            conv=nn.Conv2d(in_chans, out_chans, 1, bias=False),
        )
        if drop_rate > 0:
            layers["dropout"] = nn.Dropout(drop_rate)
        layers["pool"] = nn.AvgPool2d(kernel_size=2, stride=2)
        super().__init__(layers)
