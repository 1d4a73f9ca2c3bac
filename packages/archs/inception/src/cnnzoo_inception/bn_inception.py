"""BN-Inception: Ioffe and Szegedy, "Batch Normalization: Accelerating Deep Network Training
by Reducing Internal Covariate Shift", ICML 2015 (arXiv:1502.03167), §4.2 and Appendix,
Figure 5.

GoogLeNet (Szegedy et al. 2014) with batch normalisation before every ReLU, and the changes
the Appendix lists: each 5x5 convolution replaced by two 3x3 ("double 3x3", up to 128
filters); three 28x28 modules instead of two; average or max pooling inside the modules;
and no pooling layers between the modules: modules 3c and 4e halve the grid themselves,
their 3x3 and double-3x3 branches striding by 2 beside a stride-2 max pooling that passes
its input through unprojected.

    224x224x3 -> conv 7x7/2, 64 -> max pool 3x3/2                            112 -> 56
              -> conv 1x1, 64 -> conv 3x3, 192 -> max pool 3x3/2             56 -> 28
              -> inception 3a, 3b, 3c (stride 2)                             28 -> 14
              -> inception 4a .. 4d, 4e (stride 2)                           14 -> 7
              -> inception 5a, 5b -> avg pool 7x7 -> linear                   7 -> 1
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from cnnzoo import FeatureInfo, ModelCard, PublishedError, variant
from torch import nn

from cnnzoo_inception.layers import Branch, Conv, ConvUnit, InceptionModule, Pool
from cnnzoo_inception.net import InceptionNet

# The authors' TensorFlow releases use 0.001; the paper leaves epsilon unstated.
BN_EPS = 1e-3


@dataclass(frozen=True)
class BNInceptionRow:
    """One Inception row of Figure 5: filters per branch, the pooling inside the module and
    its projection (`None`: "pass through"), and the module's stride."""

    n1x1: int
    n3x3_reduce: int
    n3x3: int
    double_3x3_reduce: int
    double_3x3: int
    pool: Literal["avg", "max"]
    pool_proj: int | None
    stride: int = 1

    def out_chans(self, in_chans: int) -> int:
        """Channels out: the branches' filters, and the input's own where it passes through."""
        pooled = self.pool_proj or in_chans
        return self.n1x1 + self.n3x3 + self.double_3x3 + pooled

    def branches(self) -> tuple[Branch, ...]:
        s = self.stride
        branches: list[Branch] = []
        if self.n1x1:  # 3c and 4e have no 1x1 branch
            branches.append((Conv(self.n1x1, 1),))
        branches.append((Conv(self.n3x3_reduce, 1), Conv(self.n3x3, 3, s)))
        branches.append(
            (
                Conv(self.double_3x3_reduce, 1),
                Conv(self.double_3x3, 3),
                Conv(self.double_3x3, 3, s),
            )
        )
        pool = Pool(self.pool, 3, s)
        branches.append((pool, Conv(self.pool_proj, 1)) if self.pool_proj else (pool,))
        return tuple(branches)


# Figure 5, from inception (3a) on, row by row; the comments give the output sizes the rows
# add up to. The figure's "output size" column prints 576 for 4c and 4d and 1024 for 4e, which
# its own filter counts contradict (160+160+160+128 = 608); every reproduction follows the
# filter counts, as we do.
FIGURE_5: tuple[tuple[str, BNInceptionRow], ...] = (
    ("inception3a", BNInceptionRow(64, 64, 64, 64, 96, "avg", 32)),  # 28x28x256
    ("inception3b", BNInceptionRow(64, 64, 96, 64, 96, "avg", 64)),  # 28x28x320
    ("inception3c", BNInceptionRow(0, 128, 160, 64, 96, "max", None, stride=2)),  # 14x14x576
    ("inception4a", BNInceptionRow(224, 64, 96, 96, 128, "avg", 128)),  # 14x14x576
    ("inception4b", BNInceptionRow(192, 96, 128, 96, 128, "avg", 128)),  # 14x14x576
    ("inception4c", BNInceptionRow(160, 128, 160, 128, 160, "avg", 128)),  # 14x14x608
    ("inception4d", BNInceptionRow(96, 128, 192, 160, 192, "avg", 128)),  # 14x14x608
    ("inception4e", BNInceptionRow(0, 128, 192, 192, 256, "max", None, stride=2)),  # 7x7x1056
    ("inception5a", BNInceptionRow(352, 192, 320, 160, 224, "avg", 128)),  # 7x7x1024
    ("inception5b", BNInceptionRow(352, 192, 320, 192, 224, "max", 128)),  # 7x7x1024
)

# Every stride-2 step past the stem is padded, so the modules take any map; the stem's two
# unpadded poolings need 7x7 images at least (the family test checks 6 fails, 7 passes).
MIN_INPUT_SIZE = 7


