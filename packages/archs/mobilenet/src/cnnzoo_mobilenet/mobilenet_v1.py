"""MobileNet-v1: Howard, Zhu, Chen, Kalenichenko, Wang, Weyand, Andreetto and Adam,
"MobileNets: Efficient Convolutional Neural Networks for Mobile Vision Applications",
arXiv:1704.04861, 2017, §3 and Table 1.

    224x224x3 -> Conv 3x3, 32, stride 2                                    112x112
              -> 13 depthwise separable convolutions (Table 1, below)      -> 7x7x1024
              -> average pool 7x7 -> FC 1000 -> softmax

Every layer but the FC is followed by batch norm and ReLU (Fig. 3). Two hyper-parameters
trade accuracy for cost (§3.3, §3.4):

- the width multiplier α thins every layer uniformly: M input and N output channels become
  αM and αN. It is the builders' `width_multiplier` (1, 0.75, 0.5, 0.25 in Table 6).
- the resolution multiplier ρ is nothing but the input size: 224, 192, 160 or 128
  (Table 7). Every layer is convolutional up to a global average pool, so one model takes
  all four; the multiply-adds scale with ρ² (569M, 418M, 290M, 186M at α = 1).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping
from typing import NamedTuple

import torch
from cnnzoo import FeatureInfo, ModelCard, PooledClassifierNet, PublishedError, variant
from torch import nn


class SeparableRow(NamedTuple):
    """One "Conv dw / s" + "Conv / s1" pair of Table 1, at α = 1."""

    stride: int  # of the depthwise 3x3 convolution
    out_channels: int  # of the pointwise 1x1 convolution


STEM_CHANNELS = 32  # Table 1's first row: Conv / s2, 3x3x3x32

# Table 1, the 13 depthwise separable convolutions. Table 1 prints "Conv dw / s2" for the
# last one, yet its input and output are both 7x7x1024: the stride there is 1.
TABLE_1: tuple[SeparableRow, ...] = (
    SeparableRow(1, 64),
    SeparableRow(2, 128),
    SeparableRow(1, 128),
    SeparableRow(2, 256),
    SeparableRow(1, 256),
    SeparableRow(2, 512),
    *(SeparableRow(1, 512),) * 5,  # "5x" in Table 1
    SeparableRow(2, 1024),
    SeparableRow(1, 1024),
)


def conv_bn_relu(in_chans: int, out_chans: int, stride: int) -> nn.Sequential:
    """Table 1's first layer, a full 3x3 convolution, with its BN and ReLU (Fig. 3, left)."""
    return nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(in_chans, out_chans, 3, stride, padding=1, bias=False),
            bn=nn.BatchNorm2d(out_chans),
            relu=nn.ReLU(inplace=True),
        )
    )


class DepthwiseSeparableConv(nn.Sequential):
    """§3.1, Fig. 3 (right): a 3x3 depthwise convolution (one filter per input channel), BN,
    ReLU, then a 1x1 pointwise convolution combining the channels, BN, ReLU. It costs
    D_K²·M·D_F² + M·N·D_F² multiply-adds instead of the D_K²·M·N·D_F² of a full convolution
    (Eq. 5 vs Eq. 2)."""

    def __init__(self, in_chans: int, out_chans: int, stride: int) -> None:
        super().__init__(
            OrderedDict(
                depthwise=nn.Conv2d(
                    in_chans, in_chans, 3, stride, padding=1, groups=in_chans, bias=False
                ),
                depthwise_bn=nn.BatchNorm2d(in_chans),
                depthwise_relu=nn.ReLU(inplace=True),
                pointwise=nn.Conv2d(in_chans, out_chans, 1, bias=False),
                pointwise_bn=nn.BatchNorm2d(out_chans),
                pointwise_relu=nn.ReLU(inplace=True),
            )
        )


class MobileNetV1(PooledClassifierNet):
    """MobileNet-v1 of Table 1 with width multiplier α (§3.3).

    `features` holds `conv1` and `separable1` … `separable13`; then a global average pool
    (Table 1's 7x7 average pool at 224x224) and `fc`.
    """

    def __init__(
        self, width_multiplier: float = 1.0, num_classes: int = 1000, in_chans: int = 3
    ) -> None:
        super().__init__()
        if not 0 < width_multiplier <= 1:
            raise ValueError(
                f"the width multiplier α lies in (0, 1] (§3.3); got {width_multiplier}"
            )
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.width_multiplier = width_multiplier

        def width(channels: int) -> int:
            return int(channels * width_multiplier)

        layers: OrderedDict[str, nn.Module] = OrderedDict(
            conv1=conv_bn_relu(in_chans, width(STEM_CHANNELS), stride=2)
        )
        self.feature_info = []
        channels, stride = width(STEM_CHANNELS), 2
        for index, row in enumerate(TABLE_1, start=1):
            layers[f"separable{index}"] = DepthwiseSeparableConv(
                channels, width(row.out_channels), row.stride
            )
            channels, stride = width(row.out_channels), stride * row.stride
            # One stage per resolution: the last layer before the next stride 2.
            next_stride = TABLE_1[index].stride if index < len(TABLE_1) else 2
            if next_stride == 2:
                self.feature_info.append(
                    FeatureInfo(f"features.separable{index}", channels, stride)
                )
        self.features = nn.Sequential(layers)
        self.build_head(channels, num_classes)  # Table 1: "Avg Pool 7x7", "FC"
        self._init_weights()

    def _init_weights(self) -> None:
        # The paper gives no initialisation; the authors' TF-slim release
        # (mobilenet_v1_arg_scope) draws every weight from a normal truncated at two standard
        # deviations, std 0.09, with BN's scale at 1 and shift and biases at 0.
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.09, a=-0.18, b=0.18)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def init_classifier(self, fc: nn.Linear) -> None:
        nn.init.trunc_normal_(fc.weight, std=0.09, a=-0.18, b=0.18)  # as _init_weights
        nn.init.zeros_(fc.bias)


