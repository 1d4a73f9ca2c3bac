"""ZFNet: Zeiler and Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014
(arXiv:1311.2901), the model of Fig. 3 and §3.

    224x224x3 -> layer 1: 96 filters 7x7, stride 2 -> 110x110, ReLU, 3x3 max pool stride 2
                          -> 55x55, contrast normalisation across feature maps
              -> layer 2: 256 filters 5x5, stride 2 -> 26x26, ReLU, 3x3 max pool stride 2
                          -> 13x13, contrast normalisation
              -> layer 3: 384 filters 3x3 -> 13x13, ReLU
              -> layer 4: 384 filters 3x3 -> 13x13, ReLU
              -> layer 5: 256 filters 3x3 -> 13x13, ReLU, 3x3 max pool stride 2 -> 6x6
              -> layer 6: 4096 -> layer 7: 4096 -> C-way softmax

The net is AlexNet after the paper's visualisations showed its faults (§4.1): 7x7 stride-2
first-layer filters instead of 11x11 stride 4, stride 2 in layer 2, and dense connections
(one GPU) instead of AlexNet's sparse ones in layers 3, 4 and 5 (§3).

The max poolings keep their switches available (`forward_with_switches`): the deconvnet of
§2.1 unpools through them to project activations back to pixels.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

import torch
import torch.nn.functional as F
from cnnzoo import ClassifierNet, FeatureInfo, ModelCard, PublishedError, variant
from torch import nn

# The smallest input that leaves layer 5's pooling a map: 47 -> 22 (layer 1's filters) -> 11
# (its pool) -> 4 -> 2 -> 1 (layer 5's pool).
MIN_INPUT_SIZE = 47

# §3: "All weights are initialized to 10^-2 and biases are set to 0", read as weights from
# N(0, 0.01^2) as AlexNet (which the paper follows) and Caffe reproductions do.
INIT_STD = 0.01

# §3: "we renormalize each filter in the convolutional layers whose RMS value exceeds a fixed
# radius of 10^-1 to this fixed radius".
FILTER_RMS_RADIUS = 0.1


class PoolingSwitches(NamedTuple):
    """Where each max came from (§2.1: "we record the locations of the maxima within each
    pooling region in a set of switch variables"), and the size of the map they index, which
    `F.max_unpool2d(pooled, indices, kernel, stride, output_size=input_size)` needs."""

    indices: torch.Tensor
    input_size: torch.Size


class SwitchedFeatures(NamedTuple):
    """Each layer's output ("layer1" ... "layer5") and the switches of its pooling (for the
    layers that pool: layer1, layer2, layer5)."""

    maps: dict[str, torch.Tensor]
    switches: dict[str, PoolingSwitches]


def contrast_norm() -> nn.LocalResponseNorm:
    """Fig. 3's "contrast normalized across feature maps". The paper gives no parameters; we
    use AlexNet's response normalisation, which ZFNet otherwise follows (k = 2, n = 5,
    alpha = 1e-4, beta = 0.75; torch divides alpha by n, so alpha * n goes in)."""
    return nn.LocalResponseNorm(size=5, alpha=5 * 1e-4, beta=0.75, k=2.0)


def overlapping_pool() -> nn.MaxPool2d:
    """3x3 max pooling with stride 2. Rounding the output size up (Caffe's and cuda-convnet's
    rule) gives Fig. 3's sizes: 110 -> 55, 26 -> 13, 13 -> 6."""
    return nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)


class ZFLayer(nn.Module):
    """One of Fig. 3's convolutional layers: filters, ReLU, and where the figure has them,
    max pooling and contrast normalisation (in that order)."""

    def __init__(
        self,
        in_chans: int,
        filters: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        pool: bool = False,
        norm: bool = False,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chans, filters, kernel_size, stride, padding)
        self.relu = nn.ReLU(inplace=True)
        self.pool = overlapping_pool() if pool else None
        self.norm = contrast_norm() if norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.conv(x))
        if self.pool is not None:
            x = self.pool(x)
        return x if self.norm is None else self.norm(x)

    def forward_with_switches(self, x: torch.Tensor) -> tuple[torch.Tensor, PoolingSwitches | None]:
        """The same output, and the pooling's switches (None where the layer does not pool)."""
        x = self.relu(self.conv(x))
        switches = None
        if self.pool is not None:
            pool = self.pool
            pooled, indices = F.max_pool2d(
                x,
                pool.kernel_size,
                pool.stride,
                pool.padding,
                pool.dilation,
                ceil_mode=pool.ceil_mode,
                return_indices=True,
            )
            switches = PoolingSwitches(indices, x.shape)
            x = pooled
        if self.norm is not None:
            x = self.norm(x)
        return x, switches


