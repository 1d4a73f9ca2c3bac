"""DenseNet: Huang, Liu, van der Maaten and Weinberger, "Densely Connected Convolutional
Networks", CVPR 2017 (arXiv:1608.06993), §3 and Tables 1 and 2.

    ImageNet (Table 1), input 224x224, growth rate k:
        Convolution   7x7 conv, stride 2, 2k maps                              112x112
        Pooling       3x3 max pool, stride 2                                    56x56
        Dense Block (1)   [1x1 conv, 3x3 conv] x 6                               56x56
        Transition (1)    1x1 conv, 2x2 average pool, stride 2              56 -> 28
        Dense Block (2)   [1x1 conv, 3x3 conv] x 12                              28x28
        Transition (2)                                                      28 -> 14
        Dense Block (3)   [1x1 conv, 3x3 conv] x 24 | 32 | 48 | 36 | 64         14x14
        Transition (3)                                                       14 -> 7
        Dense Block (4)   [1x1 conv, 3x3 conv] x 16 | 32 | 32 | 24 | 48           7x7
        Classification    global average pool, 1000-way fully connected, softmax

    CIFAR and SVHN (§3 Implementation Details, Table 2), input 32x32: a 3x3 convolution of
    16 maps (2k for DenseNet-BC), three dense blocks of equal depth on 32x32, 16x16 and 8x8
    maps with transitions between them, global average pooling and the classifier.

Every ImageNet model is a DenseNet-BC: bottleneck layers (-B) and compression θ = 0.5 in the
transitions (-C). Before the global average pool, a last batch normalisation and ReLU
activate the output of the last dense block, as in the authors' code.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

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

from cnnzoo_densenet.layers import DenseBlock, Transition


@dataclass(frozen=True)
class DenseNetConfig:
    """One column of Table 1 or one row of Table 2."""

    growth_rate: int  # k
    block_layers: tuple[int, ...]  # layers per dense block
    bottleneck: bool  # DenseNet-B: 1x1 convolutions of 4k maps before each 3x3 (§3)
    compression: float  # θ of the transitions; 1 without -C, 0.5 for DenseNet-C (§3)
    imagenet_stem: bool  # 7x7/2 conv and 3x3/2 max pool (Table 1); else one 3x3 conv

    @property
    def stem_chans(self) -> int:
        # "the initial convolution layer comprises 2k convolutions" (Table 1) and "16 (or
        # twice the growth rate for DenseNet-BC)" on CIFAR (§3 Implementation Details).
        return 2 * self.growth_rate if self.imagenet_stem or self.bottleneck else 16


def imagenet_config(growth_rate: int, block_layers: tuple[int, int, int, int]) -> DenseNetConfig:
    return DenseNetConfig(growth_rate, block_layers, True, 0.5, imagenet_stem=True)


def cifar_config(depth: int, growth_rate: int, bc: bool) -> DenseNetConfig:
    """Table 2's networks by depth L: three dense blocks of equal depth. Of the L layers, the
    first convolution, the two transitions and the classifier are 4; the rest are split over
    the three blocks, two convolutions per layer for DenseNet-BC."""
    per_block = (depth - 4) // (6 if bc else 3)
    assert per_block * (6 if bc else 3) + 4 == depth, depth
    return DenseNetConfig(
        growth_rate, (per_block,) * 3, bc, 0.5 if bc else 1.0, imagenet_stem=False
    )


# Table 1 (k = 32) and the authors' DenseNet-161 (k = 48).
IMAGENET_TABLE: dict[str, DenseNetConfig] = {
    "densenet121": imagenet_config(32, (6, 12, 24, 16)),
    "densenet169": imagenet_config(32, (6, 12, 32, 32)),
    "densenet201": imagenet_config(32, (6, 12, 48, 32)),
    "densenet161": imagenet_config(48, (6, 12, 36, 24)),
    "densenet264": imagenet_config(32, (6, 12, 64, 48)),
}

# Table 2: DenseNet (L, k) and DenseNet-BC (L, k).
CIFAR_TABLE: dict[str, DenseNetConfig] = {
    "densenet40_k12": cifar_config(40, 12, bc=False),
    "densenet100_k12": cifar_config(100, 12, bc=False),
    "densenet100_k24": cifar_config(100, 24, bc=False),
    "densenet_bc100_k12": cifar_config(100, 12, bc=True),
    "densenet_bc250_k24": cifar_config(250, 24, bc=True),
    "densenet_bc190_k40": cifar_config(190, 40, bc=True),
}

# The 7x7/2 convolution, the 3x3/2 max pool and three 2x2 average pools leave a 1x1 map for
# the classifier from 29x29 images and nothing from 28x28; on CIFAR two average pools need 4x4.
IMAGENET_MIN_INPUT_SIZE = 29
CIFAR_MIN_INPUT_SIZE = 4


class DenseNet(PooledClassifierNet):
    """A DenseNet of any column of Table 1 or row of Table 2.

    `features` holds the stem, the dense blocks and the transitions between them, and the
    last normalisation and ReLU; the head is the global average pool and `classifier`.
    `drop_rate` is the dropout after each convolution but the first (§4.2: 0.2 on the data
    sets without augmentation, none otherwise).
    """

    classifier_name = "classifier"  # as torchvision's weights name it

    def __init__(
        self,
        config: DenseNetConfig,
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        rate_ok = isinstance(drop_rate, int | float) and not isinstance(drop_rate, bool)
        if not rate_ok or not 0 <= drop_rate < 1:  # NaN fails the comparison too
            raise ValueError(
                f"drop_rate must be a probability in [0, 1) (the paper's 0.2 on data without "
                f"augmentation, 0 with it); got {drop_rate!r}."
            )
        self.config = config
        self.num_classes = num_classes
        self.in_chans = in_chans
        chans = config.stem_chans
        if config.imagenet_stem:
            stem = OrderedDict(
                conv=nn.Conv2d(in_chans, chans, 7, stride=2, padding=3, bias=False),
                norm=nn.BatchNorm2d(chans),
                relu=nn.ReLU(inplace=True),
                pool=nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            )
            self.feature_info = [FeatureInfo("features.stem.relu", chans, 2)]
            stride = 4
        else:
            stem = OrderedDict(conv=nn.Conv2d(in_chans, chans, 3, padding=1, bias=False))
            self.feature_info = [FeatureInfo("features.stem", chans, 1)]
            stride = 1
        stages: OrderedDict[str, nn.Module] = OrderedDict(stem=nn.Sequential(stem))
        for index, num_layers in enumerate(config.block_layers, start=1):
            block = DenseBlock(chans, num_layers, config.growth_rate, config.bottleneck, drop_rate)
            stages[f"denseblock{index}"] = block
            chans = block.out_chans
            if index < len(config.block_layers):
                self.feature_info.append(FeatureInfo(f"features.denseblock{index}", chans, stride))
                out_chans = math.floor(config.compression * chans)
                stages[f"transition{index}"] = Transition(chans, out_chans, drop_rate)
                chans, stride = out_chans, stride * 2
        stages["final_norm"] = nn.BatchNorm2d(chans)
        stages["final_relu"] = nn.ReLU(inplace=True)
        self.feature_info.append(FeatureInfo("features.final_relu", chans, stride))
        self.features = nn.Sequential(stages)
        self.build_head(chans, num_classes)  # global average pooling, a softmax classifier
        self._init_weights()

    def init_classifier(self, fc: nn.Linear) -> None:
        nn.init.zeros_(fc.bias)  # its weights keep torch's default (see _init_weights)

    def _init_weights(self) -> None:
        # The authors' Torch code initialises "following ResNet" (fb.resnet.torch): conv
        # weights from N(0, 2/n) with n = k*k*out_channels (He et al. 2015, fan-out), batch
        # norm scale 1 and shift 0, the classifier's bias 0 (its weights keep torch's
        # default U(±1/sqrt(fan_in)), which is also Torch7's).
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


# torchvision's densenet module names -> ours. A torchvision dense layer's norm1, conv1,
# norm2, conv2 are our bottleneck (conv1x1) and its 3x3 convolution (conv3x3).
TORCHVISION_LAYER_PARTS = {
    "norm1": "conv1x1.norm",
    "conv1": "conv1x1.conv",
    "norm2": "conv3x3.norm",
    "conv2": "conv3x3.conv",
}
TORCHVISION_KEYS = (
    (r"features\.conv0", lambda m: "features.stem.conv"),
    (r"features\.norm0", lambda m: "features.stem.norm"),
    (
        r"features\.denseblock(\d)\.denselayer(\d+)\.(norm1|conv1|norm2|conv2)",
        lambda m: f"features.denseblock{m[1]}.layer{m[2]}.{TORCHVISION_LAYER_PARTS[m[3]]}",
    ),
    (r"features\.transition(\d)\.(norm|conv)", lambda m: f"features.transition{m[1]}.{m[2]}"),
    (r"features\.norm5", lambda m: "features.final_norm"),
    (r"classifier", lambda m: "classifier"),
)


def from_torchvision_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict of torchvision's `densenet121`, `densenet169`, `densenet201` or
    `densenet161` renamed for ours, e.g. for torchvision's ImageNet weights:

        model.load_state_dict(from_torchvision_state_dict(weights.get_state_dict()))
    """
    renamed = {}
    for key, value in state_dict.items():
        # torchvision's published weight files still spell "norm.1" for "norm1" (its own
        # loader renames them the same way).
        key = re.sub(r"(denselayer\d+\.(?:norm|conv))\.([12])\.", r"\1\2.", key)
        module, _, param = key.rpartition(".")
        for pattern, rename in TORCHVISION_KEYS:
            match = re.fullmatch(pattern, module)
            if match:
                renamed[f"{rename(match)}.{param}"] = value
                break
        else:
            raise KeyError(
                f"{key!r} is not a parameter of a torchvision DenseNet; is this the state "
                f"dict of another model?"
            )
    return renamed


