"""Network In Network: Lin, Chen and Yan, ICLR 2014 (arXiv:1312.4400), §3 and Fig. 2.

An mlpconv layer (§3.1) slides a small multilayer perceptron over the input: a convolution
followed by two 1x1 convolutions (the paper's "cascaded cross channel parametric pooling",
"cccp" in the authors' code), each with a ReLU. The last mlpconv layer makes one feature map
per class, and global average pooling turns the maps into the soft-max's input (§3.2): there
are no fully-connected layers. Dropout acts on the outputs of all but the last mlpconv
layer (§4.1).

The paper describes the models only in words; the layer sizes, poolings and initialisation
here are those of the authors' released Caffe models (Caffe Model Zoo: NIN-CIFAR10, gist
mavenlin/e56253735ef32c3c296d, and NIN-Imagenet, gist mavenlin/d802a5849de39225bcc6).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

import torch
from cnnzoo import ClassifierNet, FeatureInfo, ModelCard, PublishedError, variant
from torch import nn


class MlpConvSpec(NamedTuple):
    """One mlpconv layer of a released model, and what follows it."""

    kernel_size: int
    stride: int
    padding: int
    channels: tuple[int, int, int | None]  # conv, cccp1, cccp2; None: one map per class
    init_std: tuple[float, float, float]  # the Caffe gaussian fillers' std; biases at 0
    pool: str | None  # "max" or "avg", 3x3 with stride 2, after the layer
    dropout: bool  # dropout 0.5 after the layer (and its pooling)


# The CIFAR-10 model (Table 1's NIN): 192-160-96, 192-192-192, 192-192-10.
CIFAR10_LAYERS = (
    MlpConvSpec(5, 1, 2, (192, 160, 96), (0.05, 0.05, 0.05), "max", True),
    MlpConvSpec(5, 1, 2, (192, 192, 192), (0.05, 0.05, 0.05), "avg", True),
    MlpConvSpec(3, 1, 1, (192, 192, None), (0.05, 0.05, 0.05), None, False),
)

# The ImageNet model of the release: four mlpconv layers, 96, 256, 384 and 1024 channels,
# dropout only after the third layer's pooling.
IMAGENET_LAYERS = (
    MlpConvSpec(11, 4, 0, (96, 96, 96), (0.01, 0.05, 0.05), "max", False),
    MlpConvSpec(5, 1, 2, (256, 256, 256), (0.05, 0.05, 0.05), "max", False),
    MlpConvSpec(3, 1, 1, (384, 384, 384), (0.01, 0.05, 0.05), "max", True),
    MlpConvSpec(3, 1, 1, (1024, 1024, None), (0.05, 0.05, 0.01), None, False),
)


def pooling(kind: str) -> nn.Module:
    """3x3 pooling with stride 2, output size rounded up as Caffe does (32 -> 16 -> 8 on
    CIFAR-10, 54 -> 27 -> 13 -> 6 on ImageNet). Caffe's average pooling divides a window
    cut by the border by its size within the image, as torch's does with no padding."""
    if kind == "max":
        return nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)
    return nn.AvgPool2d(kernel_size=3, stride=2, ceil_mode=True)


class MlpConv(nn.Module):
    """§3.1's mlpconv layer: a convolution and two 1x1 convolutions, each with a ReLU."""

    def __init__(
        self,
        in_chans: int,
        channels: tuple[int, int, int],
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chans, channels[0], kernel_size, stride, padding)
        self.cccp1 = nn.Conv2d(channels[0], channels[1], 1)
        self.cccp2 = nn.Conv2d(channels[1], channels[2], 1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.conv(x))
        x = self.relu(self.cccp1(x))
        return self.relu(self.cccp2(x))


