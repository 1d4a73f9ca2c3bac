"""MobileNet-v2: Sandler, Howard, Zhu, Zhmoginov and Chen, "MobileNetV2: Inverted Residuals
and Linear Bottlenecks", CVPR 2018, arXiv:1801.04381, §3-§4, Tables 1 and 2.

    224x224x3 -> conv2d 3x3, 32, stride 2                         112x112
              -> 17 bottlenecks in 7 rows (Table 2, below)        -> 7x7x320
              -> conv2d 1x1, 1280 -> avgpool 7x7 -> conv2d 1x1, k (the classifier)

A bottleneck (Table 1, Fig. 3b) is an *inverted residual*: 1x1 expansion of k to tk
channels with ReLU6, 3x3 depthwise convolution with ReLU6, then a *linear* 1x1 projection to
k' channels — no non-linearity on the narrow output, which §3.2 shows would destroy
information. The shortcut joins the narrow bottlenecks where input and output agree (stride
1, k = k'). The width multiplier (§6.1) thins every layer but the last 1280-channel
convolution, which only grows for multipliers above one.
"""

from __future__ import annotations

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


class BottleneckRow(NamedTuple):
    """One row of Table 2: n bottlenecks of expansion t and c output channels; the first of
    them has stride s, the others stride 1."""

    t: int
    c: int
    n: int
    s: int


STEM_CHANNELS = 32  # Table 2, first row: conv2d, 32 channels, stride 2
LAST_CHANNELS = 1280  # Table 2: conv2d 1x1 before the pool

TABLE_2: tuple[BottleneckRow, ...] = (
    BottleneckRow(t=1, c=16, n=1, s=1),
    BottleneckRow(t=6, c=24, n=2, s=2),
    BottleneckRow(t=6, c=32, n=3, s=2),
    BottleneckRow(t=6, c=64, n=4, s=2),
    BottleneckRow(t=6, c=96, n=3, s=1),
    BottleneckRow(t=6, c=160, n=3, s=2),
    BottleneckRow(t=6, c=320, n=1, s=1),
)


def make_divisible(channels: float, divisor: int = 8) -> int:
    """Channels of a thinned layer, as the authors' TF-slim release rounds them: to the nearest
    multiple of 8, never below 8 nor more than 10% below the exact width."""
    rounded = max(divisor, int(channels + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * channels else rounded


def conv_bn_relu6(
    in_chans: int, out_chans: int, kernel_size: int, stride: int = 1, groups: int = 1
) -> nn.Sequential:
    return nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(
                in_chans,
                out_chans,
                kernel_size,
                stride,
                padding=kernel_size // 2,
                groups=groups,
                bias=False,
            ),
            bn=nn.BatchNorm2d(out_chans),
            relu6=nn.ReLU6(inplace=True),  # §3.1: ReLU6 for its robustness at low precision
        )
    )


class InvertedResidual(nn.Module):
    """The bottleneck residual block of Table 1 and Fig. 3(b): expansion by t, depthwise 3x3
    with stride s, linear projection; the shortcut joins the bottlenecks where it can."""

    def __init__(self, in_chans: int, out_chans: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_chans * expansion
        # With t = 1 (Table 2's first row) there is nothing to expand: the 1x1 is left out.
        self.expand = conv_bn_relu6(in_chans, hidden, 1) if expansion != 1 else nn.Identity()
        self.depthwise = conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden)
        self.project = nn.Sequential(
            OrderedDict(
                conv=nn.Conv2d(hidden, out_chans, 1, bias=False),
                bn=nn.BatchNorm2d(out_chans),  # linear: no ReLU6 (§3.2)
            )
        )
        self.use_shortcut = stride == 1 and in_chans == out_chans

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.depthwise(self.expand(x)))
        return x + out if self.use_shortcut else out