def max_pool() -> nn.MaxPool2d:
    return nn.MaxPool2d(3, stride=2, ceil_mode=True)  # 112 -> 56 -> 28, as Figure 5


def glorot_init(model: nn.Module) -> None:
    """Glorot-uniform weights and zero biases, the default of the authors' TensorFlow-slim
    releases; BN starts as the identity (gamma 1, beta 0)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def glorot_linear(layer: nn.Linear) -> None:
    glorot_init(layer)


class BNInception(InceptionNet):
    """The BN-Inception network of Figure 5.

    `module` builds each Inception module from its channels in and its branches; it is the
    hook through which a variant changes the module and nothing else (SENet's SE-BN-Inception
    wraps each module with a squeeze-and-excitation block).
    """

    def __init__(
        self,
        num_classes: int = 1000,
        in_chans: int = 3,
        module: Callable[[int, tuple[Branch, ...]], nn.Module] | None = None,
    ) -> None:
        build_module = module or (lambda chans, branches: InceptionModule(chans, branches, BN_EPS))
        stages: list[tuple[str, nn.Module]] = [
            ("conv1", ConvUnit(in_chans, Conv(64, 7, stride=2), BN_EPS)),  # 112x112x64
            ("pool1", max_pool()),  # 56x56x64
            ("conv2_reduce", ConvUnit(64, Conv(64, 1), BN_EPS)),
            ("conv2", ConvUnit(64, Conv(192, 3), BN_EPS)),  # 56x56x192
            ("pool2", max_pool()),  # 28x28x192
        ]
        channels = 192
        widths: dict[str, int] = {}
        for name, row in FIGURE_5:
            stages.append((name, build_module(channels, row.branches())))
            channels = widths[name] = row.out_chans(channels)
        super().__init__(
            stages,
            num_features=channels,
            num_classes=num_classes,
            in_chans=in_chans,
            # §4.2.1: "Remove Dropout", batch normalisation regularises in its place.
            dropout=0.0,
            feature_info=[
                FeatureInfo("features.conv1", 64, 2),
                FeatureInfo("features.conv2", 192, 4),
                FeatureInfo("features.inception3b", widths["inception3b"], 8),
                FeatureInfo("features.inception4d", widths["inception4d"], 16),
                FeatureInfo("features.inception5b", widths["inception5b"], 32),
            ],
            linear_init=glorot_linear,
        )
        glorot_init(self)


@variant(
    ModelCard(
        paper="Batch Normalization: Accelerating Deep Network Training by Reducing Internal "
        "Covariate Shift",
        authors="S. Ioffe, C. Szegedy",
        year=2015,
        url="https://arxiv.org/abs/1502.03167",
        input_size=(3, 224, 224),
        num_classes=1000,
        published_params=13_600_000,
        params_source="§4.2: 13.6 x 10^6 parameters",
        params_tolerance=0.17,
        published_macs=2_000_000_000,
        macs_source="Szegedy et al., Rethinking the Inception Architecture (arXiv:1512.00567), "
        "Table 3: BN-Inception, 2.0 billion operations",
        published_errors=(
            PublishedError(
                "ILSVRC-2012 val",
                top1=25.2,
                top5=7.82,
                evaluation="1 model, 1 crop",
                source="Figure 4 (BN-Inception single crop)",
            ),
            PublishedError(
                "ILSVRC-2012 val",
                top1=21.99,
                top5=5.82,
                evaluation="1 model, multi-crop",
                source="Figure 4 (BN-Inception multicrop)",
            ),
            PublishedError(
                "ILSVRC-2012 val",
                top1=20.1,
                top5=4.9,
                evaluation="6 models, multi-crop",
                source="Figure 4 (BN-Inception ensemble)",
            ),
        ),
        min_input_size=MIN_INPUT_SIZE,
        notes="Figure 5's modules give 11,285,224 parameters (as every public reproduction "
        "of it, about 11.3M), not the 13.6M of §4.2: the paper does not say what the other "
        "2.3M are (auxiliary classifiers are not described for this network), hence the 17% "
        "tolerance. Figure 5's output-size column prints 576 for 4c and 4d and 1024 for 4e, "
        "which its own filter counts contradict; we follow the filter counts (608, 608, "
        "1056). Multiply-adds: 2.03 billion, as the 2.0 billion of the Inception-v3 paper. "
        "Stride-2 convolutions and pooling inside 3c and 4e are padded so the branches "
        "agree on every input size; the stem's poolings round up (112 -> 56 -> 28). No "
        "dropout (§4.2.1 removes it). The paper states no initialisation: Glorot uniform. "
        "BNInception(module=...) swaps the module, e.g. for SE-BN-Inception.",
    )
)
def bn_inception(num_classes: int = 1000, in_chans: int = 3) -> BNInception:
    """BN-Inception of Ioffe and Szegedy 2015 (Appendix, Figure 5)."""
    return BNInception(num_classes=num_classes, in_chans=in_chans)
