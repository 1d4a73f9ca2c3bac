"""LeNet-5: LeCun, Bottou, Bengio and Haffner, "Gradient-Based Learning Applied to Document
Recognition", Proc. IEEE 86(11), 1998, §II.B and Fig. 2.

    input 32x32 -> C1: 6@28x28 (5x5 conv) -> S2: 6@14x14 (trainable subsampling)
    -> C3: 16@10x10 (5x5 conv, partial connections of Table I) -> S4: 16@5x5
    -> C5: 120@1x1 (5x5 conv) -> F6: 84 -> output: 10 Euclidean RBF units

Every unit up to F6 is squashed by the scaled tanh. 60,000 trainable parameters.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from cnnzoo import ClassifierNet, FeatureInfo, ModelCard, PublishedError, variant
from torch import nn

from cnnzoo_lenet.layers import (
    EuclideanRBF,
    PartialConv2d,
    ScaledTanh,
    Subsampling,
    _c3_connections,
    init_dense_fan_in_,
    map_criterion,
)

PAPER = "Gradient-Based Learning Applied to Document Recognition"
AUTHORS = "Y. LeCun, L. Bottou, Y. Bengio, P. Haffner"
URL = "https://doi.org/10.1109/5.726791"

# C1, S2, C3, S4, C5: the module, channels and total stride of each stage.
FEATURE_INFO = [
    FeatureInfo("features.c1", 6, 1),
    FeatureInfo("features.s2", 6, 2),
    FeatureInfo("features.c3", 16, 2),
    FeatureInfo("features.s4", 16, 4),
    FeatureInfo("features.c5", 120, 4),
]


class LeNet5(ClassifierNet):
    """LeNet-5 as the paper describes it: scaled tanh, trainable subsampling, C3's partial
    connections, and fixed Euclidean RBF output units."""

    classifier_name = "output"
    num_features = 120  # C5's units
    head_hidden_size = 84  # F6's units

    def __init__(self, num_classes: int = 10, in_chans: int = 1) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.feature_info = FEATURE_INFO
        self.features = nn.Sequential(
            OrderedDict(
                c1=nn.Sequential(nn.Conv2d(in_chans, 6, 5), ScaledTanh()),
                s2=Subsampling(6),
                c3=nn.Sequential(PartialConv2d(_c3_connections()), ScaledTanh()),
                s4=Subsampling(16),
                c5=nn.Sequential(nn.Conv2d(16, 120, 5), ScaledTanh()),
            )
        )
        self.f6 = nn.Sequential(nn.Linear(120, 84), ScaledTanh())
        self.output = EuclideanRBF(num_classes)
        for layer in (self.features.c1[0], self.features.c5[0], self.f6[0]):
            init_dense_fan_in_(layer)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.f6(x.flatten(1))
        return x if pre_logits else self.output(x)

    def new_classifier(self, num_classes: int) -> nn.Module:
        return EuclideanRBF(num_classes)

    def criterion(
        self, logits: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0
    ) -> torch.Tensor:
        return map_criterion(logits, target, label_smoothing)


class LeNet5ReLU(ClassifierNet):
    """The modern reading of LeNet-5 found in most tutorials, under its own name: ReLU,
    2x2 max pooling, a fully connected C3 and a linear softmax classifier."""

    classifier_name = "output"
    num_features = 120
    head_hidden_size = 84

    def __init__(self, num_classes: int = 10, in_chans: int = 1) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.feature_info = FEATURE_INFO
        self.features = nn.Sequential(
            OrderedDict(
                c1=nn.Sequential(nn.Conv2d(in_chans, 6, 5), nn.ReLU(inplace=True)),
                s2=nn.MaxPool2d(2),
                c3=nn.Sequential(nn.Conv2d(6, 16, 5), nn.ReLU(inplace=True)),
                s4=nn.MaxPool2d(2),
                c5=nn.Sequential(nn.Conv2d(16, 120, 5), nn.ReLU(inplace=True)),
            )
        )
        self.f6 = nn.Sequential(nn.Linear(120, 84), nn.ReLU(inplace=True))
        self.output = nn.Linear(84, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.f6(x.flatten(1))
        return x if pre_logits else self.output(x)

    def new_classifier(self, num_classes: int) -> nn.Module:
        return nn.Linear(84, num_classes)


@variant(
    ModelCard(
        paper=PAPER,
        authors=AUTHORS,
        year=1998,
        url=URL,
        input_size=(1, 32, 32),
        num_classes=10,
        published_params=60_000,
        params_source="§II.B: C1 156, S2 12, C3 1,516, S4 32, C5 48,120, F6 10,164",
        published_errors=(
            PublishedError("MNIST", top1=0.95, source="§III.C, Fig. 14: no distortions"),
            PublishedError(
                "MNIST",
                top1=0.8,
                source="§III.C: with distortions (540k images)",
                recipe="lenet5_mnist_distorted",
            ),
        ),
        recipe="lenet5_mnist",
        fixed_input_size=True,
        notes="Output RBF codes are hand-drawn 7x12 digit bitmaps, as in the paper's Fig. 3; "
        "trained with the paper's MAP criterion (eq. 9, with j = 10) by SGD with momentum "
        "instead of the paper's stochastic diagonal Levenberg-Marquardt.",
    )
)
def lenet5(num_classes: int = 10, in_chans: int = 1) -> LeNet5:
    """LeNet-5 of LeCun et al. 1998 (§II.B), 60,000 parameters."""
    return LeNet5(num_classes=num_classes, in_chans=in_chans)


@variant(
    ModelCard(
        paper=PAPER,
        authors=AUTHORS,
        year=1998,
        url=URL,
        input_size=(1, 32, 32),
        num_classes=10,
        published_params=61_706,
        params_source="not in the paper: LeNet-5's sizes with a full C3 (6x16 5x5 kernels) and "
        "a linear output layer in place of the RBF units",
        recipe="lenet5_relu_mnist",
        fixed_input_size=True,
        notes="Modern variant, not in the paper: ReLU, max pooling, full C3, linear classifier "
        "(61,706 parameters).",
    )
)
def lenet5_relu(num_classes: int = 10, in_chans: int = 1) -> LeNet5ReLU:
    """LeNet-5 with ReLU, max pooling, a full C3 and a linear classifier (not in the paper)."""
    return LeNet5ReLU(num_classes=num_classes, in_chans=in_chans)