class MobileNetV2(PooledClassifierNet):
    """MobileNet-v2 of Table 2 with a width multiplier (§6.1).

    `features` holds `conv1`, `bottleneck1` … `bottleneck7` (one per row of Table 2, each a
    Sequential of its n blocks) and `conv_last` (1x1, 1280); then a global average pool,
    dropout and the classifier `fc` (Table 2's last 1x1 conv2d on the pooled vector).
    """

    def __init__(
        self, width_multiplier: float = 1.0, num_classes: int = 1000, in_chans: int = 3
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.width_multiplier = width_multiplier

        channels = make_divisible(STEM_CHANNELS * width_multiplier)
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            conv1=conv_bn_relu6(in_chans, channels, 3, stride=2)
        )
        self.feature_info = []
        stride = 2
        for index, row in enumerate(TABLE_2, start=1):
            out_chans = make_divisible(row.c * width_multiplier)
            blocks = []
            for i in range(row.n):
                blocks.append(InvertedResidual(channels, out_chans, row.s if i == 0 else 1, row.t))
                channels = out_chans
            layers[f"bottleneck{index}"] = nn.Sequential(*blocks)
            stride *= row.s
            next_stride = TABLE_2[index].s if index < len(TABLE_2) else 1
            if next_stride == 2:  # the last row at each resolution ends a stage
                self.feature_info.append(
                    FeatureInfo(f"features.bottleneck{index}", channels, stride)
                )
        # §6.1: "we apply width multiplier to all layers except the very last convolutional
        # layer" for multipliers below one; above one it widens that layer too.
        last_channels = make_divisible(LAST_CHANNELS * max(1.0, width_multiplier))
        layers["conv_last"] = conv_bn_relu6(channels, last_channels, 1)
        self.feature_info.append(FeatureInfo("features.conv_last", last_channels, stride))
        self.features = nn.Sequential(layers)
        # Dropout is not in the paper's text; the authors' TF-slim release trains with it
        # (keep probability 0.8) before the classifier, as do torchvision and timm.
        self.build_head(last_channels, num_classes, drop_rate=0.2)
        self._init_weights()

    def _init_weights(self) -> None:
        # The paper gives no initialisation; the authors' TF-slim release (training_scope)
        # draws weights from a normal truncated at two standard deviations, std 0.09.
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


def _torchvision_block_names(expanded: bool) -> dict[str, str]:
    """torchvision's InvertedResidual.conv indices -> ours (t = 1 blocks have no expansion)."""
    names = ["depthwise.conv", "depthwise.bn", "project.conv", "project.bn"]
    if expanded:
        names = ["expand.conv", "expand.bn", *names]
    indices = ["0.0", "0.1", "1", "2"] if not expanded else ["0.0", "0.1", "1.0", "1.1", "2", "3"]
    return dict(zip(indices, names, strict=True))


