"""AlexNet: Krizhevsky, Sutskever and Hinton, "ImageNet Classification with Deep
Convolutional Neural Networks", NIPS 2012, §3 and Fig. 2.

    224x224x3 -> conv1: 96 kernels 11x11x3, stride 4 -> ReLU, response norm, max pool 55 -> 27
              -> conv2: 256 kernels 5x5x48           -> ReLU, response norm, max pool 27 -> 13
              -> conv3: 384 kernels 3x3x256          -> ReLU                             13
              -> conv4: 384 kernels 3x3x192          -> ReLU                             13
              -> conv5: 256 kernels 3x3x192          -> ReLU, max pool                   13 -> 6
              -> fc6: 4096 -> fc7: 4096 -> fc8: 1000-way softmax

The net was spread over two GPUs, each holding half of every layer's kernels, and "the
GPUs communicate only in certain layers" (§3.2): a kernel of conv2, conv4 or conv5 sees only
its own GPU's half of the maps below it (hence 5x5x48 and 3x3x192), while conv3 and the
fully-connected layers see both halves. On one device the split is `groups=2`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

import torch
from cnnzoo import (
    ClassifierNet,
    FeatureInfo,
    ModelCard,
    PretrainedWeights,
    PublishedError,
    variant,
)
from torch import nn

from cnnzoo_alexnet.layers import LocalResponseNorm

# pool5 needs a 3x3 conv5 map, so a 7x7 map after conv2, so 15x15 after conv1, which
# conv1 (11x11, stride 4, padding 2) gives from 63x63 images and no smaller.
MIN_INPUT_SIZE = 63


def conv_layer(
    in_chans: int,
    kernels: int,
    kernel_size: int,
    stride: int = 1,
    padding: int = 0,
    groups: int = 1,
    norm: nn.Module | None = None,
) -> nn.Sequential:
    """One convolutional layer as the paper counts it: the kernels, their ReLU (§3.1) and,
    where §3.3 puts one, the response normalisation."""
    layer = OrderedDict(
        conv=nn.Conv2d(in_chans, kernels, kernel_size, stride, padding, groups=groups),
        relu=nn.ReLU(inplace=True),
    )
    if norm is not None:
        layer["norm"] = norm
    return nn.Sequential(layer)


def overlapping_pool() -> nn.MaxPool2d:
    """§3.4: 3x3 pooling windows spaced 2 apart, which overlap (s < z)."""
    return nn.MaxPool2d(kernel_size=3, stride=2)


class _AlexNetBase(ClassifierNet):
    """What both AlexNets share: `features` ends with pool5; fc6, fc7 and fc8 follow."""

    features: nn.Sequential
    avgpool: nn.AdaptiveAvgPool2d
    fc6: nn.Sequential
    fc7: nn.Sequential
    fc8: nn.Linear
    classifier_name = "fc8"
    num_features = 256  # conv5's kernels
    head_hidden_size = 4096  # fc7's units

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        # 6x6 at 224x224, where the average pool does nothing; it lets other sizes through.
        x = self.fc7(self.fc6(self.avgpool(x).flatten(1)))
        return x if pre_logits else self.fc8(x)


class AlexNet(_AlexNetBase):
    """AlexNet as the paper describes it (§3.5): the two-GPU split as groups=2, response
    normalisation after conv1 and conv2, overlapping pooling, dropout in fc6 and fc7, and
    the initialisation of §5."""

    def __init__(self, num_classes: int = 1000, in_chans: int = 3) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.feature_info = [
            FeatureInfo("features.conv1", 96, 4),
            FeatureInfo("features.conv2", 256, 8),
            FeatureInfo("features.conv3", 384, 16),
            FeatureInfo("features.conv4", 384, 16),
            FeatureInfo("features.conv5", 256, 16),
        ]

        def response_norm() -> LocalResponseNorm:
            # §3.3: k = 2, n = 5, alpha = 1e-4, beta = 0.75, over each GPU's own kernels.
            return LocalResponseNorm(size=5, alpha=1e-4, beta=0.75, k=2.0, groups=2)

        self.features = nn.Sequential(
            OrderedDict(
                # The paper's 224x224 input with no padding would give 54x54 maps, not the
                # 55x55 of Fig. 2; a 2-pixel border gives 55 (and is what torchvision uses).
                conv1=conv_layer(in_chans, 96, 11, stride=4, padding=2, norm=response_norm()),
                pool1=overlapping_pool(),
                # conv2..conv5 are padded to keep their maps' size: 27x27, then 13x13 (Fig. 2).
                conv2=conv_layer(96, 256, 5, padding=2, groups=2, norm=response_norm()),
                pool2=overlapping_pool(),
                conv3=conv_layer(256, 384, 3, padding=1),
                conv4=conv_layer(384, 384, 3, padding=1, groups=2),
                conv5=conv_layer(384, 256, 3, padding=1, groups=2),
                pool5=overlapping_pool(),
            )
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        # §4.2: dropout sets "the output of each hidden neuron" to zero with probability 0.5
        # "in the first two fully-connected layers", so it acts on fc6's and fc7's outputs.
        self.fc6 = self._hidden_layer(256 * 6 * 6)
        self.fc7 = self._hidden_layer(4096)
        self.fc8 = self.new_classifier(num_classes)
        self._init_weights()

    @staticmethod
    def _hidden_layer(in_features: int) -> nn.Sequential:
        return nn.Sequential(
            OrderedDict(
                fc=nn.Linear(in_features, 4096),
                relu=nn.ReLU(inplace=True),
                dropout=nn.Dropout(0.5),
            )
        )

    def new_classifier(self, num_classes: int) -> nn.Module:
        fc8 = nn.Linear(4096, num_classes)
        nn.init.normal_(fc8.weight, std=0.01)
        nn.init.zeros_(fc8.bias)
        return fc8

    def _init_weights(self) -> None:
        # §5: every weight from N(0, 0.01). The biases of conv2, conv4, conv5 and of the
        # fully-connected hidden layers start at 1 to give the ReLUs positive inputs early in
        # learning; the others (conv1, conv3 and the output layer fc8) at 0.
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                nn.init.normal_(module.weight, mean=0.0, std=0.01)
                nn.init.zeros_(module.bias)
        features = self.features
        for layer in (features.conv2.conv, features.conv4.conv, features.conv5.conv):
            nn.init.ones_(layer.bias)
        for layer in (self.fc6.fc, self.fc7.fc):
            nn.init.ones_(layer.bias)


class AlexNetOWT(_AlexNetBase):
    """The one-GPU AlexNet of "One weird trick for parallelizing convolutional neural
    networks" (Krizhevsky 2014), as torchvision ships it as `torchvision.models.alexnet`:
    64-192-384-256-256 kernels, no response normalisation, no grouping, dropout before fc6
    and fc7, and torch's default initialisation."""

    def __init__(self, num_classes: int = 1000, in_chans: int = 3) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.feature_info = [
            FeatureInfo("features.conv1", 64, 4),
            FeatureInfo("features.conv2", 192, 8),
            FeatureInfo("features.conv3", 384, 16),
            FeatureInfo("features.conv4", 256, 16),
            FeatureInfo("features.conv5", 256, 16),
        ]
        self.features = nn.Sequential(
            OrderedDict(
                conv1=conv_layer(in_chans, 64, 11, stride=4, padding=2),
                pool1=overlapping_pool(),
                conv2=conv_layer(64, 192, 5, padding=2),
                pool2=overlapping_pool(),
                conv3=conv_layer(192, 384, 3, padding=1),
                conv4=conv_layer(384, 256, 3, padding=1),
                conv5=conv_layer(256, 256, 3, padding=1),
                pool5=overlapping_pool(),
            )
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.fc6 = self._hidden_layer(256 * 6 * 6)
        self.fc7 = self._hidden_layer(4096)
        self.fc8 = nn.Linear(4096, num_classes)

    @staticmethod
    def _hidden_layer(in_features: int) -> nn.Sequential:
        return nn.Sequential(
            OrderedDict(
                dropout=nn.Dropout(0.5),
                fc=nn.Linear(in_features, 4096),
                relu=nn.ReLU(inplace=True),
            )
        )

    def new_classifier(self, num_classes: int) -> nn.Module:
        return nn.Linear(4096, num_classes)


# torchvision's `alexnet` module names -> alexnet_owt's.
TORCHVISION_KEYS = {
    "features.0": "features.conv1.conv",
    "features.3": "features.conv2.conv",
    "features.6": "features.conv3.conv",
    "features.8": "features.conv4.conv",
    "features.10": "features.conv5.conv",
    "classifier.1": "fc6.fc",
    "classifier.4": "fc7.fc",
    "classifier.6": "fc8",
}


def from_torchvision_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict of `torchvision.models.alexnet` renamed for `alexnet_owt`, e.g. for
    torchvision's ImageNet weights:

        model.load_state_dict(from_torchvision_state_dict(weights.get_state_dict()))
    """
    renamed = {}
    for key, value in state_dict.items():
        module, _, param = key.rpartition(".")
        if module not in TORCHVISION_KEYS:
            raise KeyError(
                f"{key!r} is not a parameter of torchvision's alexnet, whose layers are "
                f"{', '.join(TORCHVISION_KEYS)}; is this the state dict of another model?"
            )
        renamed[f"{TORCHVISION_KEYS[module]}.{param}"] = value
    return renamed


PAPER = "ImageNet Classification with Deep Convolutional Neural Networks"
AUTHORS = "A. Krizhevsky, I. Sutskever, G. E. Hinton"
URL = "https://papers.nips.cc/paper/4824-imagenet-classification-with-deep-convolutional-neural-networks"


@variant(
    ModelCard(
        paper=PAPER,
        authors=AUTHORS,
        year=2012,
        url=URL,
        input_size=(3, 224, 224),
        num_classes=1000,
        published_params=60_000_000,
        params_source="§ Abstract/§3: 60 million",
        published_errors=(
            PublishedError(
                "ILSVRC-2012 val",
                top1=40.7,
                top5=18.2,
                evaluation="10 crops averaged (§4.1)",
                source="Table 2: 1 CNN",
            ),
            PublishedError(
                "ILSVRC-2010 test",
                top1=37.5,
                top5=17.0,
                evaluation="10 crops averaged (§4.1)",
                source="Table 1: CNN",
            ),
        ),
        recipe="alexnet_imagenet",
        min_input_size=MIN_INPUT_SIZE,
        notes="The two GPUs' halves as groups=2 in conv2, conv4, conv5 and in the response "
        "normalisation of conv1 and conv2; conv1 padded by 2 to give the paper's 55x55 maps; "
        "an adaptive 6x6 average pool before fc6 (identity at 224x224) for other input sizes. "
        "60,965,224 parameters with 1000 classes.",
    )
)
def alexnet(num_classes: int = 1000, in_chans: int = 3) -> AlexNet:
    """AlexNet of Krizhevsky, Sutskever and Hinton 2012 (§3.5, Fig. 2): 60,965,224
    parameters with 1000 classes (the paper's "60 million")."""
    return AlexNet(num_classes=num_classes, in_chans=in_chans)


@variant(
    ModelCard(
        paper="One weird trick for parallelizing convolutional neural networks",
        authors="A. Krizhevsky",
        year=2014,
        url="https://arxiv.org/abs/1404.5997",
        input_size=(3, 224, 224),
        num_classes=1000,
        published_params=61_100_840,
        params_source="torchvision model zoo",
        published_errors=(
            PublishedError(
                "ILSVRC-2012 val",
                top1=43.45,
                top5=20.91,
                evaluation="1 centre crop 224 of 256",
                source="torchvision model zoo",
            ),
        ),
        recipe="alexnet_owt_imagenet",
        min_input_size=MIN_INPUT_SIZE,
        weights=(
            PretrainedWeights(
                "torchvision",
                "AlexNet_Weights.IMAGENET1K_V1",
                "cnnzoo_alexnet.alexnet:from_torchvision_state_dict",
            ),
        ),
        notes="Modern variant, not in the 2012 paper: torchvision's `alexnet`, one GPU, "
        "64-192-384-256-256 kernels, no response normalisation, no groups; torchvision's "
        "weights load through from_torchvision_state_dict. torchvision's current weights "
        "metadata quotes 56.522/79.066 accuracy (43.478/20.934 error).",
    )
)
def alexnet_owt(num_classes: int = 1000, in_chans: int = 3) -> AlexNetOWT:
    """The one-GPU AlexNet of Krizhevsky 2014 ("One weird trick", arXiv:1404.5997) that
    torchvision ships as `alexnet`: 61,100,840 parameters with 1000 classes."""
    return AlexNetOWT(num_classes=num_classes, in_chans=in_chans)