class ZFNet(ClassifierNet):
    """The ImageNet model of Fig. 3, with the initialisation of §3, dropout 0.5 in layers 6
    and 7, and the filter renormalisation of §3 as `renormalize_filters()` (call it after
    each optimiser step, as the paper did)."""

    classifier_name = "fc8"
    num_features = 256  # layer 5's maps
    head_hidden_size = 4096  # layer 7's units

    def __init__(self, num_classes: int = 1000, in_chans: int = 3) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.features = nn.Sequential(
            OrderedDict(
                # Padding 1 gives Fig. 3's 110x110 from 224x224 ((224 + 2 - 7) // 2 + 1).
                layer1=ZFLayer(in_chans, 96, 7, stride=2, padding=1, pool=True, norm=True),
                layer2=ZFLayer(96, 256, 5, stride=2, pool=True, norm=True),
                layer3=ZFLayer(256, 384, 3, padding=1),
                layer4=ZFLayer(384, 384, 3, padding=1),
                layer5=ZFLayer(384, 256, 3, padding=1, pool=True),
            )
        )
        self.feature_info = [
            FeatureInfo("features.layer1", 96, 4),
            FeatureInfo("features.layer2", 256, 16),
            FeatureInfo("features.layer3", 384, 16),
            FeatureInfo("features.layer4", 384, 16),
            # conv5's map before its pooling, at stride 16 like AlexNet's: the map the
            # Faster R-CNN paper's ZF model detects on.
            FeatureInfo("features.layer5.relu", 256, 16),
        ]
        # 6x6 at 224x224, where it does nothing; lets other sizes reach layer 6.
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        # Fig. 3: "the last two layers are fully connected, taking features from the top
        # convolutional layer as input in vector form (6 · 6 · 256 = 9216 dimensions)".
        self.fc6 = self._hidden_layer(256 * 6 * 6)
        self.fc7 = self._hidden_layer(4096)
        self.fc8 = nn.Linear(4096, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                nn.init.normal_(module.weight, mean=0.0, std=INIT_STD)
                nn.init.zeros_(module.bias)

    @staticmethod
    def _hidden_layer(in_features: int) -> nn.Sequential:
        # §3: "Dropout is used in the fully connected layers (6 and 7) with a rate of 0.5".
        return nn.Sequential(
            OrderedDict(
                fc=nn.Linear(in_features, 4096),
                relu=nn.ReLU(inplace=True),
                dropout=nn.Dropout(0.5),
            )
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_with_switches(self, x: torch.Tensor) -> SwitchedFeatures:
        """Layer 1 to 5's maps and the pooling switches that a deconvnet (§2.1) needs; the
        last map is `forward_features(x)`."""
        self.check_input(x)
        maps, switches = {}, {}
        for name, layer in self.features.named_children():
            x, layer_switches = layer.forward_with_switches(x)
            maps[name] = x
            if layer_switches is not None:
                switches[name] = layer_switches
        return SwitchedFeatures(maps, switches)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.fc7(self.fc6(self.avgpool(x).flatten(1)))
        return x if pre_logits else self.fc8(x)

    def new_classifier(self, num_classes: int) -> nn.Module:
        fc8 = nn.Linear(4096, num_classes)
        nn.init.normal_(fc8.weight, mean=0.0, std=INIT_STD)
        nn.init.zeros_(fc8.bias)
        return fc8

    @torch.no_grad()
    def renormalize_filters(self, radius: float = FILTER_RMS_RADIUS) -> None:
        """§3: scale every convolutional filter whose RMS value exceeds `radius` back to
        `radius` (the paper's fix for a few first-layer filters dominating)."""
        for module in self.features.modules():
            if isinstance(module, nn.Conv2d):
                weight = module.weight
                rms = weight.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt()
                weight.mul_(torch.where(rms > radius, radius / rms, torch.ones_like(rms)))


@variant(
    ModelCard(
        paper="Visualizing and Understanding Convolutional Networks",
        authors="M. D. Zeiler, R. Fergus",
        year=2013,
        url="https://arxiv.org/abs/1311.2901",
        input_size=(3, 224, 224),
        num_classes=1000,
        published_params=62_357_608,
        params_source="our count of the Fig. 3 architecture with 1000 classes (the paper "
        "prints no parameter count)",
        published_errors=(
            PublishedError(
                "ILSVRC-2012 val",
                top1=38.4,
                top5=16.5,
                evaluation="as Table 2 reports it (the paper does not state its test crops)",
                source="Table 2: 1 convnet as per Fig. 3",
            ),
        ),
        min_input_size=MIN_INPUT_SIZE,
        notes="Fig. 3's sizes (110, 55, 26, 13, 6) need padding 1 in layer 1 and pools that "
        "round up (ceil_mode). The contrast normalisation's parameters are not given; "
        "AlexNet's are used. An adaptive 6x6 average pool before layer 6 (identity at "
        "224x224) lets the net take other sizes. 62,357,608 parameters with 1000 classes.",
    )
)
def zfnet(num_classes: int = 1000, in_chans: int = 3) -> ZFNet:
    """ZFNet of Zeiler and Fergus 2013 (Fig. 3): 62,357,608 parameters with 1000 classes."""
    return ZFNet(num_classes=num_classes, in_chans=in_chans)