def from_torchvision_state_dict(
    state_dict: Mapping[str, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """A state dict of `torchvision.models.mobilenet_v2` (any `width_mult`) renamed for
    `MobileNetV2`, e.g. for torchvision's ImageNet weights:

        model.load_state_dict(from_torchvision_state_dict(weights.get_state_dict()))
    """
    # torchvision's features.1 … features.17 are the 17 blocks of Table 2 in order.
    block_names = []
    for index, row in enumerate(TABLE_2, start=1):
        block_names += [(f"bottleneck{index}.{i}", row.t != 1) for i in range(row.n)]
    last = len(block_names) + 1
    renamed = {}
    for key, value in state_dict.items():
        match = re.fullmatch(r"features\.(\d+)\.(.+)\.(\w+)", key)
        new_key = None
        if match:
            number, inner, param = int(match[1]), match[2], match[3]
            if number == 0 and inner in ("0", "1"):
                new_key = f"features.conv1.{'conv' if inner == '0' else 'bn'}.{param}"
            elif number == last and inner in ("0", "1"):
                new_key = f"features.conv_last.{'conv' if inner == '0' else 'bn'}.{param}"
            elif 1 <= number < last and inner.startswith("conv."):
                block, expanded = block_names[number - 1]
                layer = _torchvision_block_names(expanded).get(inner.removeprefix("conv."))
                new_key = layer and f"features.{block}.{layer}.{param}"
        elif key.startswith("classifier.1."):
            new_key = key.replace("classifier.1.", "fc.")
        if new_key is None:
            raise KeyError(
                f"{key!r} is not a parameter of torchvision's mobilenet_v2; is this the state "
                f"dict of another model?"
            )
        renamed[new_key] = value
    return renamed


PAPER = "MobileNetV2: Inverted Residuals and Linear Bottlenecks"
AUTHORS = "M. Sandler, A. Howard, M. Zhu, A. Zhmoginov, L.-C. Chen"
URL = "https://arxiv.org/abs/1801.04381"
NOTES = (
    "Channels of thinned layers rounded to multiples of 8 as in the authors' TF-slim release "
    "and torchvision; dropout 0.2 before the classifier as in the TF-slim release (the "
    "paper's text names none); TF-slim's initialisation (truncated normal, std 0.09). "
    "Equivalent to torchvision's mobilenet_v2 with the same width_mult "
    "(from_torchvision_state_dict)."
)
TORCHVISION_NOTE = (
    "Table 4 prints only the 1.0 and 1.4 networks (Fig. 5 plots the others), so the "
    "parameter count is the exact one of torchvision's mobilenet_v2 with this width_mult, "
    "which ours equals."
)


def _card(
    width_multiplier: float,
    params: int,
    params_source: str,
    macs: int | None = None,
    top1_accuracy: float | None = None,
    params_tolerance: float = 0.0,
    macs_tolerance: float = 0.0,
    notes: str = NOTES,
    weights: tuple[PretrainedWeights, ...] = (),
) -> ModelCard:
    errors = ()
    if top1_accuracy is not None:
        errors = (
            PublishedError(
                "ILSVRC-2012 val",
                top1=round(100 - top1_accuracy, 1),
                evaluation="single crop",
                source=f"Table 4: MobileNetV2 ({width_multiplier}), {top1_accuracy}% top-1",
            ),
        )
    return ModelCard(
        paper=PAPER,
        authors=AUTHORS,
        year=2018,
        url=URL,
        input_size=(3, 224, 224),
        num_classes=1000,
        published_params=params,
        params_source=params_source,
        published_macs=macs,
        macs_source=f"Table 4: MobileNetV2 ({width_multiplier}), MAdds" if macs else "",
        params_tolerance=params_tolerance,
        macs_tolerance=macs_tolerance,
        published_errors=errors,
        weights=weights,
        notes=notes,
        extra={"width_multiplier": width_multiplier},
    )


@variant(
    _card(
        1.0,
        3_400_000,
        "Table 4: MobileNetV2, 3.4M",
        macs=300_000_000,
        top1_accuracy=72.0,
        params_tolerance=0.03,
        macs_tolerance=0.003,
        notes=NOTES + " We count 3,504,872 parameters (3.5M) against Table 4's 3.4M, as do "
        "torchvision and timm for this very layout, and 300.8M multiply-adds against 300M "
        "(299.5M without the classifier): the paper's figures seem truncated, not rounded.",
        weights=tuple(  # torchvision's mobilenet_v2, the same network
            PretrainedWeights(
                "torchvision",
                f"MobileNet_V2_Weights.{version}",
                "cnnzoo_mobilenet.mobilenet_v2:from_torchvision_state_dict",
            )
            for version in ("IMAGENET1K_V1", "IMAGENET1K_V2")
        ),
    )
)
def mobilenet_v2(num_classes: int = 1000, in_chans: int = 3) -> MobileNetV2:
    """MobileNetV2 (Table 2; Table 4): 3,504,872 parameters, 300M multiply-adds."""
    return MobileNetV2(1.0, num_classes=num_classes, in_chans=in_chans)


@variant(
    _card(
        1.4,
        6_900_000,
        "Table 4: MobileNetV2 (1.4), 6.9M",
        macs=585_000_000,
        top1_accuracy=74.7,
        params_tolerance=0.12,
        macs_tolerance=0.005,
        notes=NOTES + " Table 4 prints 6.9M parameters and 585M multiply-adds; this layout (the "
        "authors' TF-slim mobilenet_v2_140, torchvision's width_mult=1.4) has 6,108,776 and "
        "582.2M. Every layer is 1.4 times Table 2's, rounded to multiples of 8, and the last "
        "conv has 1792 channels; we know of no reading of the paper that gives 6.9M.",
    )
)
def mobilenet_v2_140(num_classes: int = 1000, in_chans: int = 3) -> MobileNetV2:
    """MobileNetV2 (1.4) (Table 4): width multiplier 1.4, 585M multiply-adds."""
    return MobileNetV2(1.4, num_classes=num_classes, in_chans=in_chans)


@variant(_card(0.75, 2_636_424, f"torchvision mobilenet_v2(width_mult=0.75). {TORCHVISION_NOTE}"))
def mobilenet_v2_075(num_classes: int = 1000, in_chans: int = 3) -> MobileNetV2:
    """MobileNetV2 with width multiplier 0.75 (§6.1, Fig. 5)."""
    return MobileNetV2(0.75, num_classes=num_classes, in_chans=in_chans)


@variant(_card(0.5, 1_968_680, f"torchvision mobilenet_v2(width_mult=0.5). {TORCHVISION_NOTE}"))
def mobilenet_v2_050(num_classes: int = 1000, in_chans: int = 3) -> MobileNetV2:
    """MobileNetV2 with width multiplier 0.5 (§6.1, Fig. 5)."""
    return MobileNetV2(0.5, num_classes=num_classes, in_chans=in_chans)


@variant(_card(0.35, 1_677_128, f"torchvision mobilenet_v2(width_mult=0.35). {TORCHVISION_NOTE}"))
def mobilenet_v2_035(num_classes: int = 1000, in_chans: int = 3) -> MobileNetV2:
    """MobileNetV2 with width multiplier 0.35 (§6.1, Fig. 5)."""
    return MobileNetV2(0.35, num_classes=num_classes, in_chans=in_chans)
