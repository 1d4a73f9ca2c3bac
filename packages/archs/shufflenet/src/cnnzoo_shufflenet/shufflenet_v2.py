"""ShuffleNet V2: Ma, Zhang, Zheng and Sun, "ShuffleNet V2: Practical Guidelines for
Efficient CNN Architecture Design", ECCV 2018, arXiv:1807.11164, §4 and Table 5.

    224x224x3 -> Conv1 3x3, 24, stride 2 -> MaxPool 3x3, stride 2      56x56
              -> Stage2: 1 + 3 units -> Stage3: 1 + 7 -> Stage4: 1 + 3  7x7
              -> Conv5 1x1 -> GlobalPool -> FC 1000

§4's units follow its four guidelines: a *channel split* sends half the channels straight
through (G1, equal widths; G3, less fragmentation); the other half passes 1x1 conv, 3x3
depthwise conv, 1x1 conv without grouping (G2); concatenation replaces the element-wise add
(G4); a channel shuffle mixes the two halves for the next unit.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

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

from cnnzoo_shufflenet.layers import (
    ChannelShuffle,
    init_as_released,
    init_classifier_as_released,
)

CONV1_CHANNELS = 24
STAGE_REPEATS = (4, 8, 4)  # Table 5: one stride-2 unit, then 3, 7 and 3 stride-1 units

# Table 5: output channels of Stage2, Stage3, Stage4 and Conv5 for each width.
TABLE_5: dict[float, tuple[int, int, int, int]] = {
    0.5: (48, 96, 192, 1024),
    1.0: (116, 232, 464, 1024),
    1.5: (176, 352, 704, 1024),
    2.0: (244, 488, 976, 2048),
}


def conv_bn(
    in_chans: int,
    out_chans: int,
    kernel_size: int,
    stride: int = 1,
    depthwise: bool = False,
    relu: bool = True,
) -> nn.Sequential:
    layers = OrderedDict(
        conv=nn.Conv2d(
            in_chans,
            out_chans,
            kernel_size,
            stride,
            padding=kernel_size // 2,
            groups=in_chans if depthwise else 1,
            bias=False,
        ),
        bn=nn.BatchNorm2d(out_chans),
    )
    if relu:
        layers["relu"] = nn.ReLU(inplace=True)
    return nn.Sequential(layers)


def _right_branch(in_chans: int, out_chans: int, stride: int) -> nn.Sequential:
    """The right branch of Fig. 3(c)(d): 1x1 Conv, ReLU; 3x3 DWConv; 1x1 Conv, ReLU (BN after
    every convolution; no ReLU after the depthwise one)."""
    return nn.Sequential(
        OrderedDict(
            conv1=conv_bn(in_chans, out_chans, 1),
            dwconv=conv_bn(out_chans, out_chans, 3, stride, depthwise=True, relu=False),
            conv2=conv_bn(out_chans, out_chans, 1),
        )
    )


class BasicUnit(nn.Module):
    """Fig. 3(c), stride 1: split the channels in half; the left half is an identity, the
    right half passes `right`; concatenate and shuffle."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.right = _right_branch(channels // 2, channels // 2, stride=1)
        self.shuffle = ChannelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left, right = x.chunk(2, dim=1)
        return self.shuffle(torch.cat([left, self.right(right)], dim=1))


class DownsamplingUnit(nn.Module):
    """Fig. 3(d), spatial down sampling: no split; both branches see every input channel
    and halve the resolution, each making half the output channels, which doubles the
    width; concatenate and shuffle."""

    def __init__(self, in_chans: int, out_chans: int) -> None:
        super().__init__()
        half = out_chans // 2
        self.left = nn.Sequential(
            OrderedDict(
                dwconv=conv_bn(in_chans, in_chans, 3, stride=2, depthwise=True, relu=False),
                conv=conv_bn(in_chans, half, 1),
            )
        )
        self.right = _right_branch(in_chans, half, stride=2)
        self.shuffle = ChannelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(torch.cat([self.left(x), self.right(x)], dim=1))