PAPER = "Densely Connected Convolutional Networks"
AUTHORS = "G. Huang, Z. Liu, L. van der Maaten, K. Q. Weinberger"
URL = "https://arxiv.org/abs/1608.06993"


def imagenet_card(
    published_params: int,
    params_source: str,
    errors: tuple[PublishedError, ...],
    notes: str,
    torchvision_weights: str | None = None,
) -> ModelCard:
    weights = ()
    if torchvision_weights:  # torchvision's ImageNet weights of the same network
        convert = "cnnzoo_densenet.densenet:from_torchvision_state_dict"
        weights = (PretrainedWeights("torchvision", torchvision_weights, convert),)
    return ModelCard(
        paper=PAPER,
        authors=AUTHORS,
        year=2017,
        url=URL,
        input_size=(3, 224, 224),
        num_classes=1000,
        published_params=published_params,
        params_source=params_source,
        published_errors=errors,
        recipe=None,
        min_input_size=IMAGENET_MIN_INPUT_SIZE,
        weights=weights,
        notes=notes,
    )


def table3(top1: tuple[float, float], top5: tuple[float, float]) -> tuple[PublishedError, ...]:
    """Table 3's single-crop and 10-crop ILSVRC-2012 validation errors."""
    return (
        PublishedError("ILSVRC-2012 val", top1[0], top5[0], "single crop 224", "Table 3"),
        PublishedError("ILSVRC-2012 val", top1[1], top5[1], "10 crops 224", "Table 3"),
    )


