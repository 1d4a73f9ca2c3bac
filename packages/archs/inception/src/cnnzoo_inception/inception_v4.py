"""Inception-v4, Inception-ResNet-v1 and Inception-ResNet-v2: Szegedy, Ioffe, Vanhoucke and
Alemi, "Inception-v4, Inception-ResNet and the Impact of Residual Connections on Learning",
AAAI 2017 (arXiv:1602.07261), §3 and Figs. 3-19.

All three networks are a stem that takes 299x299 images to a 35x35 grid, then modules at
35x35 (A), a reduction to 17x17, modules at 17x17 (B), a reduction to 8x8, modules at 8x8
(C), average pooling, dropout (keep 0.8) and the softmax (Figs. 9 and 15). Inception-v4's
modules concatenate their branches; the Inception-ResNet modules add them, projected by a
linear 1x1 convolution and scaled down, to their input (§3.2-3.3).

Every network here is a table: the stem's layers, then (stage, repeats, module) rows.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial

import torch
from cnnzoo import FeatureInfo, ModelCard, PretrainedWeights, PublishedError, variant
from torch import nn

from cnnzoo_inception.layers import (
    Branch,
    Conv,
    ConvUnit,
    Fork,
    InceptionModule,
    InceptionResNetModule,
    Pool,
)
from cnnzoo_inception.net import InceptionNet, our_state_keys, rename_in_order

BN_EPS = 1e-3  # the authors' TensorFlow release's batch-norm epsilon; the paper states none
AVG_POOL = Pool("avg", 3, 1)
MAX_POOL_2 = Pool("max", 3, 2, valid=True)


def reduction_a(k: int, l: int, m: int, n: int) -> tuple[Branch, ...]:  # noqa: E741
    """Fig. 7, 35x35 -> 17x17, with the filter counts k, l, m, n of Table 1."""
    return (
        (Conv(n, 3, 2, valid=True),),
        (Conv(k, 1), Conv(l, 3), Conv(m, 3, 2, valid=True)),
        (MAX_POOL_2,),
    )


# --- Inception-v4 (Fig. 9) -----------------------------------------------------------------

# Fig. 3, the stem of Inception-v4 (and, in the paper, of Inception-ResNet-v2). The
# asymmetric pair of mixed_4a is 1x7 then 7x1 as in the release; the figure draws 7x1 first.
STEM_V4: tuple[tuple[str, Conv | Pool | tuple[Branch, ...]], ...] = (
    ("conv2d_1a", Conv(32, 3, 2, valid=True)),  # 149x149x32
    ("conv2d_2a", Conv(32, 3, valid=True)),  # 147x147x32
    ("conv2d_2b", Conv(64, 3)),  # 147x147x64
    ("mixed_3a", ((MAX_POOL_2,), (Conv(96, 3, 2, valid=True),))),  # 73x73x160
    (
        "mixed_4a",
        (
            (Conv(64, 1), Conv(96, 3, valid=True)),
            (Conv(64, 1), Conv(64, (1, 7)), Conv(64, (7, 1)), Conv(96, 3, valid=True)),
        ),
    ),  # 71x71x192
    ("mixed_5a", ((Conv(192, 3, 2, valid=True),), (MAX_POOL_2,))),  # 35x35x384
)

# Fig. 4, Inception-A (35x35x384).
INCEPTION_A: tuple[Branch, ...] = (
    (Conv(96, 1),),
    (Conv(64, 1), Conv(96, 3)),
    (Conv(64, 1), Conv(96, 3), Conv(96, 3)),
    (AVG_POOL, Conv(96, 1)),
)

# Fig. 5, Inception-B (17x17x1024). The release starts the five-deep branch with 7x1 where
# the figure starts with 1x7 (the pair's order flips the branch's axes, not its size).
INCEPTION_B: tuple[Branch, ...] = (
    (Conv(384, 1),),
    (Conv(192, 1), Conv(224, (1, 7)), Conv(256, (7, 1))),
    (Conv(192, 1), Conv(192, (7, 1)), Conv(224, (1, 7)), Conv(224, (7, 1)), Conv(256, (1, 7))),
    (AVG_POOL, Conv(128, 1)),
)

# Fig. 8, Reduction-B (17x17 -> 8x8).
REDUCTION_B_V4: tuple[Branch, ...] = (
    (Conv(192, 1), Conv(192, 3, 2, valid=True)),
    (Conv(256, 1), Conv(256, (1, 7)), Conv(320, (7, 1)), Conv(320, 3, 2, valid=True)),
    (MAX_POOL_2,),
)

# Fig. 6, Inception-C (8x8x1536). The release's 448 and 512 convolutions are 3x1 then 1x3;
# the figure draws 1x3 then 3x1.
INCEPTION_C: tuple[Branch, ...] = (
    (Conv(256, 1),),
    (Conv(384, 1), Fork((Conv(256, (1, 3)), Conv(256, (3, 1))))),
    (
        Conv(384, 1),
        Conv(448, (3, 1)),
        Conv(512, (1, 3)),
        Fork((Conv(256, (1, 3)), Conv(256, (3, 1)))),
    ),
    (AVG_POOL, Conv(256, 1)),
)


@dataclass(frozen=True)
class Stage:
    """One row of a network's table: `repeats` modules named `name1`, `name2`, ... (just
    `name` when there is one). `residual_scale` makes them Inception-ResNet modules."""

    name: str
    repeats: int
    branches: tuple[Branch, ...]
    residual_scale: float | None = None
    activate: bool = True  # the ReLU after the residual sum

    def names(self) -> list[str]:
        if self.repeats == 1:
            return [self.name]
        return [f"{self.name}{i}" for i in range(1, self.repeats + 1)]


@dataclass(frozen=True)
class Architecture:
    """A whole network of the paper: stem, stages, an optional final 1x1 convolution, and
    where its stages end (module, total stride) for `feature_info`."""

    stem: tuple[tuple[str, Conv | Pool | tuple[Branch, ...]], ...]
    stages: tuple[Stage, ...]
    feature_points: tuple[tuple[str, int], ...]
    final_conv: Conv | None = None


INCEPTION_V4 = Architecture(
    stem=STEM_V4,
    stages=(
        Stage("inception_a", 4, INCEPTION_A),
        Stage("reduction_a", 1, reduction_a(192, 224, 256, 384)),  # Table 1: Inception-v4
        Stage("inception_b", 7, INCEPTION_B),
        Stage("reduction_b", 1, REDUCTION_B_V4),
        Stage("inception_c", 3, INCEPTION_C),
    ),
    feature_points=(
        ("stem.conv2d_2b", 2),
        ("stem.mixed_3a", 4),
        ("inception_a4", 8),
        ("inception_b7", 16),
        ("inception_c3", 32),
    ),
)

# --- Inception-ResNet-v1 (Fig. 15 with Figs. 14, 10, 7, 11, 12, 13) ------------------------

# §3.3: "scaling factors between 0.1 and 0.3"; these are the release's, per module kind.
SCALE_A, SCALE_B, SCALE_C = 0.17, 0.10, 0.20

INCEPTION_RESNET_V1 = Architecture(
    # Fig. 14, 299x299x3 -> 35x35x256.
    stem=(
        ("conv2d_1a", Conv(32, 3, 2, valid=True)),  # 149x149x32
        ("conv2d_2a", Conv(32, 3, valid=True)),  # 147x147x32
        ("conv2d_2b", Conv(64, 3)),  # 147x147x64
        ("maxpool_3a", MAX_POOL_2),  # 73x73x64
        ("conv2d_3b", Conv(80, 1)),  # 73x73x80
        ("conv2d_4a", Conv(192, 3, valid=True)),  # 71x71x192
        ("conv2d_4b", Conv(256, 3, 2, valid=True)),  # 35x35x256
    ),
    stages=(
        # Fig. 10, Inception-ResNet-A, 35x35x256.
        Stage(
            "inception_resnet_a",
            5,
            (
                (Conv(32, 1),),
                (Conv(32, 1), Conv(32, 3)),
                (Conv(32, 1), Conv(32, 3), Conv(32, 3)),
            ),
            SCALE_A,
        ),
        Stage("reduction_a", 1, reduction_a(192, 192, 256, 384)),  # Table 1: 35x35x896 out
        # Fig. 11, Inception-ResNet-B, 17x17x896.
        Stage(
            "inception_resnet_b",
            10,
            ((Conv(128, 1),), (Conv(128, 1), Conv(128, (1, 7)), Conv(128, (7, 1)))),
            SCALE_B,
        ),
        # Fig. 12, Reduction-B, 17x17x896 -> 8x8x1792.
        Stage(
            "reduction_b",
            1,
            (
                (Conv(256, 1), Conv(384, 3, 2, valid=True)),
                (Conv(256, 1), Conv(256, 3, 2, valid=True)),
                (Conv(256, 1), Conv(256, 3), Conv(256, 3, 2, valid=True)),
                (MAX_POOL_2,),
            ),
        ),
        # Fig. 13, Inception-ResNet-C, 8x8x1792.
        Stage(
            "inception_resnet_c",
            5,
            ((Conv(192, 1),), (Conv(192, 1), Conv(192, (1, 3)), Conv(192, (3, 1)))),
            SCALE_C,
        ),
    ),
    feature_points=(
        ("stem.conv2d_2b", 2),
        ("stem.conv2d_4a", 4),
        ("inception_resnet_a5", 8),
        ("inception_resnet_b10", 16),
        ("inception_resnet_c5", 32),
    ),
)

# --- Inception-ResNet-v2, as released ------------------------------------------------------

# Figs. 16, 17 and 19: the branches of the three residual modules, as the figures draw them.
INCEPTION_RESNET_V2_A: tuple[Branch, ...] = (
    (Conv(32, 1),),
    (Conv(32, 1), Conv(32, 3)),
    (Conv(32, 1), Conv(48, 3), Conv(64, 3)),
)
INCEPTION_RESNET_V2_B: tuple[Branch, ...] = (
    (Conv(192, 1),),
    (Conv(128, 1), Conv(160, (1, 7)), Conv(192, (7, 1))),
)
INCEPTION_RESNET_V2_C: tuple[Branch, ...] = (
    (Conv(192, 1),),
    (Conv(192, 1), Conv(224, (1, 3)), Conv(256, (3, 1))),
)

INCEPTION_RESNET_V2 = Architecture(
    # The release's stem, not Fig. 3: Inception-v3's stem to 35x35x192, then an
    # Inception-A-like module (mixed_5b) to 35x35x320.
    stem=(
        ("conv2d_1a", Conv(32, 3, 2, valid=True)),  # 149x149x32
        ("conv2d_2a", Conv(32, 3, valid=True)),  # 147x147x32
        ("conv2d_2b", Conv(64, 3)),  # 147x147x64
        ("maxpool_3a", MAX_POOL_2),  # 73x73x64
        ("conv2d_3b", Conv(80, 1)),  # 73x73x80
        ("conv2d_4a", Conv(192, 3, valid=True)),  # 71x71x192
        ("maxpool_5a", MAX_POOL_2),  # 35x35x192
        (
            "mixed_5b",
            (
                (Conv(96, 1),),
                (Conv(48, 1), Conv(64, 5)),
                (Conv(64, 1), Conv(96, 3), Conv(96, 3)),
                (AVG_POOL, Conv(64, 1)),
            ),
        ),  # 35x35x320
    ),
    stages=(
        Stage("inception_resnet_a", 10, INCEPTION_RESNET_V2_A, SCALE_A),  # 35x35x320
        Stage("reduction_a", 1, reduction_a(256, 256, 384, 384)),  # Table 1: 17x17x1088
        Stage("inception_resnet_b", 20, INCEPTION_RESNET_V2_B, SCALE_B),  # 17x17x1088
        # Fig. 18, Reduction-B: 17x17x1088 -> 8x8x2080.
        Stage(
            "reduction_b",
            1,
            (
                (Conv(256, 1), Conv(384, 3, 2, valid=True)),
                (Conv(256, 1), Conv(288, 3, 2, valid=True)),
                (Conv(256, 1), Conv(288, 3), Conv(320, 3, 2, valid=True)),
                (MAX_POOL_2,),
            ),
        ),
        Stage("inception_resnet_c", 9, INCEPTION_RESNET_V2_C, SCALE_C),  # 8x8x2080
        # The release's last module adds its branches unscaled and without a ReLU.
        Stage("inception_resnet_c10", 1, INCEPTION_RESNET_V2_C, 1.0, activate=False),
    ),
    final_conv=Conv(1536, 1),  # the release's, to 8x8x1536 before the pooling
    feature_points=(
        ("stem.conv2d_2b", 2),
        ("stem.conv2d_4a", 4),
        ("inception_resnet_a10", 8),
        ("inception_resnet_b20", 16),
        ("conv2d_7b", 32),
    ),
)


def glorot_init(model: nn.Module) -> None:
    """Glorot-uniform weights and zero biases (the default of the authors' TensorFlow-slim
    release; the paper states no initialisation); BN starts as the identity."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def build_stem(
    in_chans: int, steps: tuple[tuple[str, Conv | Pool | tuple[Branch, ...]], ...]
) -> tuple[nn.Sequential, dict[str, int]]:
    """A stem table as a Sequential, and the channels after each of its layers."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    widths: dict[str, int] = {}
    channels = in_chans
    for name, step in steps:
        if isinstance(step, Conv):
            layers[name] = ConvUnit(channels, step, BN_EPS)
            channels = step.out
        elif isinstance(step, Pool):
            layers[name] = step.build()
        else:
            module = InceptionModule(channels, step, BN_EPS)
            layers[name] = module
            channels = module.out_chans
        widths[f"stem.{name}"] = channels
    return nn.Sequential(layers), widths


class InceptionV4Net(InceptionNet):
    """A network of the Inception-v4 paper built from its table (`Architecture`): the stem,
    the stages of modules, average pooling, dropout keeping 80% (Figs. 9 and 15) and the
    classifier."""

    def __init__(self, arch: Architecture, num_classes: int = 1000, in_chans: int = 3) -> None:
        stem, widths = build_stem(in_chans, arch.stem)
        channels = widths[f"stem.{arch.stem[-1][0]}"]
        stages: list[tuple[str, nn.Module]] = [("stem", stem)]
        for stage in arch.stages:
            for name in stage.names():
                if stage.residual_scale is None:
                    module = InceptionModule(channels, stage.branches, BN_EPS)
                else:
                    module = InceptionResNetModule(
                        channels, stage.branches, stage.residual_scale, BN_EPS, stage.activate
                    )
                stages.append((name, module))
                channels = widths[name] = module.out_chans
        if arch.final_conv is not None:
            stages.append(("conv2d_7b", ConvUnit(channels, arch.final_conv, BN_EPS)))
            channels = widths["conv2d_7b"] = arch.final_conv.out
        super().__init__(
            stages,
            num_features=channels,
            num_classes=num_classes,
            in_chans=in_chans,
            dropout=0.2,  # Figs. 9 and 15: "Dropout (keep 0.8)"
            feature_info=[
                FeatureInfo(f"features.{module}", widths[module], stride)
                for module, stride in arch.feature_points
            ],
            linear_init=glorot_init,
        )
        glorot_init(self)


# The stem's unpadded layers need 75x75 images to leave the last reduction a 1x1 map.
MIN_INPUT_SIZE = 75


def from_timm_state_dict(
    state_dict: Mapping[str, torch.Tensor], name: str = "inception_v4"
) -> dict[str, torch.Tensor]:
    """A state dict of timm's `inception_v4` or `inception_resnet_v2` (`name`), renamed for
    ours of the same name, e.g. `from_timm_state_dict(timm_model.state_dict(),
    "inception_resnet_v2")`."""
    builders = {"inception_v4": inception_v4, "inception_resnet_v2": inception_resnet_v2}
    if name not in builders:
        raise ValueError(f"timm's weights map onto {' and '.join(builders)}; got {name!r}")
    classifier = [v for k, v in state_dict.items() if k.endswith("weight") and v.ndim == 2]
    num_classes = classifier[-1].shape[0] if classifier else 1000
    return rename_in_order(
        state_dict, our_state_keys(builders[name], num_classes), f"timm's {name}"
    )


# The converters a card's weights name take the state dict alone.
from_timm_inception_v4 = partial(from_timm_state_dict, name="inception_v4")
from_timm_inception_resnet_v2 = partial(from_timm_state_dict, name="inception_resnet_v2")


def _timm_weights(model: str, *tags: str) -> tuple[PretrainedWeights, ...]:
    """timm's ports of the authors' TensorFlow checkpoints, for inputs scaled to [-1, 1]."""
    return tuple(
        PretrainedWeights(
            "timm",
            f"{model}.{tag}",
            f"cnnzoo_inception.inception_v4:from_timm_{model}",
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
        )
        for tag in tags
    )


PAPER = "Inception-v4, Inception-ResNet and the Impact of Residual Connections on Learning"
AUTHORS = "C. Szegedy, S. Ioffe, V. Vanhoucke, A. Alemi"
URL = "https://arxiv.org/abs/1602.07261"


def _errors(
    single: tuple[float, float], crops12: tuple[float, float], crops144: tuple[float, float]
) -> tuple[PublishedError, ...]:
    data = "ILSVRC-2012 val (non-blacklisted subset)"
    return (
        PublishedError(data, *single, evaluation="1 model, 1 crop", source="Table 2"),
        PublishedError(data, *crops12, evaluation="1 model, 12 crops", source="Table 3"),
        PublishedError(data, *crops144, evaluation="1 model, 144 crops", source="Table 4"),
    )


@variant(
    ModelCard(
        paper=PAPER,
        authors=AUTHORS,
        year=2016,
        url=URL,
        input_size=(3, 299, 299),
        num_classes=1000,
        published_params=42_679_816,
        params_source="timm inception_v4 (the port of the authors' TensorFlow release), "
        "1000 classes; the paper prints no count",
        published_errors=(
            *_errors((20.0, 5.0), (18.7, 4.2), (17.7, 3.8)),
            PublishedError(
                "ILSVRC-2012 val (non-blacklisted subset)",
                top1=16.5,
                top5=3.1,
                evaluation="Inception-v4 + 3 x Inception-ResNet-v2, 144 crops",
                source="Table 5",
            ),
        ),
        min_input_size=MIN_INPUT_SIZE,
        weights=_timm_weights("inception_v4", "tf_in1k"),
        notes="Figs. 3-9 with the filter counts of Table 1 (k, l, m, n = 192, 224, 256, 384). "
        "Three asymmetric pairs follow the authors' release, and so timm, rather than the "
        "figures: 1x7 before 7x1 in the stem (Fig. 3 draws 7x1 first), 7x1 first in Inception-"
        "B's five-deep branch (Fig. 5 draws 1x7 first), 3x1 448 before 1x3 512 in Inception-C "
        "(Fig. 6 the reverse). Sizes, parameters and multiply-adds are the same either way; "
        "following the release lets its weights (TF-slim reports 80.2% top-1, 95.2% top-5, "
        "as the paper's 20.0/5.0) load through from_timm_state_dict, with timm's outputs.",
    )
)
def inception_v4(num_classes: int = 1000, in_chans: int = 3) -> InceptionV4Net:
    """Inception-v4 (Fig. 9): 42,679,816 parameters with 1000 classes."""
    return InceptionV4Net(INCEPTION_V4, num_classes=num_classes, in_chans=in_chans)


@variant(
    ModelCard(
        paper=PAPER,
        authors=AUTHORS,
        year=2016,
        url=URL,
        input_size=(3, 299, 299),
        num_classes=1000,
        published_params=22_756_328,
        params_source="our count of the paper's figures, 1000 classes: the paper prints no "
        "count and no public ImageNet implementation exists to take one from",
        published_errors=_errors((21.3, 5.5), (19.8, 4.6), (18.8, 4.3)),
        min_input_size=MIN_INPUT_SIZE,
        notes="Built from the figures alone (Figs. 14, 10, 7, 11, 12, 13 and 15; Table 1's "
        "k, l, m, n = 192, 192, 256, 384), which agree with one another: 5, 10 and 5 residual "
        "modules on 256, 896 and 1792 channels. Residual scales 0.17, 0.10 and 0.20 (A, B, C) "
        "are the release's choices within §3.3's 0.1-0.3. No public ImageNet implementation "
        "to compare with; the parameter count is ours.",
    )
)
def inception_resnet_v1(num_classes: int = 1000, in_chans: int = 3) -> InceptionV4Net:
    """Inception-ResNet-v1 (Fig. 15), about the cost of Inception-v3."""
    return InceptionV4Net(INCEPTION_RESNET_V1, num_classes=num_classes, in_chans=in_chans)


@variant(
    ModelCard(
        paper=PAPER,
        authors=AUTHORS,
        year=2016,
        url=URL,
        input_size=(3, 299, 299),
        num_classes=1000,
        published_params=55_843_464,
        params_source="timm inception_resnet_v2 (the port of the authors' TensorFlow "
        "release), 1000 classes; the paper prints no count",
        published_errors=_errors((19.9, 4.9), (18.7, 4.1), (17.8, 3.7)),
        min_input_size=MIN_INPUT_SIZE,
        weights=_timm_weights("inception_resnet_v2", "tf_in1k", "tf_ens_adv_in1k"),
        notes="The authors' release, not the paper's figures, which cannot be built as drawn: "
        "Fig. 17 projects the 1152-channel input to 1154 and Fig. 19 the 2144-channel input "
        "to 2048, so the residual sums do not fit. The release keeps the modules' branches "
        "(Figs. 16-19, Reduction-A with 256, 256, 384, 384) but uses Inception-v3's stem "
        "with a 35x35 Inception-A-like module (320 channels) in place of Fig. 3's (384), so "
        "1088 and 2080 channels at 17x17 and 8x8; 10, 20 and 10 residual modules where Fig. "
        "15 says 5, 10 and 5; the last without scaling or ReLU; and a 1x1 convolution to "
        "1536 before the pooling. The released checkpoint is the one whose accuracy matches "
        "the paper's (TF-slim reports 80.4% top-1, 95.3% top-5); timm ports it, and "
        "from_timm_state_dict loads timm's weights into ours with the same outputs.",
    )
)
def inception_resnet_v2(num_classes: int = 1000, in_chans: int = 3) -> InceptionV4Net:
    """Inception-ResNet-v2 as released by the authors: 55,843,464 parameters with 1000
    classes."""
    return InceptionV4Net(INCEPTION_RESNET_V2, num_classes=num_classes, in_chans=in_chans)
