"""SE-ResNet and SE-ResNeXt: Hu, Shen, Albanie, Sun and Wu, "Squeeze-and-Excitation
Networks" (arXiv:1709.01507), §3.3 ("Instantiations"), Fig. 3 and Table 1.

An SE block recalibrates the residual branch of every block before the summation with the
identity (Fig. 3): x + SE(F(x)), then the ReLU. The networks are otherwise those of He et al.
2016 (ResNet, Table 1 of cnnzoo_resnet) and Xie et al. 2017 (ResNeXt), as the SENet paper's
Table 1 lays them out for 50 layers:

    output  ResNet-50                SE-ResNet-50                 SE-ResNeXt-50 (32x4d)
    112     conv, 7x7, 64, stride 2
     56     max pool, 3x3, stride 2
     56     [1x1, 64; 3x3, 64;       [1x1, 64; 3x3, 64;           [1x1, 128; 3x3, 128, C=32;
             1x1, 256] x 3            1x1, 256; fc, [16, 256]] x3  1x1, 256; fc, [16, 256]] x3
     28     ... 128/512 x 4          ... fc, [32, 512] x 4        ... 256, C=32 / 512 x 4
     14     ... 256/1024 x 6         ... fc, [64, 1024] x 6       ... 512, C=32 / 1024 x 6
      7     ... 512/2048 x 3         ... fc, [128, 2048] x 3      ... 1024, C=32 / 2048 x 3
      1     global average pool, 1000-d fc, softmax

"fc, [16, 256]" is the SE block's two fully-connected layers, 256 / r = 16 units and back to
256, with the reduction ratio r = 16.

The blocks are cnnzoo_resnet's, subclassed to put the SE block on their `residual` branch; the
skeleton is `cnnzoo_resnet.ResNet` (shortcut option B, projections only where the shape
changes). As in the authors' released Caffe models, the bottleneck of SE-ResNet strides on its
first 1x1 convolution (as the ResNet paper's own Caffe models do), SE-ResNeXt's on its grouped
3x3 (as ResNeXt's released code does), and the first max pooling rounds up (Caffe's
ceil mode, no padding) where torchvision pads by one: both give 56x56 at 224x224, from windows
one pixel apart.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import ClassVar

import torch
from cnnzoo import ModelCard, PretrainedWeights, PublishedError, variant
from cnnzoo_resnet import TABLE_1, BasicBlock, Bottleneck, ResNet, make_shortcut
from cnnzoo_resnet.resnet import ShortcutOption, conv1x1
from torch import nn

from cnnzoo_senet.layers import SqueezeExcitation

# r of Eq. 3; the paper uses 16 unless it says otherwise (its ablation of r: Table 5).
REDUCTION = 16


class SEBasicBlock(BasicBlock):
    """ResNet's two-3x3 block (He et al. Fig. 5 left) with an SE block on the residual."""

    def __init__(
        self,
        in_channels: int,
        width: int,
        stride: int = 1,
        shortcut: ShortcutOption = "B",
        reduction: int = REDUCTION,
    ) -> None:
        super().__init__(in_channels, width, stride, shortcut)
        self.se = SqueezeExcitation(width * self.expansion, reduction)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        return self.se(super().residual(x))


class SEBottleneck(Bottleneck):
    """The SE-ResNet module of Fig. 3: ResNet's bottleneck (stride on the first 1x1, as the
    authors' Caffe models), its residual recalibrated by an SE block before the summation."""

    def __init__(
        self,
        in_channels: int,
        width: int,
        stride: int = 1,
        shortcut: ShortcutOption = "B",
        reduction: int = REDUCTION,
    ) -> None:
        super().__init__(in_channels, width, stride, shortcut)
        self.se = SqueezeExcitation(width * self.expansion, reduction)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        return self.se(super().residual(x))