TORCHVISION_NOTE = (
    "Parameters: the paper prints none (Fig. 3 plots them); the figure is torchvision's "
    "count of the same network, whose state dicts load through from_torchvision_state_dict. "
)


@variant(
    imagenet_card(
        7_978_856,
        "torchvision densenet121 (exact count; the paper prints none)",
        table3((25.02, 23.61), (7.71, 6.66)),
        TORCHVISION_NOTE + "Table 1 column DenseNet-121 (k=32).",
        torchvision_weights="DenseNet121_Weights.IMAGENET1K_V1",
    )
)
def densenet121(num_classes: int = 1000, in_chans: int = 3) -> DenseNet:
    """DenseNet-121 (k = 32), Table 1: 7,978,856 parameters with 1000 classes."""
    return DenseNet(IMAGENET_TABLE["densenet121"], num_classes, in_chans)


@variant(
    imagenet_card(
        14_149_480,
        "torchvision densenet169 (exact count; the paper prints none)",
        table3((23.80, 22.08), (6.85, 5.92)),
        TORCHVISION_NOTE + "Table 1 column DenseNet-169 (k=32).",
        torchvision_weights="DenseNet169_Weights.IMAGENET1K_V1",
    )
)
def densenet169(num_classes: int = 1000, in_chans: int = 3) -> DenseNet:
    """DenseNet-169 (k = 32), Table 1: 14,149,480 parameters with 1000 classes."""
    return DenseNet(IMAGENET_TABLE["densenet169"], num_classes, in_chans)