# timm's `mobilenetv1_100` groups the separable layers by resolution: blocks.<stage>.<i>.
_TIMM_STAGE_START = (0, 1, 3, 5, 11)  # index of each stage's first layer in Table 1
_TIMM_NAMES = {
    "conv_dw": "depthwise",
    "bn1": "depthwise_bn",
    "conv_pw": "pointwise",
    "bn2": "pointwise_bn",
}


def from_timm_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict of timm's `mobilenetv1_100` (or _075 … with `width_multiplier`) renamed
    for `MobileNetV1`. timm's network uses ReLU6 where the paper has ReLU (see
    `mobilenet_v1`'s card), so the weights load but the outputs differ wherever an activation
    exceeds 6."""
    renamed = {}
    for key, value in state_dict.items():
        if match := re.fullmatch(r"blocks\.(\d)\.(\d+)\.(\w+)\.(\w+)", key):
            stage, index, layer, param = match.groups()
            number = _TIMM_STAGE_START[int(stage)] + int(index) + 1
            renamed[f"features.separable{number}.{_TIMM_NAMES[layer]}.{param}"] = value
        elif key.startswith("conv_stem."):
            renamed[key.replace("conv_stem.", "features.conv1.conv.")] = value
        elif key.startswith("bn1."):
            renamed[key.replace("bn1.", "features.conv1.bn.")] = value
        elif key.startswith("classifier."):
            renamed[key.replace("classifier.", "fc.")] = value
        else:
            raise KeyError(
                f"{key!r} is not a parameter of timm's mobilenetv1_100; is this the state "
                f"dict of another model?"
            )
    return renamed


PAPER = "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision Applications"
AUTHORS = (
    "A. G. Howard, M. Zhu, B. Chen, D. Kalenichenko, W. Wang, T. Weyand, M. Andreetto, H. Adam"
)
URL = "https://arxiv.org/abs/1704.04861"
NOTES = (
    "Table 1 prints stride 2 for the last depthwise convolution, whose input and output are "
    "both 7x7: it is 1 here, as in the authors' TF-slim release. A global average pool "
    "stands for Table 1's 7x7 pool, so the resolution multiplier ρ is simply the input size "
    "(224, 192, 160, 128; Table 7). Initialisation of the authors' TF-slim release (the "
    "paper gives none): truncated normal, std 0.09. timm's mobilenetv1_* has the same layers "
    "and weights (from_timm_state_dict) but ReLU6 where the paper has ReLU, so it is not "
    "equivalent."
)


def _card(width_multiplier: float, params: int, macs: int, top1_accuracy: float, table: str):
    label = f"{width_multiplier} MobileNet-224"
    return ModelCard(
        paper=PAPER,
        authors=AUTHORS,
        year=2017,
        url=URL,
        input_size=(3, 224, 224),
        num_classes=1000,
        published_params=params,
        params_source=f"{table}: {label}",
        published_macs=macs,
        macs_source=f"{table}: {label} (Mult-Adds)",
        published_errors=(
            PublishedError(
                "ILSVRC-2012 val",
                top1=round(100 - top1_accuracy, 1),
                evaluation="single crop",
                source=f"{table}: {label}, {top1_accuracy}% accuracy",
            ),
        ),
        notes=NOTES,
        extra={"width_multiplier": width_multiplier},
    )


@variant(_card(1.0, 4_200_000, 569_000_000, 70.6, "Tables 6 and 7"))
def mobilenet_v1(num_classes: int = 1000, in_chans: int = 3) -> MobileNetV1:
    """1.0 MobileNet-224 (Table 1; Tables 6 and 7): 4,231,976 parameters, 569M
    multiply-adds at 224x224 (418M, 290M, 186M at 192, 160, 128)."""
    return MobileNetV1(1.0, num_classes=num_classes, in_chans=in_chans)


@variant(_card(0.75, 2_600_000, 325_000_000, 68.4, "Table 6"))
def mobilenet_v1_075(num_classes: int = 1000, in_chans: int = 3) -> MobileNetV1:
    """0.75 MobileNet-224 (Table 6): width multiplier α = 0.75."""
    return MobileNetV1(0.75, num_classes=num_classes, in_chans=in_chans)


@variant(_card(0.5, 1_300_000, 149_000_000, 63.7, "Table 6"))
def mobilenet_v1_050(num_classes: int = 1000, in_chans: int = 3) -> MobileNetV1:
    """0.5 MobileNet-224 (Table 6): width multiplier α = 0.5."""
    return MobileNetV1(0.5, num_classes=num_classes, in_chans=in_chans)


@variant(_card(0.25, 500_000, 41_000_000, 50.6, "Table 6"))
def mobilenet_v1_025(num_classes: int = 1000, in_chans: int = 3) -> MobileNetV1:
    """0.25 MobileNet-224 (Table 6): width multiplier α = 0.25."""
    return MobileNetV1(0.25, num_classes=num_classes, in_chans=in_chans)