class ShuffleNetV2(PooledClassifierNet):
    """ShuffleNet V2 of Table 5 at width 0.5×, 1×, 1.5× or 2×.

    `conv1`, `maxpool`, `stage2`, `stage3`, `stage4`, `conv5` as Table 5 names them, then a
    global average pool and `fc`.
    """

    def __init__(self, width: float = 1.0, num_classes: int = 1000, in_chans: int = 3) -> None:
        super().__init__()
        if width not in TABLE_5:
            raise ValueError(f"Table 5 has widths {', '.join(map(str, TABLE_5))}; got {width}")
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.width = width
        *stage_channels, conv5_channels = TABLE_5[width]

        channels = CONV1_CHANNELS
        self.conv1 = conv_bn(in_chans, channels, 3, stride=2)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.feature_info = [
            FeatureInfo("conv1", channels, 2),
            FeatureInfo("maxpool", channels, 4),
        ]
        stride = 4
        for index, (repeats, out_chans) in enumerate(
            zip(STAGE_REPEATS, stage_channels, strict=True), start=2
        ):
            units = [DownsamplingUnit(channels, out_chans)]
            units += [BasicUnit(out_chans) for _ in range(repeats - 1)]
            channels, stride = out_chans, stride * 2
            setattr(self, f"stage{index}", nn.Sequential(*units))
            self.feature_info.append(FeatureInfo(f"stage{index}", channels, stride))
        # §4: "an additional 1x1 convolution layer is added right before global averaged
        # pooling to mix up features, which is absent in ShuffleNet v1".
        self.conv5 = conv_bn(channels, conv5_channels, 1)
        self.feature_info.append(FeatureInfo("conv5", conv5_channels, stride))
        self.build_head(conv5_channels, num_classes)
        init_as_released(self, first_conv=self.conv1.conv)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))
        return self.conv5(self.stage4(self.stage3(self.stage2(x))))

    def init_classifier(self, fc: nn.Linear) -> None:
        init_classifier_as_released(fc)


# torchvision's InvertedResidual: branch1 (left of Fig. 3d) and branch2 (right), as
# Sequentials of conv, bn and relu modules numbered in order.
_TORCHVISION_BRANCHES = {
    "branch1": {
        "0": "left.dwconv.conv",
        "1": "left.dwconv.bn",
        "2": "left.conv.conv",
        "3": "left.conv.bn",
    },
    "branch2": {
        "0": "right.conv1.conv",
        "1": "right.conv1.bn",
        "3": "right.dwconv.conv",
        "4": "right.dwconv.bn",
        "5": "right.conv2.conv",
        "6": "right.conv2.bn",
    },
}


