"""The CIFAR-10 networks of He et al. 2015 (arXiv:1512.03385), §4.2 and Table 6.

"The first layer is 3x3 convolutions. Then we use a stack of 6n layers with 3x3 convolutions
on the feature maps of sizes {32, 16, 8} respectively, with 2n layers for each feature map
size. The numbers of filters are {16, 32, 64} respectively. The subsampling is performed by
convolutions with a stride of 2. The network ends with a global average pooling, a 10-way
fully-connected layer, and softmax. There are totally 6n+2 stacked weighted layers."

"When shortcut connections are used, they are connected to the pairs of 3x3 layers (totally
3n shortcuts). On this dataset we use identity shortcuts in all cases (i.e., option A), so
our residual models have exactly the same depth, width, and number of parameters as the
plain counterparts."
"""

from __future__ import annotations

from cnnzoo import ModelCard, PublishedError, variant

from cnnzoo_resnet.resnet import BasicBlock, PlainBlock, ResNet, start_running_statistics

# Table 6: depth 6n + 2 -> (n, printed parameters, printed error). ResNet-110's 6.43 is the
# best of 5 runs; their mean is 6.61 +- 0.16.
TABLE_6: dict[int, tuple[int, int, float]] = {
    20: (3, 270_000, 8.75),
    32: (5, 460_000, 7.51),
    44: (7, 660_000, 7.17),
    56: (9, 850_000, 6.97),
    110: (18, 1_700_000, 6.43),
    1202: (200, 19_400_000, 7.93),
}

PAPER = "Deep Residual Learning for Image Recognition"
AUTHORS = "K. He, X. Zhang, S. Ren, J. Sun"
URL = "https://arxiv.org/abs/1512.03385"
EVALUATION = "single view of the 32x32 test image (§4.2)"


def _card(depth: int, plain: bool = False) -> ModelCard:
    _, params, error = TABLE_6[depth]
    errors: tuple[PublishedError, ...] = ()
    if not plain:
        errors = (
            PublishedError(
                "CIFAR-10 test",
                top1=error,
                evaluation=EVALUATION + (", best of 5 runs" if depth == 110 else ""),
                source=f"Table 6: ResNet {depth} layers",
            ),
        )
        if depth == 110:
            errors += (
                PublishedError(
                    "CIFAR-10 test",
                    top1=6.61,
                    evaluation=EVALUATION + ", mean of 5 runs (+- 0.16)",
                    source="Table 6: ResNet 110 layers",
                ),
            )
    source = f"Table 6: ResNet, {depth} layers"
    if plain:
        source += " (§4.2: the plain net has exactly the residual net's parameters)"
    notes = (
        "Plain counterpart of Fig. 6 (left): 3x3 layers with BatchNorm, no shortcut; the "
        "paper plots its training curves but prints no error."
        if plain
        else "Option A shortcuts: the identity, zero-padded and subsampled where the "
        "width doubles (§4.2)."
    )
    if depth == 1202:
        notes += (
            " Built with BatchNorm running statistics measured on one batch of noise, not "
            "torch's placeholder (mean 0, variance 1): with the placeholder, eval mode "
            "before training doubles the sum in each of the 600 units under He "
            "initialisation and overflows float32 to NaN. Training, which normalises with "
            "each batch's own statistics, is the paper's either way."
        )
    return ModelCard(
        paper=PAPER,
        authors=AUTHORS,
        year=2015,
        url=URL,
        input_size=(3, 32, 32),
        num_classes=10,
        published_params=params,
        params_source=source,
        published_errors=errors,
        recipe=None,
        notes=notes,
    )


def _build(depth: int, num_classes: int, in_chans: int, plain: bool = False) -> ResNet:
    n = TABLE_6[depth][0]
    block = PlainBlock if plain else BasicBlock
    return ResNet(block, (n, n, n), num_classes, in_chans, shortcut="A", dataset="cifar")


@variant(_card(20))
def resnet20(num_classes: int = 10, in_chans: int = 3) -> ResNet:
    """CIFAR ResNet-20 (n = 3, Table 6): 269,722 parameters, the paper's 0.27M."""
    return _build(20, num_classes, in_chans)


@variant(_card(32))
def resnet32(num_classes: int = 10, in_chans: int = 3) -> ResNet:
    """CIFAR ResNet-32 (n = 5, Table 6): 464,154 parameters, the paper's 0.46M."""
    return _build(32, num_classes, in_chans)


@variant(_card(44))
def resnet44(num_classes: int = 10, in_chans: int = 3) -> ResNet:
    """CIFAR ResNet-44 (n = 7, Table 6): 658,586 parameters, the paper's 0.66M."""
    return _build(44, num_classes, in_chans)


@variant(_card(56))
def resnet56(num_classes: int = 10, in_chans: int = 3) -> ResNet:
    """CIFAR ResNet-56 (n = 9, Table 6): 853,018 parameters, the paper's 0.85M."""
    return _build(56, num_classes, in_chans)


@variant(_card(110))
def resnet110(num_classes: int = 10, in_chans: int = 3) -> ResNet:
    """CIFAR ResNet-110 (n = 18, Table 6): 1,727,962 parameters, the paper's 1.7M."""
    return _build(110, num_classes, in_chans)


@variant(_card(1202))
def resnet1202(num_classes: int = 10, in_chans: int = 3) -> ResNet:
    """CIFAR ResNet-1202 (n = 200, Table 6): 19,421,274 parameters, the paper's 19.4M."""
    model = _build(1202, num_classes, in_chans)
    start_running_statistics(model, 32, 32)  # see the card's notes: finite before training
    return model


@variant(_card(20, plain=True))
def plain20(num_classes: int = 10, in_chans: int = 3) -> ResNet:
    """The 20-layer plain CIFAR net of Fig. 6 (left): ResNet-20 without its shortcuts."""
    return _build(20, num_classes, in_chans, plain=True)


@variant(_card(32, plain=True))
def plain32(num_classes: int = 10, in_chans: int = 3) -> ResNet:
    """The 32-layer plain CIFAR net of Fig. 6 (left): ResNet-32 without its shortcuts."""
    return _build(32, num_classes, in_chans, plain=True)


@variant(_card(44, plain=True))
def plain44(num_classes: int = 10, in_chans: int = 3) -> ResNet:
    """The 44-layer plain CIFAR net of Fig. 6 (left): ResNet-44 without its shortcuts."""
    return _build(44, num_classes, in_chans, plain=True)


@variant(_card(56, plain=True))
def plain56(num_classes: int = 10, in_chans: int = 3) -> ResNet:
    """The 56-layer plain CIFAR net of Fig. 6 (left): ResNet-56 without its shortcuts."""
    return _build(56, num_classes, in_chans, plain=True)
