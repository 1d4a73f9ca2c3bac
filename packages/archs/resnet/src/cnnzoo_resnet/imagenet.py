"""The ImageNet networks of He et al. 2015 (arXiv:1512.03385): Table 1's residual nets with
shortcut option B (§3.3, used for Tables 3 and 4), the options A and C of Table 3, the plain
nets of the degradation experiment (Table 2, Fig. 4), and the "v1.5" bottleneck nets that
torchvision ships."""

from __future__ import annotations

from cnnzoo import ModelCard, PretrainedWeights, PublishedError, variant

from cnnzoo_resnet.resnet import (
    BasicBlock,
    Block,
    Bottleneck,
    BottleneckV1_5,
    PlainBlock,
    ResNet,
    ShortcutOption,
)

# Table 1: blocks in conv2_x, conv3_x, conv4_x, conv5_x.
TABLE_1: dict[int, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}

PAPER = "Deep Residual Learning for Image Recognition"
AUTHORS = "K. He, X. Zhang, S. Ren, J. Sun"
URL = "https://arxiv.org/abs/1512.03385"
DATASET = "ILSVRC-2012 val"
TEN_CROP = "10-crop testing (§3.4)"
# §3.4: "we adopt the fully-convolutional form ... and average the scores at multiple scales
# (images are resized such that the shorter side is in {224, 256, 384, 480, 640})".
MULTI_SCALE = "single model, fully convolutional, scores averaged over 5 scales (§3.4)"
TORCHVISION = "torchvision model zoo (IMAGENET1K_V1 weights)"
TORCHVISION_CROP = "1 centre crop 224 of 256"


def _card(**fields) -> ModelCard:
    return ModelCard(
        paper=PAPER,
        authors=AUTHORS,
        year=2015,
        url=URL,
        input_size=(3, 224, 224),
        num_classes=1000,
        recipe=None,
        **fields,
    )


def _table_1_macs(depth: int) -> dict:
    macs = {18: 1.8, 34: 3.6, 50: 3.8, 101: 7.6, 152: 11.3}[depth]
    return {
        "published_macs": round(macs * 1e9),
        "macs_source": f"Table 1: {macs} x 10^9 FLOPs (multiply-adds)",
    }


def _ten_crop(top1: float, top5: float | None, source: str) -> PublishedError:
    return PublishedError(DATASET, top1=top1, top5=top5, evaluation=TEN_CROP, source=source)


def _multi_scale(top1: float, top5: float, source: str) -> PublishedError:
    return PublishedError(DATASET, top1=top1, top5=top5, evaluation=MULTI_SCALE, source=source)


def _torchvision(top1: float, top5: float) -> PublishedError:
    return PublishedError(
        DATASET, top1=top1, top5=top5, evaluation=TORCHVISION_CROP, source=TORCHVISION
    )


def _torchvision_weights(depth: int, *versions: str) -> tuple[PretrainedWeights, ...]:
    """torchvision's ImageNet weights of resnet{depth}: the same network as ours."""
    return tuple(
        PretrainedWeights(
            "torchvision",
            f"ResNet{depth}_Weights.{version}",
            "cnnzoo_resnet.resnet:from_torchvision_state_dict",
        )
        for version in versions
    )


def _build(
    depth: int,
    num_classes: int,
    in_chans: int,
    shortcut: ShortcutOption = "B",
    block: Block | None = None,
) -> ResNet:
    table_block, layers = TABLE_1[depth]
    return ResNet(block or table_block, layers, num_classes, in_chans, shortcut=shortcut)


TORCHVISION_PARAMS = (
    "the paper prints none for ImageNet: torchvision's resnet{depth}, the same network, exactly"
)
OPTION_A_PARAMS = (
    "the paper prints none: torchvision's resnet{depth} count ({tv:,}) less its three "
    "projection shortcuts ({proj:,}); option A adds no parameter (§3.3)"
)


@variant(
    _card(
        published_params=11_689_512,
        params_source=TORCHVISION_PARAMS.format(depth=18),
        **_table_1_macs(18),
        published_errors=(_torchvision(30.24, 10.92),),
        weights=_torchvision_weights(18, "IMAGENET1K_V1"),
        notes="Shortcut option B. The paper's only ResNet-18 error (Table 2, 27.88 top-1, "
        "10-crop) is of the option-A net: see resnet18_a. Identical to torchvision's "
        "resnet18, whose weights load through from_torchvision_state_dict.",
    )
)
def resnet18(num_classes: int = 1000, in_chans: int = 3) -> ResNet:
    """ResNet-18 of Table 1 with option B shortcuts: 11,689,512 parameters, 1.8 GFLOPs."""
    return _build(18, num_classes, in_chans)


