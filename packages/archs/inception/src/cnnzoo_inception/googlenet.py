"""GoogLeNet: Szegedy, Liu, Jia, Sermanet, Reed, Anguelov, Erhan, Vanhoucke and Rabinovich,
"Going Deeper with Convolutions", CVPR 2015 (arXiv:1409.4842), §4-5, Table 1 and Fig. 3.

    224x224x3 -> conv 7x7/2, 64 -> max pool 3x3/2 -> LRN                    112 -> 56
              -> conv 1x1, 64 -> conv 3x3, 192 -> LRN -> max pool 3x3/2      56 -> 28
              -> inception 3a, 3b -> max pool 3x3/2                          28 -> 14
              -> inception 4a .. 4e -> max pool 3x3/2                        14 -> 7
              -> inception 5a, 5b -> avg pool 7x7 -> dropout 40% -> linear   7 -> 1

Each Inception module (Fig. 2b) runs four branches side by side over the same input and
concatenates them: a 1x1 convolution; a 1x1 "reduce" then a 3x3; a 1x1 "reduce" then a
5x5; a 3x3 max pooling then a 1x1 "pool proj". Every convolution, the reductions and
projections included, is followed by a ReLU (§5).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from cnnzoo import FeatureInfo, ModelCard, PublishedError, variant
from torch import nn

from cnnzoo_inception.layers import Conv, ConvUnit, InceptionModule, Pool
from cnnzoo_inception.net import AuxClassifier, InceptionNet


@dataclass(frozen=True)
class InceptionRow:
    """One Inception row of Table 1: the number of filters in each branch."""

    n1x1: int
    n3x3_reduce: int
    n3x3: int
    n5x5_reduce: int
    n5x5: int
    pool_proj: int

    def branches(self) -> tuple[tuple, ...]:
        return (
            (Conv(self.n1x1, 1),),
            (Conv(self.n3x3_reduce, 1), Conv(self.n3x3, 3)),
            # A true 5x5, as Table 1 says (torchvision's GoogLeNet uses a 3x3 here).
            (Conv(self.n5x5_reduce, 1), Conv(self.n5x5, 5)),
            (Pool("max", 3, 1), Conv(self.pool_proj, 1)),
        )


MAX_POOL = "max pool 3x3/2"

# Table 1 from inception (3a) on: the module rows, and the pooling rows between them.
TABLE_1: tuple[tuple[str, InceptionRow | str], ...] = (
    ("inception3a", InceptionRow(64, 96, 128, 16, 32, 32)),  # 28x28x256
    ("inception3b", InceptionRow(128, 128, 192, 32, 96, 64)),  # 28x28x480
    ("pool3", MAX_POOL),
    ("inception4a", InceptionRow(192, 96, 208, 16, 48, 64)),  # 14x14x512
    ("inception4b", InceptionRow(160, 112, 224, 24, 64, 64)),  # 14x14x512
    ("inception4c", InceptionRow(128, 128, 256, 24, 64, 64)),  # 14x14x512
    ("inception4d", InceptionRow(112, 144, 288, 32, 64, 64)),  # 14x14x528
    ("inception4e", InceptionRow(256, 160, 320, 32, 128, 128)),  # 14x14x832
    ("pool4", MAX_POOL),
    ("inception5a", InceptionRow(256, 160, 320, 32, 128, 128)),  # 7x7x832
    ("inception5b", InceptionRow(384, 192, 384, 48, 128, 128)),  # 7x7x1024
)

# §5: the auxiliary classifiers sit on top of the outputs of 4a and 4d.
AUX_AFTER = ("inception4a", "inception4d")
AUX_LOSS_WEIGHT = 0.3  # §5: "their loss gets added to the total loss with a discount weight 0.3"

# The smallest input whose 4a and 4d maps still fill one 5x5 window of the auxiliary
# classifiers' pooling: 5x5 from 79x79 images.
MIN_INPUT_SIZE = 79


def max_pool() -> nn.MaxPool2d:
    # Rounding up, as in the authors' DistBelief/Caffe nets: 112 -> 56 -> 28 -> 14 -> 7.
    return nn.MaxPool2d(3, stride=2, ceil_mode=True)


def response_norm() -> nn.LocalResponseNorm:
    # The paper gives no constants; these are the BVLC Caffe reproduction's (bvlc_googlenet):
    # 5 maps, alpha 1e-4 (divided by n, as torch and Caffe both do), beta 0.75, k 1.
    return nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)


def _glorot(layer: nn.Conv2d | nn.Linear, bias: float) -> None:
    nn.init.xavier_uniform_(layer.weight)
    nn.init.constant_(layer.bias, bias)


def output_layer_init(layer: nn.Linear) -> None:
    _glorot(layer, bias=0.0)


class GoogLeNetAux(AuxClassifier):
    """§5, one auxiliary classifier: average pooling 5x5/3 (4x4 maps from 4a's and 4d's
    14x14), a 1x1 convolution of 128 filters with ReLU, a fully connected layer of 1024 units
    with ReLU, dropout of 70%, and a linear layer into the softmax."""

    linear_init = staticmethod(output_layer_init)
    head_hidden_size = 1024

    def __init__(self, in_chans: int, num_classes: int) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(5, stride=3)
        # Identity on the paper's 4x4 maps; lets the head take other input sizes.
        self.fit = nn.AdaptiveAvgPool2d(4)
        self.conv = ConvUnit(in_chans, Conv(128, 1))
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(0.7)
        self.fc = nn.Linear(1024, num_classes)
        self.linear_init(self.fc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(self.fit(self.pool(x)))
        return self.fc(self.dropout(self.relu(self.fc1(x.flatten(1)))))


class GoogLeNet(InceptionNet):
    """GoogLeNet as §5 and Table 1 describe it, with the stem of Fig. 3 (local response
    normalisation after the first pooling and after the second convolution), the two
    auxiliary classifiers on 4a and 4d, and dropout of 40% before the classifier."""

    def __init__(self, num_classes: int = 1000, in_chans: int = 3) -> None:
        stages: list[tuple[str, nn.Module]] = [
            ("conv1", ConvUnit(in_chans, Conv(64, 7, stride=2))),  # 112x112x64
            ("pool1", max_pool()),  # 56x56x64
            ("norm1", response_norm()),
            ("conv2_reduce", ConvUnit(64, Conv(64, 1))),  # Table 1's "#3x3 reduce" of conv2
            ("conv2", ConvUnit(64, Conv(192, 3))),  # 56x56x192
            ("norm2", response_norm()),
            ("pool2", max_pool()),  # 28x28x192
        ]
        channels = 192
        for name, row in TABLE_1:
            if row == MAX_POOL:
                stages.append((name, max_pool()))
            else:
                module = InceptionModule(channels, row.branches())
                stages.append((name, module))
                channels = module.out_chans
        widths = dict(
            (name, module.out_chans)
            for name, module in stages
            if isinstance(module, InceptionModule)
        )
        super().__init__(
            stages,
            num_features=channels,
            num_classes=num_classes,
            in_chans=in_chans,
            dropout=0.4,  # §5: "a dropout layer with 40% ratio of dropped outputs"
            feature_info=[
                FeatureInfo("features.conv1", 64, 2),
                FeatureInfo("features.norm2", 192, 4),
                FeatureInfo("features.inception3b", 480, 8),
                FeatureInfo("features.inception4e", 832, 16),
                FeatureInfo("features.inception5b", 1024, 32),
            ],
            aux={name: GoogLeNetAux(widths[name], num_classes) for name in AUX_AFTER},
            linear_init=output_layer_init,
        )
        self._init_weights()

    def _init_weights(self) -> None:
        # The paper trained with DistBelief and states no initialisation. We follow the BVLC
        # Caffe reproduction (bvlc_googlenet): Glorot ("xavier") weights, biases 0.2 in the
        # convolutions and hidden fully connected layers, 0 in the output layers.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                _glorot(module, bias=0.2)
        for head in self.aux.values():
            _glorot(head.fc1, bias=0.2)
            output_layer_init(head.fc)
        output_layer_init(self.fc)


def inference_params(model: InceptionNet) -> int:
    """Parameters of the network used at test time: §5 discards the auxiliary classifiers
    at inference, and the papers' counts leave them out."""
    aux = sum(p.numel() for p in model.aux.parameters())
    return sum(p.numel() for p in model.parameters()) - aux


