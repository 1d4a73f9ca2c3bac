"""Inception-v3: Szegedy, Vanhoucke, Ioffe, Shlens and Wojna, "Rethinking the Inception
Architecture for Computer Vision", CVPR 2016 (arXiv:1512.00567), §3-7 and Table 1.

    299x299x3 -> conv 3x3/2, 32 -> conv 3x3, 32 -> conv padded 3x3, 64 -> max pool 3x3/2
              -> conv 1x1, 80 -> conv 3x3, 192 -> max pool 3x3/2             299 -> 35
              -> 3 x Inception as in Fig. 5 (35x35)
              -> grid reduction (Fig. 10)                                     35 -> 17
              -> 4 x Inception as in Fig. 6, n = 7 (17x17) -> auxiliary classifier
              -> grid reduction (Fig. 10)                                     17 -> 8
              -> 2 x Inception as in Fig. 7 (8x8) -> avg pool -> linear        8 -> 1

The paper gives the modules' kinds but not their filter counts; those are the authors'
TensorFlow release's, which torchvision ports as `inception_v3`. We follow the release
(and torchvision, see `from_torchvision_state_dict`) where it departs from Table 1 and the
figures; the card's notes list where.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from cnnzoo import FeatureInfo, ModelCard, PretrainedWeights, PublishedError, variant
from torch import nn

from cnnzoo_inception.layers import Branch, Conv, ConvUnit, Fork, InceptionModule, Pool
from cnnzoo_inception.net import AuxClassifier, InceptionNet, our_state_keys, rename_in_order

BN_EPS = 1e-3  # the release's (and torchvision's) batch-norm epsilon

# torchvision's port averages over the whole 3x3 window at the borders, padding included
# (the TensorFlow release leaves the padding out); we follow torchvision, whose weights these
# are, so that they load and give the same outputs.
AVG_POOL = Pool("avg", 3, 1, count_include_pad=True)
MAX_POOL_2 = Pool("max", 3, 2, valid=True)


def figure_5(pool_proj: int) -> tuple[Branch, ...]:
    """Fig. 5, 35x35: "each 5x5 convolution replaced by two 3x3" in one branch; the release
    keeps a 1x1 -> 5x5 branch beside it."""
    return (
        (Conv(64, 1),),
        (Conv(48, 1), Conv(64, 5)),
        (Conv(64, 1), Conv(96, 3), Conv(96, 3)),
        (AVG_POOL, Conv(pool_proj, 1)),
    )


def figure_6(n7: int) -> tuple[Branch, ...]:
    """Fig. 6, 17x17: n x n convolutions factorised into 1 x n and n x 1, n = 7 (§6)."""
    return (
        (Conv(192, 1),),
        (Conv(n7, 1), Conv(n7, (1, 7)), Conv(192, (7, 1))),
        (Conv(n7, 1), Conv(n7, (7, 1)), Conv(n7, (1, 7)), Conv(n7, (7, 1)), Conv(192, (1, 7))),
        (AVG_POOL, Conv(192, 1)),
    )


def figure_7() -> tuple[Branch, ...]:
    """Fig. 7, 8x8: the filter bank expanded, each 3x3 forking into a 1x3 and a 3x1 "to
    promote high dimensional representations" (§6)."""
    fork = Fork((Conv(384, (1, 3)), Conv(384, (3, 1))))
    return (
        (Conv(320, 1),),
        (Conv(384, 1), fork),
        (Conv(448, 1), Conv(384, 3), fork),
        (AVG_POOL, Conv(192, 1)),
    )


# Fig. 10: the grid halved by stride-2 convolutions beside a stride-2 pooling, their
# outputs concatenated, so that the representation does not pass a bottleneck (§5).
REDUCTION_35_TO_17: tuple[Branch, ...] = (
    (Conv(384, 3, 2, valid=True),),
    (Conv(64, 1), Conv(96, 3), Conv(96, 3, 2, valid=True)),
    (MAX_POOL_2,),
)
REDUCTION_17_TO_8: tuple[Branch, ...] = (
    (Conv(192, 1), Conv(320, 3, 2, valid=True)),
    (Conv(192, 1), Conv(192, (1, 7)), Conv(192, (7, 1)), Conv(192, 3, 2, valid=True)),
    (MAX_POOL_2,),
)

# Table 1, the stem: (name, layer). "V" convolutions are unpadded.
STEM: tuple[tuple[str, Conv | Pool], ...] = (
    ("conv2d_1a", Conv(32, 3, 2, valid=True)),  # 149x149x32
    ("conv2d_2a", Conv(32, 3, valid=True)),  # 147x147x32
    ("conv2d_2b", Conv(64, 3)),  # 147x147x64, "conv padded"
    ("maxpool_3a", MAX_POOL_2),  # 73x73x64
    ("conv2d_3b", Conv(80, 1)),  # 73x73x80
    ("conv2d_4a", Conv(192, 3, valid=True)),  # 71x71x192
    ("maxpool_5a", MAX_POOL_2),  # 35x35x192
)

