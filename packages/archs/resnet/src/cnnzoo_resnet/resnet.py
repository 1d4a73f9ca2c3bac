"""ResNet: He, Zhang, Ren and Sun, "Deep Residual Learning for Image Recognition", CVPR 2016
(arXiv:1512.03385), §3 and Table 1.

A building block computes y = F(x, {W_i}) + x (Eq. 1), or F(x) + W_s x where the dimensions
change (Eq. 2), and a ReLU follows the addition (Fig. 2). BatchNorm follows every convolution,
before its activation (§3.4).

    Table 1     output   18-layer   34-layer   50-layer      101-layer     152-layer
    conv1       112      7x7, 64, stride 2
    conv2_x      56      3x3 max pool, stride 2, then [64-wide blocks] x 2, 3, 3, 3, 3
    conv3_x      28      [128-wide blocks] x 2, 4, 4, 4, 8
    conv4_x      14      [256-wide blocks] x 2, 6, 6, 23, 36
    conv5_x       7      [512-wide blocks] x 2, 3, 3, 3, 3
                  1      average pool, 1000-d fc, softmax

18 and 34 layers stack `BasicBlock`s (two 3x3 convolutions, Fig. 5 left); 50, 101 and 152
stack `Bottleneck`s (1x1, 3x3, 1x1 with four times the width out, Fig. 5 right). conv3_1,
conv4_1 and conv5_1 downsample with a stride of 2.

The CIFAR-10 networks of §4.2 use the same blocks on a 3x3, 16-filter first layer and three
stages of 16, 32 and 64 filters, with no max pool.

To build another block on this skeleton (SE-ResNet's, say), subclass `BasicBlock` or
`Bottleneck` and hand the class to `ResNet(block, layers, ...)`; see the package README.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import ClassVar, Literal, Protocol

import torch
import torch.nn.functional as F
from cnnzoo import ClassifierNet, FeatureInfo, PooledClassifierNet
from torch import nn

# §3.3, "Identity vs. Projection Shortcuts" (Table 3): where a block changes the dimensions,
# A pads the identity with zeros (no parameters anywhere), B projects (Eq. 2) and keeps the
# identity elsewhere, C projects in every block.
ShortcutOption = Literal["A", "B", "C"]
Dataset = Literal["imagenet", "cifar"]

# Table 1: the block and the number of blocks of conv2_x, conv3_x, conv4_x and conv5_x.
IMAGENET_WIDTHS = (64, 128, 256, 512)
# §4.2: "the numbers of filters are {16, 32, 64} respectively" on 32, 16 and 8 pixel maps.
CIFAR_WIDTHS = (16, 32, 64)


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    # No bias: the BatchNorm after each convolution (§3.4) has its own shift.
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class ZeroPadIdentity(nn.Module):
    """Option A (§3.3): the identity, taken every `stride` pixels where the block downsamples,
    with zero maps appended for the extra channels. No parameters."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ValueError("a zero-padded identity cannot reduce the channels")
        self.extra_channels = out_channels - in_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))

    def extra_repr(self) -> str:
        return f"stride={self.stride}, extra_channels={self.extra_channels}"