def from_torchvision_state_dict(
    state_dict: Mapping[str, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """A state dict of torchvision's `shufflenet_v2_x0_5` … `shufflenet_v2_x2_0` renamed for
    `ShuffleNetV2`, e.g. for torchvision's ImageNet weights:

        model.load_state_dict(from_torchvision_state_dict(weights.get_state_dict()))
    """
    renamed = {}
    for key, value in state_dict.items():
        parts = key.split(".")
        new_key = None
        if parts[0] in ("conv1", "conv5") and parts[1] in ("0", "1"):
            new_key = ".".join([parts[0], "conv" if parts[1] == "0" else "bn", *parts[2:]])
        elif parts[0] in ("stage2", "stage3", "stage4") and len(parts) == 5:
            stage, unit, branch, layer, param = parts
            name = _TORCHVISION_BRANCHES.get(branch, {}).get(layer)
            new_key = name and f"{stage}.{unit}.{name}.{param}"
        elif parts[0] == "fc":
            new_key = key
        if new_key is None:
            raise KeyError(
                f"{key!r} is not a parameter of torchvision's shufflenet_v2; is this the state "
                f"dict of another model?"
            )
        renamed[new_key] = value
    return renamed


PAPER = "ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design"
AUTHORS = "N. Ma, X. Zhang, H.-T. Zheng, J. Sun"
URL = "https://arxiv.org/abs/1807.11164"
NOTES = (
    "Table 5's layout and Fig. 3(c)(d)'s units; initialisation of the authors' release "
    "(megvii-model/ShuffleNet-Series), since the paper gives none. Equivalent to "
    "torchvision's shufflenet_v2_x* (from_torchvision_state_dict)."
)
# Table 5: FLOPs (multiply-adds) and weights; Table 8: top-1 error on ImageNet val.
TABLE_5_FIGURES = {
    0.5: (41_000_000, 1_400_000, 39.7),
    1.0: (146_000_000, 2_300_000, 30.6),
    1.5: (299_000_000, 3_500_000, 27.4),
    2.0: (591_000_000, 7_400_000, 25.1),
}
# Table 5's FLOPs stand 0.5M to 7.8M (up to 1.3%) above the multiply-adds of the
# convolutions and the FC (ours and torchvision's layout alike: 40.5M, 144.9M, 295.8M and
# 583.3M); the paper does not say what else it counted.
MACS_TOLERANCE = {0.5: 0.002, 1.0: 0.005, 1.5: 0.01, 2.0: 0.013}


def _card(width: float) -> ModelCard:
    macs, params, top1 = TABLE_5_FIGURES[width]
    label = f"ShuffleNet v2 {width:g}×"
    torchvision_width = f"{width:.1f}".replace(".", "_")  # 0.5 -> 0_5
    return ModelCard(
        paper=PAPER,
        authors=AUTHORS,
        year=2018,
        url=URL,
        input_size=(3, 224, 224),
        num_classes=1000,
        published_params=params,
        params_source=f"Table 5: # of Weights, {width:g}×",
        published_macs=macs,
        macs_source=f"Table 5: FLOPs, {width:g}× (counted as multiply-adds)",
        macs_tolerance=MACS_TOLERANCE[width],
        weights=(  # torchvision's shufflenet_v2_x0_5 ... x2_0, the same networks
            PretrainedWeights(
                "torchvision",
                f"ShuffleNet_V2_X{torchvision_width}_Weights.IMAGENET1K_V1",
                "cnnzoo_shufflenet.shufflenet_v2:from_torchvision_state_dict",
            ),
        ),
        published_errors=(
            PublishedError(
                "ILSVRC-2012 val", top1=top1, evaluation="single crop", source=f"Table 8: {label}"
            ),
        ),
        notes=NOTES + " Table 5's FLOPs stand 0.5M to 7.8M (up to 1.3%) above our count of the "
        "convolutions' and the FC's multiply-adds, which torchvision's layout shares; the "
        "paper does not say what else it counted.",
        extra={"width": width},
    )


@variant(_card(0.5))
def shufflenet_v2_x0_5(num_classes: int = 1000, in_chans: int = 3) -> ShuffleNetV2:
    """ShuffleNet V2 0.5× (Table 5): 1.4M weights, 41M FLOPs."""
    return ShuffleNetV2(0.5, num_classes=num_classes, in_chans=in_chans)


@variant(_card(1.0))
def shufflenet_v2_x1_0(num_classes: int = 1000, in_chans: int = 3) -> ShuffleNetV2:
    """ShuffleNet V2 1× (Table 5): 2.3M weights, 146M FLOPs."""
    return ShuffleNetV2(1.0, num_classes=num_classes, in_chans=in_chans)


@variant(_card(1.5))
def shufflenet_v2_x1_5(num_classes: int = 1000, in_chans: int = 3) -> ShuffleNetV2:
    """ShuffleNet V2 1.5× (Table 5): 3.5M weights, 299M FLOPs."""
    return ShuffleNetV2(1.5, num_classes=num_classes, in_chans=in_chans)


@variant(_card(2.0))
def shufflenet_v2_x2_0(num_classes: int = 1000, in_chans: int = 3) -> ShuffleNetV2:
    """ShuffleNet V2 2× (Table 5): 7.4M weights, 591M FLOPs."""
    return ShuffleNetV2(2.0, num_classes=num_classes, in_chans=in_chans)