@variant(
    imagenet_card(
        20_013_928,
        "torchvision densenet201 (exact count; the paper prints none)",
        table3((22.58, 21.46), (6.34, 5.54)),
        TORCHVISION_NOTE + "Table 1 column DenseNet-201 (k=32).",
        torchvision_weights="DenseNet201_Weights.IMAGENET1K_V1",
    )
)
def densenet201(num_classes: int = 1000, in_chans: int = 3) -> DenseNet:
    """DenseNet-201 (k = 32), Table 1: 20,013,928 parameters with 1000 classes."""
    return DenseNet(IMAGENET_TABLE["densenet201"], num_classes, in_chans)


@variant(
    imagenet_card(
        28_681_000,
        "torchvision densenet161 (exact count; the paper prints none)",
        (
            PublishedError(
                "ILSVRC-2012 val",
                top1=22.2,
                evaluation="single crop 224",
                source="authors' release (github.com/liuzhuang13/DenseNet README, Torch model)",
            ),
        ),
        TORCHVISION_NOTE + "DenseNet-161 (k=48, blocks 6-12-36-24, 96-map stem) is the "
        "authors' released ImageNet model (their densenet.lua, depth 161); the published "
        "version of the paper reports no error for it in Table 3, so the error is the "
        "authors' README figure.",
        torchvision_weights="DenseNet161_Weights.IMAGENET1K_V1",
    )
)
def densenet161(num_classes: int = 1000, in_chans: int = 3) -> DenseNet:
    """DenseNet-161 (k = 48): 28,681,000 parameters with 1000 classes."""
    return DenseNet(IMAGENET_TABLE["densenet161"], num_classes, in_chans)


@variant(
    imagenet_card(
        33_337_704,
        "our exact count of Table 1's DenseNet-264 (the paper prints none, and no "
        "reference implementation builds this network: timm's densenet264d has a deep stem)",
        table3((22.15, 20.80), (6.12, 5.29)),
        "Table 1 column DenseNet-264 (k=32). No reference to compare with: timm's "
        "densenet264d replaces the 7x7 stem by three 3x3 convolutions, and torchvision has "
        "no DenseNet-264. The column's blocks (6, 12, 64, 48) give 265 weight layers, not "
        "264, counted as for the other columns; we keep the blocks as printed.",
    )
)
def densenet264(num_classes: int = 1000, in_chans: int = 3) -> DenseNet:
    """DenseNet-264 (k = 32), Table 1: 33,337,704 parameters with 1000 classes."""
    return DenseNet(IMAGENET_TABLE["densenet264"], num_classes, in_chans)


def cifar_errors(
    c10: float | None,
    c10_aug: float,
    c100: float | None,
    c100_aug: float,
    svhn: float | None,
) -> tuple[PublishedError, ...]:
    """Table 2's error rates, the augmented CIFAR-10 (C10+) first: the builders' default
    (no dropout) is the setting of the augmented columns."""
    source = "Table 2"
    dropout = "test set; trained with dropout 0.2 (drop_rate=0.2), §4.2"
    errors = [
        PublishedError("CIFAR-10+ (standard augmentation)", c10_aug, None, "test set", source),
        PublishedError("CIFAR-100+ (standard augmentation)", c100_aug, None, "test set", source),
    ]
    if c10 is not None:
        errors.append(PublishedError("CIFAR-10 (no augmentation)", c10, None, dropout, source))
    if c100 is not None:
        errors.append(PublishedError("CIFAR-100 (no augmentation)", c100, None, dropout, source))
    if svhn is not None:
        errors.append(PublishedError("SVHN (no augmentation)", svhn, None, dropout, source))
    return tuple(errors)