class Projection(nn.Sequential):
    """Options B and C (§3.3): W_s x of Eq. (2), a 1x1 convolution with the block's stride,
    followed by BatchNorm like every convolution of the paper."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__(
            OrderedDict(
                conv=conv1x1(in_channels, out_channels, stride),
                bn=nn.BatchNorm2d(out_channels),
            )
        )


def make_shortcut(
    in_channels: int, out_channels: int, stride: int, option: ShortcutOption
) -> nn.Module:
    """The shortcut of one block under option A, B or C (§3.3)."""
    if option not in ("A", "B", "C"):
        raise ValueError(f"shortcut option must be 'A', 'B' or 'C' (§3.3); got {option!r}")
    changes = stride != 1 or in_channels != out_channels
    if option == "C" or (option == "B" and changes):
        return Projection(in_channels, out_channels, stride)
    if changes:
        return ZeroPadIdentity(in_channels, out_channels, stride)
    return nn.Identity()


class Block(Protocol):
    """What `ResNet` asks of a block class: `block(in_channels, width, stride, shortcut)`
    gives a module whose output has `width * block.expansion` channels."""

    expansion: int

    def __call__(
        self, in_channels: int, width: int, stride: int, shortcut: ShortcutOption
    ) -> nn.Module: ...


class BasicBlock(nn.Module):
    """Fig. 2 and Fig. 5 (left): two 3x3 convolutions, each with BatchNorm, a ReLU between
    them and one after the addition. `width` is the block's number of filters (64 in
    conv2_x); the first convolution carries the stride."""

    expansion: ClassVar[int] = 1

    def __init__(
        self, in_channels: int, width: int, stride: int = 1, shortcut: ShortcutOption = "B"
    ) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = conv3x3(in_channels, width, stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = make_shortcut(in_channels, out_channels, stride, shortcut)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """F(x) of Eq. (1), before the addition."""
        out = self.relu(self.bn1(self.conv1(x)))
        return self.bn2(self.conv2(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.residual(x) + self.shortcut(x))


class PlainBlock(BasicBlock):
    """Fig. 3 (middle): the same two 3x3 layers with no shortcut, for the plain networks of
    the degradation experiment (Table 2, Fig. 4 and Fig. 6 left). Same parameters as a
    residual block with option A shortcuts."""

    def __init__(
        self, in_channels: int, width: int, stride: int = 1, shortcut: ShortcutOption = "A"
    ) -> None:
        # Whatever the option asked, a plain block has no shortcut at all.
        super().__init__(in_channels, width, stride, shortcut="A")
        del self.shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.residual(x))


class Bottleneck(nn.Module):
    """Fig. 5 (right): 1x1 (reduce to `width`), 3x3 (`width`), 1x1 (restore to 4 x
    `width`), each with BatchNorm, ReLUs between them and after the addition.

    As in the paper (and its released Caffe models, res3a_branch2a), the stride of conv3_1,
    conv4_1 and conv5_1 sits on the first 1x1 convolution. `BottleneckV1_5` moves it."""

    expansion: ClassVar[int] = 4
    stride_on_3x3: ClassVar[bool] = False

    def __init__(
        self, in_channels: int, width: int, stride: int = 1, shortcut: ShortcutOption = "B"
    ) -> None:
        super().__init__()
        out_channels = width * self.expansion
        stride_1x1, stride_3x3 = (1, stride) if self.stride_on_3x3 else (stride, 1)
        self.conv1 = conv1x1(in_channels, width, stride_1x1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride_3x3)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, out_channels)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = make_shortcut(in_channels, out_channels, stride, shortcut)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """F(x) of Eq. (1), before the addition."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.residual(x) + self.shortcut(x))


class BottleneckV1_5(Bottleneck):
    """ "ResNet v1.5": the bottleneck with the stride on the 3x3 convolution, as in
    fb.resnet.torch and torchvision. Not in the paper: a 1x1 convolution with stride 2 skips
    three quarters of its input, the 3x3 one sees all of it, for ~0.3 GFLOPs more."""

    stride_on_3x3: ClassVar[bool] = True


class ResNet(PooledClassifierNet):
    """A residual network of `block`s: `layers[i]` blocks in stage i, as in Table 1
    (`dataset="imagenet"`: 7x7 first layer and max pool, stages of 64, 128, 256 and 512
    filters) or §4.2 (`dataset="cifar"`: 3x3 first layer, stages of 16, 32 and 64 filters).
    Every stage after the first halves the map in its first block.

    Stages are named as Table 1 names them: conv1, conv2_x, conv3_x, ...
    """

    def __init__(
        self,
        block: Block,
        layers: Sequence[int],
        num_classes: int = 1000,
        in_chans: int = 3,
        shortcut: ShortcutOption = "B",
        dataset: Dataset = "imagenet",
    ) -> None:
        super().__init__()
        widths = {"imagenet": IMAGENET_WIDTHS, "cifar": CIFAR_WIDTHS}[dataset]
        if len(layers) != len(widths):
            raise ValueError(f"{dataset} ResNets have {len(widths)} stages; got {layers}")
        self.num_classes = num_classes
        self.in_chans = in_chans
        stem_width = widths[0]
        if dataset == "imagenet":
            # Table 1, conv1: 7x7, 64, stride 2; then conv2_x's 3x3 max pool, stride 2.
            self.conv1 = self._stem(in_chans, stem_width, kernel_size=7, stride=2)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
            self.feature_info = [FeatureInfo("conv1", stem_width, 2)]
            stride = 4
        else:
            # §4.2: "The first layer is 3x3 convolutions", 16 filters, on 32x32 images.
            self.conv1 = self._stem(in_chans, stem_width, kernel_size=3, stride=1)
            self.maxpool = nn.Identity()
            self.feature_info = [FeatureInfo("conv1", stem_width, 1)]
            stride = 1

        channels = stem_width
        self.stage_names: list[str] = []
        for index, (blocks, width) in enumerate(zip(layers, widths, strict=True)):
            stage_stride = 1 if index == 0 else 2
            stride *= stage_stride
            name = f"conv{index + 2}_x"
            units = []
            for unit in range(blocks):
                unit_stride = stage_stride if unit == 0 else 1
                first_unit = index == 0 and unit == 0
                units.append(self._unit(block, channels, width, unit_stride, shortcut, first_unit))
                channels = width * block.expansion
            self.add_module(name, nn.Sequential(*units))
            self.stage_names.append(name)
            self.feature_info.append(FeatureInfo(name, channels, stride))

        self.build_head(channels, num_classes)  # Table 1: "average pool, 1000-d fc"
        self._init_weights()

    @staticmethod
    def _stem(in_chans: int, width: int, kernel_size: int, stride: int) -> nn.Sequential:
        conv = nn.Conv2d(
            in_chans, width, kernel_size, stride=stride, padding=kernel_size // 2, bias=False
        )
        return nn.Sequential(
            OrderedDict(conv=conv, bn=nn.BatchNorm2d(width), relu=nn.ReLU(inplace=True))
        )

    def _unit(
        self,
        block: Block,
        in_channels: int,
        width: int,
        stride: int,
        shortcut: ShortcutOption,
        first_unit: bool,
    ) -> nn.Module:
        """One block; `first_unit` marks the network's first (pre-activation nets use it)."""
        return block(in_channels, width, stride, shortcut)

    # §3.4: "We initialize the weights as in [13]": [13]'s Eq. (10), zero-mean Gaussian with
    # std sqrt(2 / n), n = k^2 c the fan-in of the filter.
    he_init_mode: ClassVar[Literal["fan_in", "fan_out"]] = "fan_in"

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode=self.he_init_mode, nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        # The paper says nothing of the classifier: torch's default initialisation.

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))
        for name in self.stage_names:
            x = self.get_submodule(name)(x)
        return x