class ResNeXtBottleneck(Bottleneck):
    """ResNeXt's block (Xie et al. 2017, Fig. 3c), as the SENet paper's Table 1 lays out
    ResNeXt-50 (32x4d): 1x1 to `cardinality` x `bottleneck_width` x (width / 64) maps (128 in
    the 64-wide stage), a 3x3 convolution in `cardinality` groups, 1x1 to 4 x width maps.
    The stride sits on the grouped 3x3, as in ResNeXt's released code. Its residual and the
    summation are ResNet's bottleneck's; only the layers' widths and grouping differ."""

    expansion: ClassVar[int] = 4
    cardinality: ClassVar[int] = 32  # C
    bottleneck_width: ClassVar[int] = 4  # d, of the 64-wide stage

    def __init__(
        self, in_channels: int, width: int, stride: int = 1, shortcut: ShortcutOption = "B"
    ) -> None:
        nn.Module.__init__(self)  # its own layers below; Bottleneck's would be thrown away
        inner = self.cardinality * self.bottleneck_width * width // 64
        out_channels = width * self.expansion
        self.conv1 = conv1x1(in_channels, inner)
        self.bn1 = nn.BatchNorm2d(inner)
        self.conv2 = nn.Conv2d(
            inner, inner, 3, stride=stride, padding=1, groups=self.cardinality, bias=False
        )
        self.bn2 = nn.BatchNorm2d(inner)
        self.conv3 = conv1x1(inner, out_channels)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = make_shortcut(in_channels, out_channels, stride, shortcut)


class SEResNeXtBottleneck(ResNeXtBottleneck):
    """The SE-ResNeXt module (Table 1, right column): ResNeXt's block with an SE block on its
    residual before the summation."""

    def __init__(
        self,
        in_channels: int,
        width: int,
        stride: int = 1,
        shortcut: ShortcutOption = "B",
        reduction: int = REDUCTION,
    ) -> None:
        super().__init__(in_channels, width, stride, shortcut)
        self.se = SqueezeExcitation(width * self.expansion, reduction)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        return self.se(super().residual(x))


SEBlock = type[SEBasicBlock] | type[SEBottleneck] | type[SEResNeXtBottleneck]

# Blocks per stage (conv2_x .. conv5_x) are those of ResNet's Table 1 (and of ResNeXt-50).
SE_TABLE: dict[str, tuple[SEBlock, tuple[int, int, int, int]]] = {
    "se_resnet18": (SEBasicBlock, TABLE_1[18][1]),
    "se_resnet34": (SEBasicBlock, TABLE_1[34][1]),
    "se_resnet50": (SEBottleneck, TABLE_1[50][1]),
    "se_resnet101": (SEBottleneck, TABLE_1[101][1]),
    "se_resnet152": (SEBottleneck, TABLE_1[152][1]),
    "se_resnext50_32x4d": (SEResNeXtBottleneck, TABLE_1[50][1]),
}


class SEResNet(ResNet):
    """A ResNet or ResNeXt whose every block carries an SE block of reduction ratio
    `reduction` (§3.3, Fig. 3)."""

    def __init__(
        self,
        block: SEBlock,
        layers: tuple[int, int, int, int],
        num_classes: int = 1000,
        in_chans: int = 3,
        reduction: int = REDUCTION,
    ) -> None:
        self.reduction = reduction  # read by _unit while the parent builds the stages
        super().__init__(block, layers, num_classes, in_chans, shortcut="B", dataset="imagenet")
        # Caffe's pooling rounds up and has no padding, as in the authors' released models.
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)
        # The SE blocks' layers get He et al.'s initialisation too, like every other layer of
        # the network trained from scratch (the paper's training details cite He et al. 2015).
        for module in self.modules():
            if isinstance(module, SqueezeExcitation):
                for fc in (module.fc1, module.fc2):
                    nn.init.kaiming_normal_(fc.weight, mode=self.he_init_mode, nonlinearity="relu")
                    nn.init.zeros_(fc.bias)

    def _unit(
        self,
        block: SEBlock,
        in_channels: int,
        width: int,
        stride: int,
        shortcut: ShortcutOption,
        first_unit: bool,
    ) -> nn.Module:
        return block(in_channels, width, stride, shortcut, reduction=self.reduction)


