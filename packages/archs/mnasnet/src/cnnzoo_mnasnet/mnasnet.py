"""MnasNet: Tan, Chen, Pang, Vasudevan, Sandler, Howard and Le, "MnasNet: Platform-Aware
Neural Architecture Search for Mobile", CVPR 2019, arXiv:1807.11626, §4 and Fig. 7.

The search (§3-§4) picks, block by block, the convolution (MBConv with expansion 3 or 6),
kernel (3x3 or 5x5), squeeze-and-excitation or none, and the number of layers. Its result
MnasNet-A1 (Fig. 7a):

    224x224x3 -> Conv 3x3, 32, stride 2                               112x112
              -> SepConv (k3x3), 16                                    112x112
              -> MBConv6 (k3x3) x2, 24 -> MBConv3 (k5x5), SE x3, 40 -> MBConv6 (k3x3) x4, 80
              -> MBConv6 (k3x3), SE x2, 112 -> MBConv6 (k5x5), SE x3, 160
              -> MBConv6 (k3x3) x1, 320                                 7x7
              -> [Conv 1x1, 1280] -> Pooling -> FC

Fig. 7 leaves out the 1x1 convolution to 1280 channels before the pool, which the authors'
release has and the 3.9M parameters count. MnasNet-B1 is the search result without SE (the
network of the paper's first arXiv version, "mnasnet-b1" in the authors' release and
torchvision's `mnasnet1_0`). ReLU throughout; the first layer of each block has the stride
and the others join their input through a shortcut.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Mapping
from typing import NamedTuple

import torch
from cnnzoo import (
    FeatureInfo,
    ModelCard,
    PooledClassifierNet,
    PretrainedWeights,
    PublishedError,
    variant,
)
from torch import nn

# §5: "batch norm is added after every convolution layer with momentum 0.99" (TensorFlow's
# decay, torch's momentum 0.01).
BN_MOMENTUM = 0.01


class BlockRow(NamedTuple):
    """One block of Fig. 7: `repeats` MBConv layers of the same kind, the first with
    `stride`."""

    expansion: int  # MBConv3 or MBConv6
    kernel_size: int
    squeeze_excitation: bool
    repeats: int
    channels: int
    stride: int


STEM_CHANNELS = 32  # Conv 3x3
SEPCONV_CHANNELS = 16  # SepConv (k3x3)
HEAD_CHANNELS = 1280  # the 1x1 convolution before the pool

# Fig. 7(a), MnasNet-A1, after its SepConv.
FIGURE_7A: tuple[BlockRow, ...] = (
    BlockRow(6, 3, False, 2, 24, 2),
    BlockRow(3, 5, True, 3, 40, 2),
    BlockRow(6, 3, False, 4, 80, 2),
    BlockRow(6, 3, True, 2, 112, 1),
    BlockRow(6, 5, True, 3, 160, 2),
    BlockRow(6, 3, False, 1, 320, 1),
)

# MnasNet-B1, the search without SE, as the authors' release ("mnasnet-b1") builds it.
MNASNET_B1: tuple[BlockRow, ...] = (
    BlockRow(3, 3, False, 3, 24, 2),
    BlockRow(3, 5, False, 3, 40, 2),
    BlockRow(6, 5, False, 3, 80, 2),
    BlockRow(6, 3, False, 2, 96, 1),
    BlockRow(6, 5, False, 4, 192, 2),
    BlockRow(6, 3, False, 1, 320, 1),
)


def round_channels(channels: float, divisor: int = 8) -> int:
    """A width-multiplied layer's channels, as the authors' release and torchvision round
    them: to a multiple of 8, up unless that is less than 10% off."""
    rounded = max(divisor, int(channels + divisor / 2) // divisor * divisor)
    return rounded if rounded >= 0.9 * channels else rounded + divisor


def conv_bn(
    in_chans: int,
    out_chans: int,
    kernel_size: int,
    stride: int = 1,
    groups: int = 1,
    relu: bool = True,
) -> nn.Sequential:
    layers = OrderedDict(
        conv=nn.Conv2d(
            in_chans,
            out_chans,
            kernel_size,
            stride,
            padding=kernel_size // 2,
            groups=groups,
            bias=False,
        ),
        bn=nn.BatchNorm2d(out_chans, momentum=BN_MOMENTUM),
    )
    if relu:
        layers["relu"] = nn.ReLU(inplace=True)
    return nn.Sequential(layers)


class SepConv(nn.Sequential):
    """Fig. 7(b): depthwise 3x3 convolution, BN, ReLU; pointwise 1x1 convolution, BN (no
    ReLU, no shortcut)."""

    def __init__(self, in_chans: int, out_chans: int) -> None:
        super().__init__(
            OrderedDict(
                depthwise=conv_bn(in_chans, in_chans, 3, groups=in_chans),
                pointwise=conv_bn(in_chans, out_chans, 1, relu=False),
            )
        )


class SqueezeExcitation(nn.Module):
    """Squeeze-and-excitation (Hu et al. 2018), the "SE" of Fig. 7: average-pool each channel,
    reduce to a quarter of the block's *input* channels with ReLU, expand back with a
    sigmoid, and rescale the channels (after the depthwise convolution, as in the authors'
    release)."""

    def __init__(self, channels: int, squeezed: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeezed, 1)
        self.relu = nn.ReLU(inplace=True)
        self.expand = nn.Conv2d(squeezed, channels, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.gate(self.expand(self.relu(self.reduce(x.mean((2, 3), keepdim=True)))))
        return x * scale


class MBConv(nn.Module):
    """Fig. 7(b)-(d), the mobile inverted bottleneck of MobileNetV2: 1x1 expansion by 3 or 6
    with ReLU, k x k depthwise convolution with ReLU, SE where the search put one, linear
    1x1 projection; the shortcut where input and output agree."""

    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        expansion: int,
        kernel_size: int,
        stride: int,
        squeeze_excitation: bool,
    ) -> None:
        super().__init__()
        hidden = in_chans * expansion
        self.expand = conv_bn(in_chans, hidden, 1)
        self.depthwise = conv_bn(hidden, hidden, kernel_size, stride, groups=hidden)
        self.se = (
            SqueezeExcitation(hidden, max(1, in_chans // 4))
            if squeeze_excitation
            else nn.Identity()
        )
        self.project = conv_bn(hidden, out_chans, 1, relu=False)
        self.use_shortcut = stride == 1 and in_chans == out_chans

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.se(self.depthwise(self.expand(x))))
        return x + out if self.use_shortcut else out


class MnasNet(PooledClassifierNet):
    """MnasNet from a block table (Fig. 7) and a width multiplier (the paper's "depth
    multiplier").

    `features` holds `conv1`, `sepconv`, `block1` … `block6` (one per table row) and
    `conv_head` (1x1, 1280); then a global average pool, dropout and `fc`.
    """

    def __init__(
        self,
        blocks: tuple[BlockRow, ...] = FIGURE_7A,
        width_multiplier: float = 1.0,
        num_classes: int = 1000,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.width_multiplier = width_multiplier

        def width(channels: int) -> int:
            return round_channels(channels * width_multiplier)

        channels = width(STEM_CHANNELS)
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            conv1=conv_bn(in_chans, channels, 3, stride=2)
        )
        layers["sepconv"] = SepConv(channels, width(SEPCONV_CHANNELS))
        channels, stride = width(SEPCONV_CHANNELS), 2
        self.feature_info = []
        for index, row in enumerate(blocks, start=1):
            if row.stride == 2:  # the previous block ended a stage
                name = f"features.block{index - 1}" if index > 1 else "features.sepconv"
                self.feature_info.append(FeatureInfo(name, channels, stride))
            out_chans = width(row.channels)
            units = []
            for i in range(row.repeats):
                units.append(
                    MBConv(
                        channels,
                        out_chans,
                        row.expansion,
                        row.kernel_size,
                        row.stride if i == 0 else 1,
                        row.squeeze_excitation,
                    )
                )
                channels = out_chans
            layers[f"block{index}"] = nn.Sequential(*units)
            stride *= row.stride
        # The head stays 1280 wide whatever the multiplier, as in the authors' release.
        layers["conv_head"] = conv_bn(channels, HEAD_CHANNELS, 1)
        self.feature_info.append(FeatureInfo("features.conv_head", HEAD_CHANNELS, stride))
        self.features = nn.Sequential(layers)
        # §5: "dropout rate 0.2 is applied to the last layer"
        self.build_head(HEAD_CHANNELS, num_classes, drop_rate=0.2)
        self._init_weights()

    def _init_weights(self) -> None:
        # The paper gives no initialisation; the authors' release draws convolution weights
        # from N(0, 2 / fan-out), fan-out = k·k·out_channels / groups, and the classifier's
        # from U(-1/sqrt(classes), 1/sqrt(classes)); biases at 0, BN at scale 1, shift 0.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                kernel_height, kernel_width = module.kernel_size
                fan_out = kernel_height * kernel_width * module.out_channels // module.groups
                nn.init.normal_(module.weight, std=math.sqrt(2.0 / fan_out))
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                self.init_classifier(module)

    def init_classifier(self, fc: nn.Linear) -> None:
        bound = 1.0 / math.sqrt(fc.out_features)
        nn.init.uniform_(fc.weight, -bound, bound)
        nn.init.zeros_(fc.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


# torchvision's _InvertedResidual.layers indices (2 and 5 are ReLUs) -> ours.
_MBCONV_TORCHVISION = {
    "0": "expand.conv",
    "1": "expand.bn",
    "3": "depthwise.conv",
    "4": "depthwise.bn",
    "6": "project.conv",
    "7": "project.bn",
}
_TORCHVISION_TOP = {
    "0": "conv1.conv",
    "1": "conv1.bn",
    "3": "sepconv.depthwise.conv",
    "4": "sepconv.depthwise.bn",
    "6": "sepconv.pointwise.conv",
    "7": "sepconv.pointwise.bn",
    "14": "conv_head.conv",
    "15": "conv_head.bn",
}


def from_torchvision_state_dict(
    state_dict: Mapping[str, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """A state dict of torchvision's `mnasnet0_5` … `mnasnet1_3` (MnasNet-B1) renamed for
    `MnasNet(MNASNET_B1, ...)`, e.g. for torchvision's ImageNet weights."""
    renamed = {}
    for key, value in state_dict.items():
        new_key = None
        if match := re.fullmatch(r"layers\.(\d+)\.(\d+)\.layers\.(\d+)\.(\w+)", key):
            stack, unit, layer, param = match.groups()
            name = _MBCONV_TORCHVISION.get(layer)
            if name and 8 <= int(stack) <= 13:
                new_key = f"features.block{int(stack) - 7}.{unit}.{name}.{param}"
        elif match := re.fullmatch(r"layers\.(\d+)\.(\w+)", key):
            layer, param = match.groups()
            name = _TORCHVISION_TOP.get(layer)
            new_key = name and f"features.{name}.{param}"
        elif key.startswith("classifier.1."):
            new_key = key.replace("classifier.1.", "fc.")
        if new_key is None:
            raise KeyError(
                f"{key!r} is not a parameter of torchvision's mnasnet; is this the state dict "
                f"of another model?"
            )
        renamed[new_key] = value
    return renamed


_TIMM_BLOCK = {
    "conv_pw": "expand.conv",
    "bn1": "expand.bn",
    "conv_dw": "depthwise.conv",
    "bn2": "depthwise.bn",
    "se.conv_reduce": "se.reduce",
    "se.conv_expand": "se.expand",
    "conv_pwl": "project.conv",
    "bn3": "project.bn",
}
_TIMM_SEPCONV = {
    "conv_dw": "depthwise.conv",
    "bn1": "depthwise.bn",
    "conv_pw": "pointwise.conv",
    "bn2": "pointwise.bn",
}
_TIMM_TOP = {
    "conv_stem": "features.conv1.conv",
    "bn1": "features.conv1.bn",
    "conv_head": "features.conv_head.conv",
    "bn2": "features.conv_head.bn",
    "classifier": "fc",
}


def from_timm_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict of timm's `semnasnet_100` (MnasNet-A1) or `mnasnet_100` (MnasNet-B1)
    renamed for `MnasNet`."""
    renamed = {}
    for key, value in state_dict.items():
        new_key = None
        if match := re.fullmatch(r"blocks\.(\d)\.(\d+)\.(.+)\.(\w+)", key):
            block, unit, layer, param = match.groups()
            if block == "0" and unit == "0" and layer in _TIMM_SEPCONV:
                new_key = f"features.sepconv.{_TIMM_SEPCONV[layer]}.{param}"
            elif block != "0" and layer in _TIMM_BLOCK:
                new_key = f"features.block{block}.{unit}.{_TIMM_BLOCK[layer]}.{param}"
        else:
            module, _, param = key.rpartition(".")
            if module in _TIMM_TOP:
                new_key = f"{_TIMM_TOP[module]}.{param}"
        if new_key is None:
            raise KeyError(
                f"{key!r} is not a parameter of timm's semnasnet/mnasnet; is this the state "
                f"dict of another model?"
            )
        renamed[new_key] = value
    return renamed


PAPER = "MnasNet: Platform-Aware Neural Architecture Search for Mobile"
AUTHORS = "M. Tan, B. Chen, R. Pang, V. Vasudevan, M. Sandler, A. Howard, Q. V. Le"
URL = "https://arxiv.org/abs/1807.11626"
B1_NOTES = (
    "MnasNet-B1, the search result without SE: the CVPR paper prints no figures for it, "
    "so the card quotes torchvision's mnasnet{tv} (the same network: "
    "from_torchvision_state_dict; timm's mnasnet_100 too at 1.0) and its ImageNet error. "
    "Widths are multiplied and rounded to multiples of 8 (up unless within 10%) as "
    "torchvision does; the 1280-channel head is never scaled. Initialisation and BN "
    "momentum of the paper and the authors' release."
)


@variant(
    ModelCard(
        paper=PAPER,
        authors=AUTHORS,
        year=2019,
        url=URL,
        input_size=(3, 224, 224),
        num_classes=1000,
        published_params=3_900_000,
        params_source="Table 1: MnasNet-A1, 3.9M",
        published_macs=312_000_000,
        macs_source="Table 1: MnasNet-A1, 312M Mult-Adds",
        published_errors=(
            PublishedError(
                "ILSVRC-2012 val",
                top1=24.8,
                top5=7.5,
                evaluation="single crop",
                source="Table 1: MnasNet-A1, 75.2% top-1, 92.5% top-5",
            ),
        ),
        weights=(
            PretrainedWeights(
                "timm", "semnasnet_100.rmsp_in1k", "cnnzoo_mnasnet.mnasnet:from_timm_state_dict"
            ),
        ),
        notes="Fig. 7(a) with the 1x1 conv to 1280 channels before the pool that the "
        "authors' release has (Fig. 7 omits it; the 3.9M parameters count it). SE reduces "
        "to a quarter of the block's input channels, ReLU, sigmoid gate, after the depthwise "
        "conv, as in the release. Equivalent to timm's semnasnet_100 (from_timm_state_dict).",
    )
)
def mnasnet_a1(num_classes: int = 1000, in_chans: int = 3) -> MnasNet:
    """MnasNet-A1 (Fig. 7a, Table 1): 3.9M parameters, 312M multiply-adds."""
    return MnasNet(FIGURE_7A, 1.0, num_classes=num_classes, in_chans=in_chans)


def _b1_card(width_multiplier: float, torchvision_name: str, params: int, top1: float, top5: float):
    weights = [
        PretrainedWeights(
            "torchvision",
            f"MNASNet{torchvision_name}_Weights.IMAGENET1K_V1",
            "cnnzoo_mnasnet.mnasnet:from_torchvision_state_dict",
        )
    ]
    if width_multiplier == 1.0:  # timm's mnasnet_100 is MnasNet-B1 at width 1.0
        weights.append(
            PretrainedWeights(
                "timm", "mnasnet_100.rmsp_in1k", "cnnzoo_mnasnet.mnasnet:from_timm_state_dict"
            )
        )
    return ModelCard(
        paper=PAPER,
        authors=AUTHORS,
        year=2019,
        url=URL,
        input_size=(3, 224, 224),
        num_classes=1000,
        published_params=params,
        params_source=f"torchvision mnasnet{torchvision_name} (the paper prints none for B1)",
        published_errors=(
            PublishedError(
                "ILSVRC-2012 val",
                top1=round(100 - top1, 3),
                top5=round(100 - top5, 3),
                evaluation="single crop 224 of 256",
                source=f"torchvision model zoo, mnasnet{torchvision_name} (not the paper)",
            ),
        ),
        weights=tuple(weights),
        notes=B1_NOTES.format(tv=torchvision_name),
        extra={"width_multiplier": width_multiplier},
    )


@variant(_b1_card(1.0, "1_0", 4_383_312, 73.456, 91.51))
def mnasnet_b1(num_classes: int = 1000, in_chans: int = 3) -> MnasNet:
    """MnasNet-B1 at width 1.0 (torchvision's `mnasnet1_0`): 4,383,312 parameters."""
    return MnasNet(MNASNET_B1, 1.0, num_classes=num_classes, in_chans=in_chans)


@variant(_b1_card(0.5, "0_5", 2_218_512, 67.734, 87.49))
def mnasnet_b1_050(num_classes: int = 1000, in_chans: int = 3) -> MnasNet:
    """MnasNet-B1 at width 0.5 (torchvision's `mnasnet0_5`): 2,218,512 parameters."""
    return MnasNet(MNASNET_B1, 0.5, num_classes=num_classes, in_chans=in_chans)


@variant(_b1_card(0.75, "0_75", 3_170_208, 71.18, 90.496))
def mnasnet_b1_075(num_classes: int = 1000, in_chans: int = 3) -> MnasNet:
    """MnasNet-B1 at width 0.75 (torchvision's `mnasnet0_75`): 3,170,208 parameters."""
    return MnasNet(MNASNET_B1, 0.75, num_classes=num_classes, in_chans=in_chans)


@variant(_b1_card(1.3, "1_3", 6_282_256, 76.506, 93.522))
def mnasnet_b1_130(num_classes: int = 1000, in_chans: int = 3) -> MnasNet:
    """MnasNet-B1 at width 1.3 (torchvision's `mnasnet1_3`): 6,282,256 parameters."""
    return MnasNet(MNASNET_B1, 1.3, num_classes=num_classes, in_chans=in_chans)