CIFAR_NOTE = (
    "Input 32x32 (CIFAR-10/100, SVHN), 10 classes by default. drop_rate is the dropout after "
    "every convolution but the first: the paper uses 0.2 on C10, C100 and SVHN (trained "
    "without augmentation) and none on C10+ and C100+ (§4.2), so the default is 0."
)


def cifar_card(published_params: int, errors: tuple[PublishedError, ...], row: str) -> ModelCard:
    return ModelCard(
        paper=PAPER,
        authors=AUTHORS,
        year=2017,
        url=URL,
        input_size=(3, 32, 32),
        num_classes=10,
        published_params=published_params,
        params_source=f"Table 2: {row}",
        published_errors=errors,
        recipe=None,
        min_input_size=CIFAR_MIN_INPUT_SIZE,
        notes=f"Table 2 row {row}. " + CIFAR_NOTE,
    )


@variant(
    cifar_card(1_000_000, cifar_errors(7.00, 5.24, 27.55, 24.42, 1.79), "DenseNet (k=12), L=40")
)
def densenet40_k12(num_classes: int = 10, in_chans: int = 3, drop_rate: float = 0.0) -> DenseNet:
    """DenseNet, L = 40, k = 12 (Table 2): three dense blocks of 12 layers, 16-map stem."""
    return DenseNet(CIFAR_TABLE["densenet40_k12"], num_classes, in_chans, drop_rate)


@variant(
    cifar_card(7_000_000, cifar_errors(5.77, 4.10, 23.79, 20.20, 1.67), "DenseNet (k=12), L=100")
)
def densenet100_k12(num_classes: int = 10, in_chans: int = 3, drop_rate: float = 0.0) -> DenseNet:
    """DenseNet, L = 100, k = 12 (Table 2): three dense blocks of 32 layers, 16-map stem."""
    return DenseNet(CIFAR_TABLE["densenet100_k12"], num_classes, in_chans, drop_rate)


@variant(
    cifar_card(27_200_000, cifar_errors(5.83, 3.74, 23.42, 19.25, 1.59), "DenseNet (k=24), L=100")
)
def densenet100_k24(num_classes: int = 10, in_chans: int = 3, drop_rate: float = 0.0) -> DenseNet:
    """DenseNet, L = 100, k = 24 (Table 2): three dense blocks of 32 layers, 16-map stem."""
    return DenseNet(CIFAR_TABLE["densenet100_k24"], num_classes, in_chans, drop_rate)


@variant(
    cifar_card(800_000, cifar_errors(5.92, 4.51, 24.15, 22.27, 1.76), "DenseNet-BC (k=12), L=100")
)
def densenet_bc100_k12(
    num_classes: int = 10, in_chans: int = 3, drop_rate: float = 0.0
) -> DenseNet:
    """DenseNet-BC, L = 100, k = 12 (Table 2): three dense blocks of 16 bottleneck layers."""
    return DenseNet(CIFAR_TABLE["densenet_bc100_k12"], num_classes, in_chans, drop_rate)


@variant(
    cifar_card(
        15_300_000, cifar_errors(5.19, 3.62, 19.64, 17.60, 1.74), "DenseNet-BC (k=24), L=250"
    )
)
def densenet_bc250_k24(
    num_classes: int = 10, in_chans: int = 3, drop_rate: float = 0.0
) -> DenseNet:
    """DenseNet-BC, L = 250, k = 24 (Table 2): three dense blocks of 41 bottleneck layers."""
    return DenseNet(CIFAR_TABLE["densenet_bc250_k24"], num_classes, in_chans, drop_rate)


@variant(
    cifar_card(25_600_000, cifar_errors(None, 3.46, None, 17.18, None), "DenseNet-BC (k=40), L=190")
)
def densenet_bc190_k40(
    num_classes: int = 10, in_chans: int = 3, drop_rate: float = 0.0
) -> DenseNet:
    """DenseNet-BC, L = 190, k = 40 (Table 2): three dense blocks of 31 bottleneck layers;
    trained only with augmentation in the paper (C10+, C100+)."""
    return DenseNet(CIFAR_TABLE["densenet_bc190_k40"], num_classes, in_chans, drop_rate)