class NIN(ClassifierNet):
    """A stack of mlpconv layers; the last one's maps, one per class, are the category
    confidence maps of §3.2 (`forward_features`), and `forward_head` averages each globally.
    NIN has no layer between that average and the soft-max, so `pre_logits` is the same
    vector. The classifier is the last 1x1 convolution (`reset_classifier(0)` takes it out:
    the maps, and their averages, are then the ones before it)."""

    def __init__(
        self, layers: tuple[MlpConvSpec, ...], num_classes: int, in_chans: int = 3
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.last_init_std = layers[-1].init_std[2]
        modules: OrderedDict[str, nn.Module] = OrderedDict()
        self.feature_info = []
        channels, stride = in_chans, 1
        for index, spec in enumerate(layers, start=1):
            widths = tuple(num_classes if c is None else c for c in spec.channels)
            block = MlpConv(channels, widths, spec.kernel_size, spec.stride, spec.padding)
            for conv, std in zip(
                (block.conv, block.cccp1, block.cccp2), spec.init_std, strict=True
            ):
                nn.init.normal_(conv.weight, mean=0.0, std=std)
                nn.init.zeros_(conv.bias)
            modules[f"mlpconv{index}"] = block
            channels, stride = widths[2], stride * spec.stride
            self.feature_info.append(FeatureInfo(f"features.mlpconv{index}", channels, stride))
            if spec.pool is not None:
                modules[f"pool{index}"] = pooling(spec.pool)
                stride *= 2
            if spec.dropout:
                modules[f"dropout{index}"] = nn.Dropout(0.5)
        self.features = nn.Sequential(modules)
        self.classifier_name = f"features.mlpconv{len(layers)}.cccp2"
        self.num_features = self.head_hidden_size = channels
        # §3.2: "take the average of each feature map"; at the paper's input size this is the
        # release's 8x8 (CIFAR-10) or 6x6 (ImageNet) average pooling.
        self.global_pool = nn.AdaptiveAvgPool2d(1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.global_pool(x).flatten(1)

    def new_classifier(self, num_classes: int) -> nn.Module:
        last: MlpConv = self.features[-1]
        cccp2 = nn.Conv2d(last.cccp1.out_channels, num_classes, 1)
        nn.init.normal_(cccp2.weight, mean=0.0, std=self.last_init_std)
        nn.init.zeros_(cccp2.bias)
        return cccp2

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        super().reset_classifier(num_classes, global_pool)
        # The last maps are the classifier's, or without it cccp1's.
        last: MlpConv = self.features[-1]
        channels = num_classes or last.cccp1.out_channels
        self.num_features = self.head_hidden_size = channels
        info = self.feature_info[-1]
        self.feature_info[-1] = FeatureInfo(info.module, channels, info.stride)


PAPER = "Network In Network"
AUTHORS = "M. Lin, Q. Chen, S. Yan"
URL = "https://arxiv.org/abs/1312.4400"


@variant(
    ModelCard(
        paper=PAPER,
        authors=AUTHORS,
        year=2013,
        url=URL,
        input_size=(3, 32, 32),
        num_classes=10,
        published_params=966_986,
        params_source="count of the authors' released Caffe CIFAR-10 model (Caffe Model Zoo "
        "gist mavenlin/e56253735ef32c3c296d); the paper prints none",
        published_errors=(
            PublishedError(
                "CIFAR-10 test",
                top1=8.81,
                evaluation="with data augmentation (translation and horizontal flipping)",
                source="Table 1: NIN + Dropout + Data Augmentation",
            ),
            PublishedError(
                "CIFAR-10 test",
                top1=10.41,
                evaluation="no data augmentation",
                source="Table 1: NIN + Dropout",
            ),
        ),
        min_input_size=4,  # 4 -> 2 -> 1 through the two poolings
        notes="Layers, poolings and init of the authors' Caffe release: the second pooling "
        "averages where §4 speaks of max pooling; a ReLU follows the class maps too. Global "
        "average pooling is adaptive (the release's 8x8 pool at 32x32). The paper trains on "
        "globally contrast-normalised, ZCA-whitened images (§4.2).",
    )
)
def nin_cifar10(num_classes: int = 10, in_chans: int = 3) -> NIN:
    """NIN for CIFAR-10 (§4.2): three mlpconv layers, 192-160-96, 192-192-192 and
    192-192-10; 966,986 parameters with 10 classes."""
    return NIN(CIFAR10_LAYERS, num_classes, in_chans)


@variant(
    ModelCard(
        paper=PAPER,
        authors=AUTHORS,
        year=2013,
        url=URL,
        input_size=(3, 224, 224),
        num_classes=1000,
        published_params=7_595_176,
        params_source="count of the authors' released Caffe ImageNet model (Caffe Model Zoo "
        "gist mavenlin/d802a5849de39225bcc6, '29MB'); the paper has no ImageNet model",
        min_input_size=39,  # 39 -> 8 (conv1) -> 4 -> 2 -> 1 through the three poolings
        notes="Not in the paper, which reports no ImageNet result; the authors' release "
        "says only that it 'performs slightly better than AlexNet', so no error is quoted. "
        "Global average pooling is adaptive (the release's 6x6 pool at 224x224).",
    )
)
def nin_imagenet(num_classes: int = 1000, in_chans: int = 3) -> NIN:
    """The authors' NIN for ImageNet: four mlpconv layers of 96, 256, 384 and 1024 channels,
    11x11 stride-4 first convolution; 7,595,176 parameters with 1000 classes."""
    return NIN(IMAGENET_LAYERS, num_classes, in_chans)
