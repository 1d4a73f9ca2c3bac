"""ShuffleNet: Zhang, Zhou, Lin and Sun, "ShuffleNet: An Extremely Efficient Convolutional
Neural Network for Mobile Devices", CVPR 2018, arXiv:1707.01083, §3 and Table 1.

    224x224x3 -> Conv1 3x3, 24, stride 2 -> MaxPool 3x3, stride 2      56x56
              -> Stage2: 1 + 3 ShuffleNet units                         28x28
              -> Stage3: 1 + 7 units                                    14x14
              -> Stage4: 1 + 3 units                                    7x7
              -> GlobalPool -> FC 1000

The first unit of every stage has stride 2 (Fig. 2c), the others stride 1 (Fig. 2b). The
number of groups g of the pointwise convolutions sets the stages' widths (Table 1), chosen
so that every g costs about 140M multiply-adds; "ShuffleNet s×" multiplies every layer's
filters by s, at about s² the cost (§4.1, Table 2).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from cnnzoo import FeatureInfo, ModelCard, PooledClassifierNet, PublishedError, variant
from torch import nn

from cnnzoo_shufflenet.layers import (
    ChannelShuffle,
    init_as_released,
    init_classifier_as_released,
)

# Conv1's width for each scale s. Table 1 prints 24 for 1×; for the other scales the paper
# prints only complexities, which these widths of the authors' release reproduce (0.5×: 12,
# 1.5×: 24, 2×: 48, and 12 for 0.25×, which the release lacks): 12 keeps the thinnest
# networks' first layers from starving, where 24·s would not give 13M multiply-adds at 0.25×.
CONV1_CHANNELS: dict[float, int] = {0.25: 12, 0.5: 12, 1.0: 24, 1.5: 24, 2.0: 48}
STAGE_REPEATS = (4, 8, 4)  # Table 1: one stride-2 unit, then 3, 7 and 3 stride-1 units

# Table 1: output channels of Stage2, Stage3 and Stage4 for each number of groups g.
TABLE_1: dict[int, tuple[int, int, int]] = {
    1: (144, 288, 576),
    2: (200, 400, 800),
    3: (240, 480, 960),
    4: (272, 544, 1088),
    8: (384, 768, 1536),
}


class ShuffleUnit(nn.Module):
    """Fig. 2(b), stride 1: GConv 1x1 -> BN ReLU -> Channel Shuffle -> DWConv 3x3 -> BN ->
    GConv 1x1 -> BN, added to the input, then ReLU.

    Fig. 2(c), stride 2: the depthwise convolution has stride 2, the shortcut is a 3x3
    average pool with stride 2, and the two are concatenated rather than added, which
    widens the unit "with little extra computation cost"; so the residual branch makes only
    the channels the shortcut lacks.

    The bottleneck has a quarter of the unit's output channels (§3.3). Following §3.2 ("we
    do not apply ReLU on the output of depthwise convolution") the depthwise convolution has
    no ReLU.
    """

    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        groups: int,
        stride: int,
        first_pointwise_groups: int | None = None,
    ) -> None:
        super().__init__()
        bottleneck = out_chans // 4
        branch_out = out_chans - in_chans if stride == 2 else out_chans
        pointwise_groups = groups if first_pointwise_groups is None else first_pointwise_groups
        self.gconv1 = nn.Conv2d(in_chans, bottleneck, 1, groups=pointwise_groups, bias=False)
        self.bn1 = nn.BatchNorm2d(bottleneck)
        self.shuffle = ChannelShuffle(groups)
        self.dwconv = nn.Conv2d(
            bottleneck, bottleneck, 3, stride, padding=1, groups=bottleneck, bias=False
        )
        self.bn2 = nn.BatchNorm2d(bottleneck)
        self.gconv2 = nn.Conv2d(bottleneck, branch_out, 1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm2d(branch_out)
        self.shortcut = nn.AvgPool2d(3, stride=2, padding=1) if stride == 2 else nn.Identity()
        self.relu = nn.ReLU(inplace=True)
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.shuffle(self.relu(self.bn1(self.gconv1(x))))
        out = self.bn3(self.gconv2(self.bn2(self.dwconv(out))))
        if self.stride == 2:
            return self.relu(torch.cat([self.shortcut(x), out], dim=1))
        return self.relu(x + out)


class ShuffleNetV1(PooledClassifierNet):
    """ShuffleNet of Table 1 with g groups, scaled by s (§4.1).

    `conv1`, `maxpool`, `stage2`, `stage3`, `stage4` as Table 1 names them, then a global
    average pool and `fc`.
    """

    def __init__(
        self, groups: int = 3, scale: float = 1.0, num_classes: int = 1000, in_chans: int = 3
    ) -> None:
        super().__init__()
        if groups not in TABLE_1:
            raise ValueError(f"Table 1 has g = {', '.join(map(str, TABLE_1))}; got {groups}")
        if scale not in CONV1_CHANNELS:
            raise ValueError(f"the paper's scales are {', '.join(map(str, CONV1_CHANNELS))}×")
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.groups = groups
        self.scale = scale

        channels = CONV1_CHANNELS[scale]
        self.conv1 = nn.Sequential(
            OrderedDict(
                conv=nn.Conv2d(in_chans, channels, 3, stride=2, padding=1, bias=False),
                bn=nn.BatchNorm2d(channels),
                relu=nn.ReLU(inplace=True),
            )
        )
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.feature_info = [
            FeatureInfo("conv1", channels, 2),
            FeatureInfo("maxpool", channels, 4),
        ]
        stride = 4
        for index, (repeats, width) in enumerate(zip(STAGE_REPEATS, TABLE_1[groups], strict=True)):
            out_chans = int(width * scale)
            units = []
            for i in range(repeats):
                # §3.3: "we do not apply group convolution on the first pointwise layer
                # [of Stage 2] because the number of input channels is relatively small".
                first_groups = 1 if index == 0 and i == 0 else None
                units.append(
                    ShuffleUnit(channels, out_chans, groups, 2 if i == 0 else 1, first_groups)
                )
                channels = out_chans
            stride *= 2
            setattr(self, f"stage{index + 2}", nn.Sequential(*units))
            self.feature_info.append(FeatureInfo(f"stage{index + 2}", channels, stride))
        # The authors' release has no bias in the classifier; the paper's "FC" does not say.
        self.build_head(channels, num_classes, bias=False)
        init_as_released(self, first_conv=self.conv1.conv)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))
        return self.stage4(self.stage3(self.stage2(x)))

    def init_classifier(self, fc: nn.Linear) -> None:
        init_classifier_as_released(fc)


PAPER = "ShuffleNet: An Extremely Efficient Convolutional Neural Network for Mobile Devices"
AUTHORS = "X. Zhang, X. Zhou, M. Lin, J. Sun"
URL = "https://arxiv.org/abs/1707.01083"
NOTES = (
    "Table 1's layout; the scale factor s multiplies the stages' filters, and Conv1 has the "
    "width of the authors' release (12, 12, 24, 24, 48 at 0.25x, 0.5x, 1x, 1.5x, 2x), which "
    "gives the paper's complexities; the classifier has no bias, as in the release. "
    "Channel shuffle after the first pointwise group convolution, as in Fig. 2 "
    "(the authors' release shuffles after the depthwise convolution, which the paper does "
    "not). Initialisation of the authors' release (megvii-model/ShuffleNet-Series), since "
    "the paper gives none. Figures from the CVPR 2018 version (arXiv v2)."
)
RELEASE = "megvii-model/ShuffleNet-Series, ShuffleNetV1 README"
OUR_COUNT = "our exact count of Table 1 (neither the paper nor the authors' release prints one)"
TABLE_1_MACS = {1: 143_000_000, 2: 140_000_000, 3: 137_000_000, 4: 133_000_000, 8: 137_000_000}
# Table 2: classification error (%) of ShuffleNet s× with g groups, on ImageNet val.
TABLE_2_ERRORS = {
    1.0: {1: 33.6, 2: 32.7, 3: 32.6, 4: 32.8, 8: 32.4},
    0.5: {1: 45.1, 2: 44.4, 3: 43.2, 4: 41.6, 8: 42.3},
    0.25: {1: 57.1, 2: 56.8, 3: 55.0, 4: 54.2, 8: 52.7},
}
TABLE_2_MACS = {0.5: 38_000_000, 0.25: 13_000_000}
# Table 4 (ShuffleNet vs MobileNet): the larger networks, g = 3.
TABLE_4 = {2.0: (524_000_000, 26.3), 1.5: (292_000_000, 28.5)}


FC_LEFT_OUT = (
    " Table 1 prints 140M, 133M and 137M for g = 2, 4, 8, 0.8M to 1.4M below our count: "
    "it leaves out the FC layer, without which our count gives every Table 1 figure."
)


def _card(
    groups: int, scale: float, params: int, params_source: str, macs_tolerance: float = 0.0
) -> ModelCard:
    label = f"ShuffleNet {scale:g}× (g = {groups})"
    if scale == 1.0:
        macs, macs_source = TABLE_1_MACS[groups], f"Table 1: complexity, g = {groups}"
    elif scale in TABLE_2_MACS:
        macs, macs_source = TABLE_2_MACS[scale], f"Table 2: complexity of ShuffleNet {scale:g}×"
    else:
        macs, macs_source = TABLE_4[scale][0], f"Table 4: {label}"
    if scale in TABLE_2_ERRORS:
        top1, source = TABLE_2_ERRORS[scale][groups], f"Table 2: {label}"
    else:
        top1, source = TABLE_4[scale][1], f"Table 4: {label}"
    return ModelCard(
        paper=PAPER,
        authors=AUTHORS,
        year=2017,
        url=URL,
        input_size=(3, 224, 224),
        num_classes=1000,
        published_params=params,
        params_source=params_source,
        published_macs=macs,
        macs_source=macs_source + " (MFLOPs, counted as multiply-adds)",
        macs_tolerance=macs_tolerance,
        published_errors=(
            PublishedError("ILSVRC-2012 val", top1=top1, evaluation="single crop", source=source),
        ),
        notes=NOTES + FC_LEFT_OUT if macs_tolerance else NOTES,
        extra={"groups": groups, "scale": scale},
    )


@variant(_card(1, 1.0, 1_530_936, OUR_COUNT))
def shufflenet_v1_g1(num_classes: int = 1000, in_chans: int = 3) -> ShuffleNetV1:
    """ShuffleNet 1× with g = 1 (Table 1): 143M multiply-adds."""
    return ShuffleNetV1(1, 1.0, num_classes=num_classes, in_chans=in_chans)


@variant(_card(2, 1.0, 1_732_848, OUR_COUNT, macs_tolerance=0.007))
def shufflenet_v1_g2(num_classes: int = 1000, in_chans: int = 3) -> ShuffleNetV1:
    """ShuffleNet 1× with g = 2 (Table 1): 140M multiply-adds."""
    return ShuffleNetV1(2, 1.0, num_classes=num_classes, in_chans=in_chans)


@variant(_card(3, 1.0, 1_900_000, f"{RELEASE}: ShuffleNetV1 1.0x (group=3), 1.9M"))
def shufflenet_v1_g3(num_classes: int = 1000, in_chans: int = 3) -> ShuffleNetV1:
    """ShuffleNet 1× with g = 3 (Table 1): 137M multiply-adds."""
    return ShuffleNetV1(3, 1.0, num_classes=num_classes, in_chans=in_chans)


@variant(_card(4, 1.0, 1_967_344, OUR_COUNT, macs_tolerance=0.007))
def shufflenet_v1_g4(num_classes: int = 1000, in_chans: int = 3) -> ShuffleNetV1:
    """ShuffleNet 1× with g = 4 (Table 1): 133M multiply-adds."""
    return ShuffleNetV1(4, 1.0, num_classes=num_classes, in_chans=in_chans)


@variant(
    _card(8, 1.0, 2_400_000, f"{RELEASE}: ShuffleNetV1 1.0x (group=8), 2.4M", macs_tolerance=0.007)
)
def shufflenet_v1_g8(num_classes: int = 1000, in_chans: int = 3) -> ShuffleNetV1:
    """ShuffleNet 1× with g = 8 (Table 1): 137M multiply-adds."""
    return ShuffleNetV1(8, 1.0, num_classes=num_classes, in_chans=in_chans)


@variant(_card(3, 0.5, 700_000, f"{RELEASE}: ShuffleNetV1 0.5x (group=3), 0.7M"))
def shufflenet_v1_g3_x0_5(num_classes: int = 1000, in_chans: int = 3) -> ShuffleNetV1:
    """ShuffleNet 0.5× with g = 3 (Table 2): 38M multiply-adds."""
    return ShuffleNetV1(3, 0.5, num_classes=num_classes, in_chans=in_chans)


@variant(_card(3, 0.25, 305_124, OUR_COUNT))
def shufflenet_v1_g3_x0_25(num_classes: int = 1000, in_chans: int = 3) -> ShuffleNetV1:
    """ShuffleNet 0.25× with g = 3 (Table 2): 13M multiply-adds."""
    return ShuffleNetV1(3, 0.25, num_classes=num_classes, in_chans=in_chans)


@variant(_card(3, 1.5, 3_400_000, f"{RELEASE}: ShuffleNetV1 1.5x (group=3), 3.4M"))
def shufflenet_v1_g3_x1_5(num_classes: int = 1000, in_chans: int = 3) -> ShuffleNetV1:
    """ShuffleNet 1.5× with g = 3 (Table 4): 292M multiply-adds."""
    return ShuffleNetV1(3, 1.5, num_classes=num_classes, in_chans=in_chans)


@variant(_card(3, 2.0, 5_400_000, f"{RELEASE}: ShuffleNetV1 2.0x (group=3), 5.4M"))
def shufflenet_v1_g3_x2_0(num_classes: int = 1000, in_chans: int = 3) -> ShuffleNetV1:
    """ShuffleNet 2× with g = 3 (Table 4): 524M multiply-adds."""
    return ShuffleNetV1(3, 2.0, num_classes=num_classes, in_chans=in_chans)