_TIMM_KEY = re.compile(
    r"^(?:layer0\.(?P<stem>conv1|bn1)|layer(?P<stage>[1-4])\.(?P<unit>\d+)\."
    r"(?:(?P<layer>(?:conv|bn)[1-3])|se_module\.(?P<se>fc[12])|downsample\.(?P<down>[01]))"
    r"|(?P<fc>last_linear))\.(?P<param>\w+)$"
)


def from_timm_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict of timm's `legacy_seresnet18/34/50/101/152` or `legacy_seresnext50_32x4d`
    (the authors' Caffe layout, and for 50 layers and more the authors' own weights, ported)
    renamed for ours; the SE blocks' 1x1 convolutions become fully-connected weights."""
    renamed = {}
    for key, value in state_dict.items():
        match = _TIMM_KEY.match(key)
        if match is None:
            raise KeyError(
                f"{key!r} is not a parameter of timm's legacy SE-ResNet / SE-ResNeXt "
                f"(layer0, layer1-4, last_linear); is this the state dict of another model?"
            )
        part = match.groupdict()
        if part["stem"]:
            module = "conv1." + {"conv1": "conv", "bn1": "bn"}[part["stem"]]
        elif part["fc"]:
            module = "fc"
        else:
            inner = (
                part["layer"]
                or (part["se"] and f"se.{part['se']}")
                or {"0": "shortcut.conv", "1": "shortcut.bn"}[part["down"]]
            )
            module = f"conv{int(part['stage']) + 1}_x.{part['unit']}.{inner}"
            if part["se"] and part["param"] == "weight":
                value = value.flatten(1)  # (out, in, 1, 1) -> (out, in)
        renamed[f"{module}.{part['param']}"] = value
    return renamed


PAPER = "Squeeze-and-Excitation Networks"
AUTHORS = "J. Hu, L. Shen, S. Albanie, G. Sun, E. Wu"
URL = "https://arxiv.org/abs/1709.01507"
DATASET = "ILSVRC-2012 val"
CENTRE_CROP = "single centre crop 224"
RELEASE = "authors' release (github.com/hujie-frank/SENet README)"


def table_2(top1: float, top5: float) -> PublishedError:
    return PublishedError(DATASET, top1, top5, CENTRE_CROP, "Table 2 (SENet column)")


def release(top1: float, top5: float) -> PublishedError:
    return PublishedError(DATASET, top1, top5, "single centre crop 224 of 256", RELEASE)


def _card(
    params: int,
    params_source: str,
    errors: tuple[PublishedError, ...] = (),
    gflops: float | None = None,
    notes: str = "",
    timm_weights: str | None = None,
) -> ModelCard:
    macs = {}
    if gflops is not None:
        macs = {
            "published_macs": round(gflops * 1e9),
            "macs_source": f"Table 2: {gflops} GFLOPs (multiply-adds, as ResNet counts them)",
            "macs_tolerance": 0.005,
        }
        notes = (notes + " " + MACS_NOTE).strip()
    weights = ()
    if timm_weights:  # timm's legacy_se* weights of the same network
        convert = "cnnzoo_senet.se_resnet:from_timm_state_dict"
        weights = (PretrainedWeights("timm", timm_weights, convert),)
    return ModelCard(
        paper=PAPER,
        authors=AUTHORS,
        year=2018,
        url=URL,
        input_size=(3, 224, 224),
        num_classes=1000,
        published_params=params,
        params_source=params_source,
        published_errors=errors,
        recipe=None,
        weights=weights,
        notes=notes,
        **macs,
    )