@variant(
    _card(
        published_params=11_515_688,
        params_source=OPTION_A_PARAMS.format(depth=18, tv=11_689_512, proj=173_824),
        **_table_1_macs(18),
        published_errors=(_ten_crop(27.88, None, "Table 2: ResNet-18"),),
        notes="Shortcut option A (zero-padded identity), as in Table 2 and Fig. 4: the same "
        "parameters as plain18.",
    )
)
def resnet18_a(num_classes: int = 1000, in_chans: int = 3) -> ResNet:
    """ResNet-18 of Table 2 with option A (zero-padding) shortcuts, parameter-free."""
    return _build(18, num_classes, in_chans, shortcut="A")


RESNET34_MACS_NOTE = (
    "Our count is 3.664 x 10^9 multiply-adds (torchvision's metadata says 3.664 too). The "
    "paper's 3.6 matches the plain / option-A net's 3.644 x 10^9 (§3.3 quotes it for the "
    "plain 34-layer baseline); the three projections of option B add 19M."
)


@variant(
    _card(
        published_params=21_797_672,
        params_source=TORCHVISION_PARAMS.format(depth=34),
        **_table_1_macs(34),
        macs_tolerance=0.005,
        published_errors=(
            _ten_crop(24.52, 7.46, "Table 3: ResNet-34 B"),
            _multi_scale(21.84, 5.71, "Table 4: ResNet-34 B"),
            _torchvision(26.69, 8.58),
        ),
        weights=_torchvision_weights(34, "IMAGENET1K_V1"),
        notes="Shortcut option B (§3.3). " + RESNET34_MACS_NOTE,
    )
)
def resnet34(num_classes: int = 1000, in_chans: int = 3) -> ResNet:
    """ResNet-34 of Table 1 with option B shortcuts (Table 3's "ResNet-34 B")."""
    return _build(34, num_classes, in_chans)


@variant(
    _card(
        published_params=21_623_848,
        params_source=OPTION_A_PARAMS.format(depth=34, tv=21_797_672, proj=173_824),
        **_table_1_macs(34),
        published_errors=(
            _ten_crop(25.03, 7.76, "Table 3: ResNet-34 A"),
            _ten_crop(25.03, None, "Table 2: ResNet-34"),
        ),
        notes="Shortcut option A (§3.3): zero-padded identity where the dimensions increase, "
        "no parameter in any shortcut; the same parameters as plain34.",
    )
)
def resnet34_a(num_classes: int = 1000, in_chans: int = 3) -> ResNet:
    """ResNet-34 with option A shortcuts (Table 2, Table 3's "ResNet-34 A")."""
    return _build(34, num_classes, in_chans, shortcut="A")


@variant(
    _card(
        published_params=22_716_840,
        params_source="the paper prints none: torchvision's resnet34 count (21,797,672) plus "
        "the 13 extra projection shortcuts of option C (919,168), exactly",
        published_errors=(
            _ten_crop(24.19, 7.40, "Table 3: ResNet-34 C"),
            _multi_scale(21.53, 5.60, "Table 4: ResNet-34 C"),
        ),
        notes='Shortcut option C (§3.3): a projection in every block, "many (thirteen) '
        'projection shortcuts" more than B; 3.83 x 10^9 multiply-adds (the paper gives no '
        "figure for C).",
    )
)
def resnet34_c(num_classes: int = 1000, in_chans: int = 3) -> ResNet:
    """ResNet-34 with option C shortcuts: projections in all 16 blocks (Table 3)."""
    return _build(34, num_classes, in_chans, shortcut="C")


BOTTLENECK_PARAMS = (
    "the paper prints none for ImageNet: torchvision's resnet{depth}, whose only difference "
    "(the stride on the 3x3) leaves the count unchanged, exactly"
)


@variant(
    _card(
        published_params=25_557_032,
        params_source=BOTTLENECK_PARAMS.format(depth=50),
        **_table_1_macs(50),
        macs_tolerance=0.003,
        published_errors=(
            _ten_crop(22.85, 6.71, "Table 3: ResNet-50"),
            _multi_scale(20.74, 5.25, "Table 4: ResNet-50"),
        ),
        notes="The paper's bottleneck, stride 2 on the first 1x1 convolution; option B. Our "
        "count is 3.858 x 10^9 multiply-adds: the paper's 3.8 reads as truncated, not "
        "rounded (as its 3.6 for the 34-layer net).",
    )
)
def resnet50(num_classes: int = 1000, in_chans: int = 3) -> ResNet:
    """ResNet-50 of Table 1 (stride on the first 1x1 of conv3_1, conv4_1, conv5_1)."""
    return _build(50, num_classes, in_chans)


@variant(
    _card(
        published_params=44_549_160,
        params_source=BOTTLENECK_PARAMS.format(depth=101),
        **_table_1_macs(101),
        published_errors=(
            _ten_crop(21.75, 6.05, "Table 3: ResNet-101"),
            _multi_scale(19.87, 4.60, "Table 4: ResNet-101"),
        ),
        notes="The paper's bottleneck, stride 2 on the first 1x1 convolution; option B.",
    )
)
def resnet101(num_classes: int = 1000, in_chans: int = 3) -> ResNet:
    """ResNet-101 of Table 1 (stride on the first 1x1 of conv3_1, conv4_1, conv5_1)."""
    return _build(101, num_classes, in_chans)