# Table 1, the modules, named as in the release.
MODULES: tuple[tuple[str, tuple[Branch, ...]], ...] = (
    ("mixed_5b", figure_5(32)),  # 35x35x256
    ("mixed_5c", figure_5(64)),  # 35x35x288
    ("mixed_5d", figure_5(64)),  # 35x35x288
    ("mixed_6a", REDUCTION_35_TO_17),  # 17x17x768
    ("mixed_6b", figure_6(128)),
    ("mixed_6c", figure_6(160)),
    ("mixed_6d", figure_6(160)),
    ("mixed_6e", figure_6(192)),  # 17x17x768
    ("mixed_7a", REDUCTION_17_TO_8),  # 8x8x1280
    ("mixed_7b", figure_7()),  # 8x8x2048
    ("mixed_7c", figure_7()),  # 8x8x2048
)

AUX_AFTER = "mixed_6e"  # §7: one auxiliary classifier, "on top of the last 17x17 layer"
# The paper states no weight; the release's training script and torchvision's reference
# recipe weigh the auxiliary loss by 0.4.
AUX_LOSS_WEIGHT = 0.4

# mixed_6e's map must fill one window of the auxiliary head's 5x5/3 pooling: 5x5 from
# 107x107 images (the inference network alone would take 75x75).
MIN_INPUT_SIZE = 107


def truncated_normal(layer: nn.Conv2d | nn.Linear, std: float) -> None:
    """The release's initialiser: normal, redrawn beyond two standard deviations."""
    nn.init.trunc_normal_(layer.weight, std=std, a=-2 * std, b=2 * std)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


def classifier_init(layer: nn.Linear) -> None:
    truncated_normal(layer, 0.1)


def aux_classifier_init(layer: nn.Linear) -> None:
    truncated_normal(layer, 0.001)


class InceptionV3Aux(AuxClassifier):
    """§7 and Fig. 8: average pooling 5x5/3 (17x17 -> 5x5), a 1x1 convolution of 128, a 5x5
    convolution of 768 (a fully connected layer over the 5x5 map), and the linear classifier.
    Batch-normalised ("BN-auxiliary", §7 and Table 3)."""

    linear_init = staticmethod(aux_classifier_init)
    head_hidden_size = 768

    def __init__(self, in_chans: int, num_classes: int) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(5, stride=3)
        # Identity on the paper's 5x5 map (299x299 input); other input sizes are brought to
        # it, so the 5x5 convolution below always sees one whole map.
        self.fit = nn.AdaptiveAvgPool2d(5)
        self.conv0 = ConvUnit(in_chans, Conv(128, 1), BN_EPS)
        self.conv1 = ConvUnit(128, Conv(768, 5, valid=True), BN_EPS)
        self.fc = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(self.conv0(self.fit(self.pool(x))))
        return self.fc(x.flatten(1))


class InceptionV3(InceptionNet):
    """Inception-v3 (Table 1; Figs. 5, 6, 7 and 10), with its batch-normalised auxiliary
    classifier on the last 17x17 module (§7)."""

    def __init__(self, num_classes: int = 1000, in_chans: int = 3) -> None:
        stages: list[tuple[str, nn.Module]] = []
        channels = in_chans
        for name, layer in STEM:
            if isinstance(layer, Conv):
                stages.append((name, ConvUnit(channels, layer, BN_EPS)))
                channels = layer.out
            else:
                stages.append((name, layer.build()))
        for name, branches in MODULES:
            module = InceptionModule(channels, branches, BN_EPS)
            stages.append((name, module))
            channels = module.out_chans
        super().__init__(
            stages,
            num_features=channels,
            num_classes=num_classes,
            in_chans=in_chans,
            # Not in the paper; the release drops 20% before the classifier.
            dropout=0.2,
            feature_info=[
                FeatureInfo("features.conv2d_2b", 64, 2),
                FeatureInfo("features.conv2d_4a", 192, 4),
                FeatureInfo("features.mixed_5d", 288, 8),
                FeatureInfo("features.mixed_6e", 768, 16),
                FeatureInfo("features.mixed_7c", 2048, 32),
            ],
            aux={AUX_AFTER: InceptionV3Aux(768, num_classes)},
            linear_init=classifier_init,
        )
        self._init_weights()

    def _init_weights(self) -> None:
        # The release's (the paper states none): truncated normal, standard deviation 0.1;
        # 0.01 for the auxiliary head's 5x5 and 0.001 for its classifier. BN starts as the
        # identity.
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                truncated_normal(module, 0.1)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        aux = self.aux[AUX_AFTER]
        truncated_normal(aux.conv1.conv, 0.01)
        aux_classifier_init(aux.fc)