@variant(
    ModelCard(
        paper="Going Deeper with Convolutions",
        authors="C. Szegedy, W. Liu, Y. Jia, P. Sermanet, S. Reed, D. Anguelov, D. Erhan, "
        "V. Vanhoucke, A. Rabinovich",
        year=2014,
        url="https://arxiv.org/abs/1409.4842",
        input_size=(3, 224, 224),
        num_classes=1000,
        published_params=13_378_280,
        params_source="our count of Table 1 with the two auxiliary classifiers of §5 "
        "(3,188,840 and 3,190,888), which the counter includes; the test-time network alone "
        "has 6,998,552, and Table 1's params column sums to 6,798K (in units of 1,024: 6.96M)",
        published_macs=1_500_000_000,
        macs_source="§5: 1.5 billion multiply-adds at inference (Table 1's ops column: 1,502M)",
        macs_tolerance=0.025,
        published_errors=(
            PublishedError(
                "ILSVRC-2014 val",
                top5=10.07,
                evaluation="1 model, 1 crop",
                source="Table 3",
            ),
            PublishedError(
                "ILSVRC-2014 val",
                top5=7.89,
                evaluation="1 model, 144 crops",
                source="Table 3",
            ),
            PublishedError(
                "ILSVRC-2014 test",
                top5=6.67,
                evaluation="7 models, 144 crops",
                source="Table 2 and Table 3",
            ),
        ),
        aux_loss_weight=AUX_LOSS_WEIGHT,
        min_input_size=MIN_INPUT_SIZE,
        notes="Not torchvision's googlenet, which uses 3x3 convolutions in the '5x5' branch, "
        "batch normalisation and no LRN: no equivalence is claimed. Parameters: the card's "
        "figure counts the auxiliary classifiers, which the paper's Table 1 leaves out (the "
        "family test checks the test-time count against Table 1 row by row). Table 1's "
        "conv1 row (2.7K parameters, 34M multiply-adds) is what a depthwise-separable 7x7 "
        "convolution with depth multiplier 8 costs, not the plain 7x7x3x64 convolution "
        "(9.4K, 118M) that Fig. 3 and the text describe and that we build; every other row "
        "matches ours, so our total is 1.58 billion multiply-adds against the paper's 1.5 "
        "(2.5% tolerance). LRN constants and the initialisation (Glorot, biases 0.2) are "
        "the BVLC Caffe reproduction's; the paper states neither. Aux heads: an adaptive "
        "pool after their 5x5/3 pooling, identity at 224x224, lets other sizes through.",
    )
)
def googlenet(num_classes: int = 1000, in_chans: int = 3) -> GoogLeNet:
    """GoogLeNet of Szegedy et al. 2014 (Table 1, Fig. 3), with true 5x5 convolutions and
    the two auxiliary classifiers of §5 (used in training only)."""
    return GoogLeNet(num_classes=num_classes, in_chans=in_chans)
