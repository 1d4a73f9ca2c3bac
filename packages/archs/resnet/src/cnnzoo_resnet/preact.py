"""Pre-activation ResNet: He, Zhang, Ren and Sun, "Identity Mappings in Deep Residual
Networks", ECCV 2016 (arXiv:1603.05027), §4.1, Fig. 4(e) and Fig. 5.

Moving each unit's after-addition ReLU into the next unit as its "pre-activation" makes the
path from any unit to any later one a pure sum, x_L = x_l + sum F(x_i) (Eq. 4). A full
pre-activation unit is BN-ReLU-conv, BN-ReLU-conv (BN-ReLU-conv): nothing follows the
addition. Two cases fall out of the rewriting (Fig. 5 and the implementation details):

- the first unit, which follows the stand-alone conv1, takes conv1's own BN-ReLU "right after
  conv1 and before splitting into two paths", so it has no pre-activation of its own;
- the last unit's sum gets one extra BN-ReLU before the average pool.

Where a unit changes the dimensions, its projection shortcut takes the pre-activated input
("these projection shortcuts are also with pre-activation"), as a bare 1x1 convolution: the
BatchNorm sits before it. Elsewhere the shortcut is the identity of the unit's raw input.

CIFAR (§4, Table 3): ResNet-110 of basic units (18 per stage, option A shortcuts as [1]'s),
ResNet-164 and ResNet-1001 of bottleneck units (18 and 111 per stage) with 16, 32, 64 wide
bottlenecks giving 64, 128, 256 channels, as the authors' code (resnet-1k-layers) builds them.
ImageNet (§5, Table 5): [1]'s Table 1 nets and ResNet-200, which has "16 more 3-layer
bottleneck Residual Units than ResNet-152, which are added on the feature map of 28x28".
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from cnnzoo import FeatureInfo, ModelCard, PublishedError, variant
from torch import nn

from cnnzoo_resnet.resnet import (
    Block,
    ResNet,
    ShortcutOption,
    ZeroPadIdentity,
    conv1x1,
    conv3x3,
    start_running_statistics,
)


def preact_shortcut(
    in_channels: int, out_channels: int, stride: int, option: ShortcutOption
) -> nn.Module:
    """Options A, B, C of [1] §3.3 for pre-activation units: a projection is a bare 1x1
    convolution of the pre-activated input (its BatchNorm is the unit's pre-activation)."""
    if option not in ("A", "B", "C"):
        raise ValueError(f"shortcut option must be 'A', 'B' or 'C'; got {option!r}")
    changes = stride != 1 or in_channels != out_channels
    if option == "C" or (option == "B" and changes):
        return conv1x1(in_channels, out_channels, stride)
    if changes:
        return ZeroPadIdentity(in_channels, out_channels, stride)
    return nn.Identity()


class _PreActUnit(nn.Module):
    """What both pre-activation units share: the pre-activation and the shortcut."""

    bn1: nn.BatchNorm2d | None
    shortcut: nn.Module

    def _preact_and_shortcut(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        shortcut: ShortcutOption,
        preactivate: bool,
    ) -> None:
        # The network's first unit has no pre-activation: conv1's BN-ReLU plays its part.
        self.bn1 = nn.BatchNorm2d(in_channels) if preactivate else None
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = preact_shortcut(in_channels, out_channels, stride, shortcut)
        self.shortcut_takes_preactivation = isinstance(self.shortcut, nn.Conv2d)

    def preactivation(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.bn1 is None else self.relu(self.bn1(x))

    def residual(self, preact: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        preact = self.preactivation(x)
        identity = self.shortcut(preact if self.shortcut_takes_preactivation else x)
        return self.residual(preact) + identity  # Eq. (8): nothing after the addition


class PreActBasicBlock(_PreActUnit):
    """Fig. 4(e) on [1]'s basic block: BN-ReLU-3x3 conv, BN-ReLU-3x3 conv, then the sum."""

    expansion: ClassVar[int] = 1

    def __init__(
        self,
        in_channels: int,
        width: int,
        stride: int = 1,
        shortcut: ShortcutOption = "B",
        preactivate: bool = True,
    ) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self._preact_and_shortcut(in_channels, out_channels, stride, shortcut, preactivate)
        self.conv1 = conv3x3(in_channels, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, out_channels)

    def residual(self, preact: torch.Tensor) -> torch.Tensor:
        out = self.conv1(preact)
        return self.conv2(self.relu(self.bn2(out)))


class PreActBottleneck(_PreActUnit):
    """Fig. 4(e) on [1]'s bottleneck: BN-ReLU-1x1, BN-ReLU-3x3, BN-ReLU-1x1, then the sum.
    The stride sits on the first 1x1 convolution, as in [1] and the authors' code."""

    expansion: ClassVar[int] = 4

    def __init__(
        self,
        in_channels: int,
        width: int,
        stride: int = 1,
        shortcut: ShortcutOption = "B",
        preactivate: bool = True,
    ) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self._preact_and_shortcut(in_channels, out_channels, stride, shortcut, preactivate)
        self.conv1 = conv1x1(in_channels, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width)
        self.bn3 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, out_channels)

    def residual(self, preact: torch.Tensor) -> torch.Tensor:
        out = self.conv1(preact)
        out = self.conv2(self.relu(self.bn2(out)))
        return self.conv3(self.relu(self.bn3(out)))


class PreActResNet(ResNet):
    """[1]'s network of pre-activation units: conv1 with its BN-ReLU (and, on ImageNet, the
    max pool), the stages, then BN-ReLU on the last sum before the average pool."""

    # The authors' code (resnet-1k-layers, after fb.resnet.torch) draws conv weights from
    # N(0, 2 / n) with n = k^2 x output channels: [13]'s backward-case form, Eq. (14).
    he_init_mode: ClassVar[Literal["fan_in", "fan_out"]] = "fan_out"

    def __init__(
        self,
        block: Block,
        layers: tuple[int, ...],
        num_classes: int = 1000,
        in_chans: int = 3,
        shortcut: ShortcutOption = "B",
        dataset: Literal["imagenet", "cifar"] = "imagenet",
    ) -> None:
        super().__init__(block, layers, num_classes, in_chans, shortcut, dataset)
        self.final_bn_relu = nn.Sequential(nn.BatchNorm2d(self.num_features), nn.ReLU(inplace=True))
        # The last stage's sum is not yet activated; its features are the final BN-ReLU's.
        last = self.feature_info[-1]
        self.feature_info[-1] = FeatureInfo("final_bn_relu", last.channels, last.stride)

    def _unit(
        self,
        block: Block,
        in_channels: int,
        width: int,
        stride: int,
        shortcut: ShortcutOption,
        first_unit: bool,
    ) -> nn.Module:
        return block(in_channels, width, stride, shortcut, preactivate=not first_unit)  # type: ignore[call-arg]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_bn_relu(super().forward_features(x))


PAPER = "Identity Mappings in Deep Residual Networks"
AUTHORS = "K. He, X. Zhang, S. Ren, J. Sun"
URL = "https://arxiv.org/abs/1603.05027"


def _card(**fields) -> ModelCard:
    return ModelCard(paper=PAPER, authors=AUTHORS, year=2016, url=URL, recipe=None, **fields)


# §4 and Table 3 (CIFAR): depth -> (unit, units per stage, shortcut option).
CIFAR_DEPTHS: dict[int, tuple[type[_PreActUnit], int, ShortcutOption]] = {
    110: (PreActBasicBlock, 18, "A"),  # 6n + 2, [1]'s ResNet-110 with option A shortcuts
    164: (PreActBottleneck, 18, "B"),  # 9n + 2
    1001: (PreActBottleneck, 111, "B"),  # "333 Residual Units (111 on each feature map size)"
}

# [1]'s Table 1, and ResNet-200: 16 more bottleneck units than ResNet-152, on the 28x28 map.
IMAGENET_DEPTHS: dict[int, tuple[type[_PreActUnit], tuple[int, int, int, int]]] = {
    18: (PreActBasicBlock, (2, 2, 2, 2)),
    34: (PreActBasicBlock, (3, 4, 6, 3)),
    50: (PreActBottleneck, (3, 4, 6, 3)),
    101: (PreActBottleneck, (3, 4, 23, 3)),
    152: (PreActBottleneck, (3, 8, 36, 3)),
    200: (PreActBottleneck, (3, 24, 36, 3)),
}

CIFAR_EVALUATION = "single view, median of 5 runs"


def _cifar(depth: int, num_classes: int, in_chans: int) -> PreActResNet:
    block, n, shortcut = CIFAR_DEPTHS[depth]
    return PreActResNet(block, (n, n, n), num_classes, in_chans, shortcut, dataset="cifar")


def _imagenet(depth: int, num_classes: int, in_chans: int) -> PreActResNet:
    block, layers = IMAGENET_DEPTHS[depth]
    return PreActResNet(block, layers, num_classes, in_chans)


def _cifar_card(**fields) -> ModelCard:
    return _card(input_size=(3, 32, 32), num_classes=10, **fields)


def _cifar_error(top1: float, source: str, dataset: str = "CIFAR-10 test") -> PublishedError:
    return PublishedError(dataset, top1=top1, evaluation=CIFAR_EVALUATION, source=source)


@variant(
    _cifar_card(
        published_params=1_700_000,
        params_source="Table 4: ResNet-110 (1.7M)",
        published_errors=(_cifar_error(6.37, "Table 3: ResNet-110, pre-activation unit"),),
        notes="Basic pre-activation units (Fig. 4(e)); option A shortcuts as [1]'s "
        "ResNet-110 (the original unit's 6.61 is its baseline in Table 3).",
    )
)
def preact_resnet110(num_classes: int = 10, in_chans: int = 3) -> PreActResNet:
    """Pre-activation CIFAR ResNet-110: 54 basic units, 1,727,962 parameters."""
    return _cifar(110, num_classes, in_chans)


@variant(
    _cifar_card(
        published_params=1_700_000,
        params_source="Table 4: ResNet-164 [ours] (1.7M)",
        published_errors=(
            _cifar_error(5.46, "Table 3 and Table 4: ResNet-164, pre-activation unit"),
            _cifar_error(24.33, "Table 3 and Table 4: ResNet-164", dataset="CIFAR-100 test"),
        ),
        notes="54 bottleneck units of 16, 32, 64 filters (64, 128, 256 out), stride on the "
        "first 1x1 and projection shortcuts where the dimensions change, as in the authors' "
        "resnet-1k-layers code.",
    )
)
def preact_resnet164(num_classes: int = 10, in_chans: int = 3) -> PreActResNet:
    """Pre-activation CIFAR ResNet-164: 54 bottleneck units, 1,703,258 parameters."""
    return _cifar(164, num_classes, in_chans)


@variant(
    _cifar_card(
        published_params=10_200_000,
        params_source="Table 4: ResNet-1001 [ours] (10.2M)",
        params_tolerance=0.01,
        published_errors=(
            _cifar_error(4.92, "Table 3 and Table 4: ResNet-1001 (mean 4.89 +- 0.14)"),
            PublishedError(
                "CIFAR-10 test",
                top1=4.62,
                evaluation="single view, median of 5 runs, mini-batch 64",
                source="Table 4: ResNet-1001 † (mean 4.69 +- 0.20)",
            ),
            _cifar_error(22.71, "Table 3 and Table 4: ResNet-1001", dataset="CIFAR-100 test"),
        ),
        notes="333 bottleneck units, 111 per stage. 10,327,706 parameters; the paper's 10.2M "
        "is the count without BatchNorm's scales and shifts (10,178,490), hence the 1% "
        "tolerance. Built with BatchNorm running statistics measured on one batch of noise, "
        "not torch's placeholder (mean 0, variance 1): with the placeholder, eval mode before "
        "training lets each of the 333 units multiply the sum under the authors' He "
        "initialisation, and float32 overflows to NaN. Training, which normalises with each "
        "batch's own statistics, is the paper's either way.",
    )
)
def preact_resnet1001(num_classes: int = 10, in_chans: int = 3) -> PreActResNet:
    """Pre-activation CIFAR ResNet-1001: 333 bottleneck units, 10,327,706 parameters."""
    model = _cifar(1001, num_classes, in_chans)
    start_running_statistics(model, 32, 32)  # see the card's notes: finite before training
    return model


IMAGENET_NOTE = (
    "[1]'s Table 1 net with full pre-activation units (Fig. 4(e)): conv1-BN-ReLU-max pool, "
    "the first unit without pre-activation, BN-ReLU after the last sum; stride on the first "
    "1x1 as in [1]; projection shortcuts (bare 1x1 convolutions of the pre-activated input) "
    "where the dimensions change."
)


def _imagenet_card(depth: int, **fields) -> ModelCard:
    if depth in (18, 34, 50, 101, 152):
        fields.setdefault(
            "params_source",
            f"the paper prints none: timm's resnetv2_{depth} (the same units with the stride "
            f"on the 3x3, which leaves the count unchanged), exactly",
        )
    return _card(
        input_size=(3, 224, 224),
        num_classes=1000,
        notes=fields.pop("notes", IMAGENET_NOTE),
        **fields,
    )


def _table_5(top1: float, top5: float, depth: int, augmentation: str = "scale") -> PublishedError:
    return PublishedError(
        "ILSVRC-2012 val",
        top1=top1,
        top5=top5,
        evaluation=f"1 crop 320 of 320, trained on 224 crops ({augmentation} augmentation)",
        source=f"Table 5: ResNet-{depth}, pre-act Residual Unit",
    )


@variant(_imagenet_card(18, published_params=11_687_720))
def preact_resnet18(num_classes: int = 1000, in_chans: int = 3) -> PreActResNet:
    """Pre-activation ResNet-18: 11,687,720 parameters. The paper trains none; for studies."""
    return _imagenet(18, num_classes, in_chans)


@variant(_imagenet_card(34, published_params=21_795_880))
def preact_resnet34(num_classes: int = 1000, in_chans: int = 3) -> PreActResNet:
    """Pre-activation ResNet-34: 21,795,880 parameters. The paper trains none; for studies."""
    return _imagenet(34, num_classes, in_chans)


@variant(_imagenet_card(50, published_params=25_549_352))
def preact_resnet50(num_classes: int = 1000, in_chans: int = 3) -> PreActResNet:
    """Pre-activation ResNet-50: 25,549,352 parameters. The paper trains none; for studies."""
    return _imagenet(50, num_classes, in_chans)


@variant(_imagenet_card(101, published_params=44_541_480))
def preact_resnet101(num_classes: int = 1000, in_chans: int = 3) -> PreActResNet:
    """Pre-activation ResNet-101: 44,541,480 parameters (§5 mentions only a "BN after
    addition" ResNet-101)."""
    return _imagenet(101, num_classes, in_chans)


@variant(
    _imagenet_card(152, published_params=60_185_128, published_errors=(_table_5(21.1, 5.5, 152),))
)
def preact_resnet152(num_classes: int = 1000, in_chans: int = 3) -> PreActResNet:
    """Pre-activation ResNet-152 of Table 5: 60,185,128 parameters."""
    return _imagenet(152, num_classes, in_chans)


@variant(
    _imagenet_card(
        200,
        published_params=64_666_152,
        params_source="the paper prints none: timm's ResNetV2(layers=(3, 24, 36, 3)) (the same "
        "units with the stride on the 3x3, which leaves the count unchanged), exactly",
        published_errors=(
            _table_5(20.7, 5.3, 200),
            _table_5(20.1, 4.8, 200, augmentation="scale and aspect ratio"),
        ),
    )
)
def preact_resnet200(num_classes: int = 1000, in_chans: int = 3) -> PreActResNet:
    """Pre-activation ResNet-200 of Table 5 ([3, 24, 36, 3] units): 64,666,152 parameters."""
    return _imagenet(200, num_classes, in_chans)