def from_torchvision_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict of `torchvision.models.inception_v3` (built with `aux_logits=True`)
    renamed for `inception_v3`. Use it with `transform_input=False` on torchvision's side:
    that option rescales the input inside the model, which is a data concern here."""
    aux = {k: v for k, v in state_dict.items() if k.startswith("AuxLogits.")}
    fc = {k: v for k, v in state_dict.items() if k.startswith("fc.")}
    body = {k: v for k, v in state_dict.items() if k not in aux and k not in fc}
    if not aux:
        raise KeyError(
            "this state dict has no AuxLogits: build torchvision's inception_v3 with "
            "aux_logits=True (its default)"
        )
    num_classes = state_dict["fc.weight"].shape[0] if "fc.weight" in state_dict else 1000
    ours = our_state_keys(inception_v3, num_classes)
    return rename_in_order({**body, **aux, **fc}, ours, "torchvision's inception_v3")


@variant(
    ModelCard(
        paper="Rethinking the Inception Architecture for Computer Vision",
        authors="C. Szegedy, V. Vanhoucke, S. Ioffe, J. Shlens, Z. Wojna",
        year=2015,
        url="https://arxiv.org/abs/1512.00567",
        input_size=(3, 299, 299),
        num_classes=1000,
        published_params=27_161_264,
        params_source="torchvision inception_v3 with its auxiliary classifier (the port of the "
        "authors' release); the abstract's 'less than 25 million' counts the inference "
        "network, 23,834,568 here",
        published_macs=5_000_000_000,
        macs_source="Abstract: 5 billion multiply-adds per inference (Table 3: 4.8 billion)",
        macs_tolerance=0.05,
        published_errors=(
            PublishedError(
                "ILSVRC-2012 val",
                top1=21.2,
                top5=5.6,
                evaluation="1 model, 1 crop",
                source="Table 3 (Inception-v3, BN-auxiliary)",
            ),
            PublishedError(
                "ILSVRC-2012 val",
                top1=19.47,
                top5=4.48,
                evaluation="1 model, 12 crops",
                source="Table 4",
            ),
            PublishedError(
                "ILSVRC-2012 val",
                top1=18.77,
                top5=4.2,
                evaluation="1 model, 144 crops",
                source="Table 4",
            ),
            PublishedError(
                "ILSVRC-2012 val",
                top1=17.2,
                top5=3.58,
                evaluation="4 models, 144 crops",
                source="Table 5",
            ),
        ),
        aux_loss_weight=AUX_LOSS_WEIGHT,
        min_input_size=MIN_INPUT_SIZE,
        weights=(
            # torchvision builds these weights' model with transform_input=True, which turns
            # ImageNet-normalised input into (x - 0.5) / 0.5 inside: the weights' own
            # normalisation, which ours takes directly.
            PretrainedWeights(
                "torchvision",
                "Inception_V3_Weights.IMAGENET1K_V1",
                "cnnzoo_inception.inception_v3:from_torchvision_state_dict",
                mean=(0.5, 0.5, 0.5),
                std=(0.5, 0.5, 0.5),
            ),
        ),
        notes="The paper gives no filter counts for its modules; they are the authors' "
        "TensorFlow release's, through torchvision's port, whose weights load with "
        "from_torchvision_state_dict and give the same outputs. Where the release departs "
        "from the paper we follow the release: the stem is conv 1x1 80 -> conv 3x3 192 -> "
        "max pool where Table 1 lists conv 3x3/1 80 -> conv 3x3/2 192; the 35x35 modules keep "
        "a 1x1 -> 5x5 branch beside Fig. 5's double 3x3; the auxiliary classifier batch-"
        "normalises its convolutions, not its fully connected layer. Border average pooling "
        "counts the padding, as torchvision does (TensorFlow does not). Our counter gives "
        "5.71 billion multiply-adds at 299x299 (torchvision's published 5.71 GFLOPS), above "
        "the abstract's 5 billion and Table 3's 4.8, hence the 5% tolerance. Dropout of 20% "
        "before the classifier is the release's; the paper states none. Label smoothing "
        "(§7) belongs to the loss, not the model.",
    )
)
def inception_v3(num_classes: int = 1000, in_chans: int = 3) -> InceptionV3:
    """Inception-v3 of Szegedy et al. 2015 (Table 1, Figs. 5-7, 10), with its
    auxiliary classifier (used in training only): 23,834,568 parameters at inference."""
    return InceptionV3(num_classes=num_classes, in_chans=in_chans)