def start_running_statistics(model: ClassifierNet, height: int, width: int) -> None:
    """Start every BatchNorm's running statistics at those of one batch of noise, N(0, 1)
    images as normalised ones are, instead of torch's placeholder (mean 0, variance 1).

    Training never reads running statistics (it normalises with each batch's own), so this
    leaves the paper's training untouched; it only gives eval mode something true to use
    before any training. With the placeholder, eval-mode BatchNorm is the identity, and
    under He initialisation each residual unit then about doubles its input: after the
    hundreds of units of ResNet-1202 or pre-activation ResNet-1001 the sum passes float32's
    largest number (about 2^128), and inf - inf gives NaN logits. Measured statistics keep
    each unit's branch at unit scale, as training does.
    """
    reference = next(model.parameters())
    if reference.device.type == "meta":  # nothing to measure; a model built for counting
        return
    noise = torch.randn(
        1, model.in_chans, height, width, generator=torch.Generator().manual_seed(0)
    ).to(reference)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average: after one batch, that batch's statistics
    training = model.training
    try:
        with torch.no_grad():
            model.train().forward_features(noise)
    finally:
        model.train(training)
        for norm, momentum in zip(norms, momenta, strict=True):
            norm.momentum = momentum
            norm.num_batches_tracked.zero_()


_TORCHVISION_KEY = re.compile(
    r"^(?:(?P<stem>conv1|bn1)|layer(?P<stage>[1-4])\.(?P<unit>\d+)\."
    r"(?:(?P<layer>(?:conv|bn)[1-3])|downsample\.(?P<down>[01]))|(?P<fc>fc))"
    r"\.(?P<param>\w+)$"
)


def from_torchvision_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict of a torchvision ResNet renamed for ours: torchvision's `resnet18` and
    `resnet34` load into `resnet18` and `resnet34`, its `resnet50`, `resnet101` and
    `resnet152` (stride on the 3x3) into `resnet50_v1_5`, `resnet101_v1_5`, `resnet152_v1_5`:

        model.load_state_dict(from_torchvision_state_dict(weights.get_state_dict()))
    """
    renamed = {}
    for key, value in state_dict.items():
        match = _TORCHVISION_KEY.match(key)
        if match is None:
            raise KeyError(
                f"{key!r} is not a parameter of a torchvision ResNet (conv1, bn1, layer1-4, "
                f"fc); is this the state dict of another model?"
            )
        part = match.groupdict()
        if part["stem"]:
            module = "conv1." + {"conv1": "conv", "bn1": "bn"}[part["stem"]]
        elif part["fc"]:
            module = "fc"
        else:
            inner = part["layer"] or {"0": "shortcut.conv", "1": "shortcut.bn"}[part["down"]]
            module = f"conv{int(part['stage']) + 1}_x.{part['unit']}.{inner}"
        renamed[f"{module}.{part['param']}"] = value
    return renamed