MACS_NOTE = (
    "Multiply-adds within 0.5% of Table 2: our counter counts convolutions and matrix "
    "products only, while Table 2's figures also count each SE block's squeeze (global "
    "pooling) and scale, about C x H x W operations each per block (~0.01 G for SE-ResNet-50, "
    "~0.02 G for SE-ResNet-101 and -152), which is all of the difference."
)
TIMM_PARAMS = "timm legacy_{} (exact count of the authors' Caffe layout; the paper prints none)"
NO_ERROR_NOTE = (
    "The paper reports no ImageNet result for this depth; the network follows §3.3 and "
    "Fig. 3 on ResNet's Table 1 (two 3x3 blocks, SE on the residual of each). timm's "
    "legacy_seresnet18/34 (same parameters, loadable through from_timm_state_dict) add a ReLU "
    "between the second BN and the SE block, which Fig. 3 does not have, so their outputs "
    "differ from ours; timm's seresnet18/34 round the SE width up to 8 (r = 8 in conv2_x)."
)


def _build(name: str, num_classes: int, in_chans: int, reduction: int) -> SEResNet:
    block, layers = SE_TABLE[name]
    return SEResNet(block, layers, num_classes, in_chans, reduction)


@variant(_card(11_778_592, TIMM_PARAMS.format("seresnet18"), notes=NO_ERROR_NOTE))
def se_resnet18(num_classes: int = 1000, in_chans: int = 3, reduction: int = REDUCTION) -> SEResNet:
    """SE-ResNet-18: ResNet-18's blocks with an SE block each (§3.3)."""
    return _build("se_resnet18", num_classes, in_chans, reduction)


@variant(_card(21_958_868, TIMM_PARAMS.format("seresnet34"), notes=NO_ERROR_NOTE))
def se_resnet34(num_classes: int = 1000, in_chans: int = 3, reduction: int = REDUCTION) -> SEResNet:
    """SE-ResNet-34: ResNet-34's blocks with an SE block each (§3.3)."""
    return _build("se_resnet34", num_classes, in_chans, reduction)


@variant(
    _card(
        28_100_000,
        "Table 5: SE-ResNet-50 with r = 16, 28.1M (§4: ~2.5M more than ResNet-50's ~25M)",
        (table_2(23.29, 6.62), release(22.37, 6.36)),
        gflops=3.87,
        timm_weights="legacy_seresnet50.in1k",
    )
)
def se_resnet50(num_classes: int = 1000, in_chans: int = 3, reduction: int = REDUCTION) -> SEResNet:
    """SE-ResNet-50 (Table 1, middle column)."""
    return _build("se_resnet50", num_classes, in_chans, reduction)


@variant(
    _card(
        49_326_872,
        TIMM_PARAMS.format("seresnet101"),
        (table_2(22.38, 6.07), release(21.75, 5.72)),
        gflops=7.60,
        timm_weights="legacy_seresnet101.in1k",
    )
)
def se_resnet101(
    num_classes: int = 1000, in_chans: int = 3, reduction: int = REDUCTION
) -> SEResNet:
    """SE-ResNet-101: ResNet-101's bottlenecks with an SE block each."""
    return _build("se_resnet101", num_classes, in_chans, reduction)


@variant(
    _card(
        66_821_848,
        TIMM_PARAMS.format("seresnet152"),
        (table_2(21.57, 5.73), release(21.34, 5.54)),
        gflops=11.32,
        timm_weights="legacy_seresnet152.in1k",
    )
)
def se_resnet152(
    num_classes: int = 1000, in_chans: int = 3, reduction: int = REDUCTION
) -> SEResNet:
    """SE-ResNet-152: ResNet-152's bottlenecks with an SE block each."""
    return _build("se_resnet152", num_classes, in_chans, reduction)


@variant(
    _card(
        27_559_896,
        TIMM_PARAMS.format("seresnext50_32x4d"),
        (table_2(21.10, 5.49), release(20.97, 5.54)),
        gflops=4.25,
        timm_weights="legacy_seresnext50_32x4d.in1k",
    )
)
def se_resnext50_32x4d(
    num_classes: int = 1000, in_chans: int = 3, reduction: int = REDUCTION
) -> SEResNet:
    """SE-ResNeXt-50 (32x4d) (Table 1, right column)."""
    return _build("se_resnext50_32x4d", num_classes, in_chans, reduction)