@variant(
    _card(
        published_params=60_192_808,
        params_source=BOTTLENECK_PARAMS.format(depth=152),
        **_table_1_macs(152),
        published_errors=(
            _ten_crop(21.43, 5.71, "Table 3: ResNet-152"),
            _multi_scale(19.38, 4.49, "Table 4: ResNet-152"),
            PublishedError(
                DATASET,
                top1=23.0,
                top5=6.7,
                evaluation="1 crop 224 of 256",
                source="He et al. 2016, Identity Mappings (arXiv:1603.05027), Table 5",
            ),
            PublishedError(
                DATASET,
                top1=21.3,
                top5=5.5,
                evaluation="1 crop 320 of 320",
                source="He et al. 2016, Identity Mappings (arXiv:1603.05027), Table 5",
            ),
        ),
        notes="The paper's bottleneck, stride 2 on the first 1x1 convolution; option B.",
    )
)
def resnet152(num_classes: int = 1000, in_chans: int = 3) -> ResNet:
    """ResNet-152 of Table 1 (stride on the first 1x1 of conv3_1, conv4_1, conv5_1)."""
    return _build(152, num_classes, in_chans)


V1_5_NOTE = (
    'Not the paper\'s: "ResNet v1.5" (fb.resnet.torch, torchvision) puts the stride of '
    "conv3_1, conv4_1 and conv5_1 on the 3x3 convolution instead of the first 1x1; same "
    "parameters, more multiply-adds. Identical to torchvision's resnet{depth}, whose weights "
    "load through from_torchvision_state_dict; the errors are torchvision's."
)


TORCHVISION_PARAMS_BY_DEPTH = {50: 25_557_032, 101: 44_549_160, 152: 60_192_808}


def _v1_5_card(depth: int, macs: float, top1: float, top5: float) -> ModelCard:
    return _card(
        published_params=TORCHVISION_PARAMS_BY_DEPTH[depth],
        params_source=f"torchvision's resnet{depth}, exactly",
        published_macs=round(macs * 1e9),
        macs_source=f"torchvision's weights metadata: {macs} GFLOPS (multiply-adds)",
        published_errors=(_torchvision(top1, top5),),
        weights=_torchvision_weights(depth, "IMAGENET1K_V1", "IMAGENET1K_V2"),
        notes=V1_5_NOTE.format(depth=depth),
    )


@variant(_v1_5_card(50, 4.089, 23.87, 7.14))
def resnet50_v1_5(num_classes: int = 1000, in_chans: int = 3) -> ResNet:
    """ResNet-50 "v1.5", torchvision's resnet50: the stride on the 3x3 convolution."""
    return _build(50, num_classes, in_chans, block=BottleneckV1_5)


@variant(_v1_5_card(101, 7.801, 22.63, 6.45))
def resnet101_v1_5(num_classes: int = 1000, in_chans: int = 3) -> ResNet:
    """ResNet-101 "v1.5", torchvision's resnet101: the stride on the 3x3 convolution."""
    return _build(101, num_classes, in_chans, block=BottleneckV1_5)


@variant(_v1_5_card(152, 11.514, 21.69, 5.95))
def resnet152_v1_5(num_classes: int = 1000, in_chans: int = 3) -> ResNet:
    """ResNet-152 "v1.5", torchvision's resnet152: the stride on the 3x3 convolution."""
    return _build(152, num_classes, in_chans, block=BottleneckV1_5)


PLAIN_NOTE = (
    "Fig. 3 (middle): Table 1's layers with no shortcut, BatchNorm after every convolution "
    '(§3.4). The same parameters as the option-A residual net ("no extra parameter", §4.1).'
)


@variant(
    _card(
        published_params=11_515_688,
        params_source=OPTION_A_PARAMS.format(depth=18, tv=11_689_512, proj=173_824),
        **_table_1_macs(18),
        published_errors=(_ten_crop(27.94, None, "Table 2: plain-18"),),
        notes=PLAIN_NOTE,
    )
)
def plain18(num_classes: int = 1000, in_chans: int = 3) -> ResNet:
    """The 18-layer plain net of Table 2: ResNet-18 without its shortcuts."""
    return _build(18, num_classes, in_chans, block=PlainBlock)


@variant(
    _card(
        published_params=21_623_848,
        params_source=OPTION_A_PARAMS.format(depth=34, tv=21_797_672, proj=173_824),
        published_macs=3_600_000_000,
        macs_source='§3.3: "Our 34-layer baseline has 3.6 billion FLOPs (multiply-adds)"; Table 1',
        published_errors=(
            _ten_crop(28.54, 10.02, "Table 3: plain-34"),
            _ten_crop(28.54, None, "Table 2: plain-34"),
        ),
        notes=PLAIN_NOTE,
    )
)
def plain34(num_classes: int = 1000, in_chans: int = 3) -> ResNet:
    """The 34-layer plain net of Fig. 3 (middle) and Table 2: ResNet-34 without shortcuts."""
    return _build(34, num_classes, in_chans, block=PlainBlock)
