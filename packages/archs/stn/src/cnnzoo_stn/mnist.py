"""The distorted-MNIST networks of Jaderberg, Simonyan, Zisserman and Kavukcuoglu, "Spatial
Transformer Networks", NIPS 2015, §4.1, Table 1 and Appendix A, on the RTS digits (42x42).

    CNN      conv 32@9x9 -> 2x2 max pool -> conv 32@7x7 -> 2x2 max pool -> softmax classifier
    ST-CNN   the affine spatial transformer (its localisation net: two 20-filter 5x5
             convolutions on the 2x pooled input, a 20-unit layer, 6 outputs), then the CNN

"All networks use rectified linear non-linearities and softmax classifiers"; convolutions have
stride 1 and no padding. At 42x42: 42 -> 34 -> 17 -> 11 -> 5, and the classifier reads the
32@5x5 map.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from cnnzoo import ClassifierNet, FeatureInfo, ModelCard, PublishedError, variant
from cnnzoo.card import PretrainedWeights
from cnnzoo_data.distorted_mnist import DISTORTION_STATS
from torch import nn

from cnnzoo_stn.network import SpatialTransformerNet
from cnnzoo_stn.transformer import AffineLocalisation, SpatialTransformer

PAPER = "Spatial Transformer Networks"
AUTHORS = "M. Jaderberg, K. Simonyan, A. Zisserman, K. Kavukcuoglu"
URL = "https://arxiv.org/abs/1506.02025"
RTS_SIZE = 42  # Appendix A: the RTS digits are placed in a 42x42 image

FEATURE_INFO = [
    FeatureInfo("features.conv1", 32, 1),
    FeatureInfo("features.pool1", 32, 2),
    FeatureInfo("features.conv2", 32, 2),
    FeatureInfo("features.pool2", 32, 4),
]

NOT_CONFIRMED = (
    "From Appendix A as far as it could be checked: the kernel sizes (9x9, 7x7), the pooling, "
    "the localisation net (two 20-filter 5x5 convolutions on a 2x downsampled input, a "
    "20-unit layer) and the RTS data (±45°, scale 0.7-1.2, a 42x42 canvas) agree with the "
    "authors' Torch demo (stnbhwd) and other reimplementations; the 32 filters of the CNN's "
    "convolutions, the initialisation (torch's defaults) and the transformer's output size "
    "(V at U's 42x42) could not be confirmed from the paper's text."
)


def _map_side(image_size: int) -> int:
    """The side of the last map: 9x9 conv, 2x2 pool, 7x7 conv, 2x2 pool, no padding."""
    return ((image_size - 8) // 2 - 6) // 2


class DistortedMNISTCNN(ClassifierNet):
    """The CNN of Table 1: two convolutions with max pooling and a softmax classifier,
    "three weight layers in the classification network" (§4.1)."""

    classifier_name = "fc"

    def __init__(self, num_classes: int = 10, in_chans: int = 1, image_size: int = RTS_SIZE):
        super().__init__()
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.feature_info = FEATURE_INFO
        self.features = nn.Sequential(
            OrderedDict(
                conv1=nn.Sequential(nn.Conv2d(in_chans, 32, 9), nn.ReLU(inplace=True)),
                pool1=nn.MaxPool2d(2),
                conv2=nn.Sequential(nn.Conv2d(32, 32, 7), nn.ReLU(inplace=True)),
                pool2=nn.MaxPool2d(2),
            )
        )
        self.num_features = 32
        self.head_hidden_size = 32 * _map_side(image_size) ** 2
        self.fc = nn.Linear(self.head_hidden_size, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.flatten(1)
        return x if pre_logits else self.fc(x)

    def new_classifier(self, num_classes: int) -> nn.Module:
        return nn.Linear(self.head_hidden_size, num_classes)


# Table 1 (% error) on RTS; the paper's other columns are R, P and E, at 28x28.
CNN_RTS = PublishedError("MNIST RTS", top1=0.8, source="Table 1: CNN, RTS")
ST_CNN_AFF_RTS = PublishedError("MNIST RTS", top1=0.5, source="Table 1: ST-CNN Aff, RTS")

# conv1 32*(81+1), conv2 32*(32*49+1), fc 10*(32*5*5+1)
CNN_PARAMS = 2_624 + 50_208 + 8_010
# conv 20*(25+1), conv 20*(20*25+1), fc 20*(20*4*4+1), regression 6*(20+1)
LOCALISATION_PARAMS = 520 + 10_020 + 6_420 + 126


def rts_weights(name: str, error: float) -> PretrainedWeights:
    """The weights of our RTS reproduction, shipped with this package (`pretrained=True`)."""
    mean, std = DISTORTION_STATS["rts"]
    return PretrainedWeights(
        source="cnnzoo",
        name=f"{name}.mnist_rts",
        mean=mean,
        std=std,
        file=f"cnnzoo_stn:weights/{name}.safetensors",
        trained_by=f"cnnzoo reproduce {name} (docs/results.md: {error}% test error)",
    )


@variant(
    ModelCard(
        paper=PAPER,
        authors=AUTHORS,
        year=2015,
        url=URL,
        input_size=(1, RTS_SIZE, RTS_SIZE),
        num_classes=10,
        published_params=CNN_PARAMS,
        params_source="not printed: Appendix A's CNN written out at 42x42 (conv1 2,624, "
        "conv2 50,208, classifier 8,010)",
        published_errors=(CNN_RTS,),
        recipe="cnn_mnist_rts",
        weights=(rts_weights("cnn_mnist_rts", 2.78),),
        fixed_input_size=True,
        notes="The baseline CNN of Table 1 on the RTS digits. " + NOT_CONFIRMED,
    )
)
def cnn_mnist_rts(num_classes: int = 10, in_chans: int = 1) -> DistortedMNISTCNN:
    """Table 1's CNN on RTS (42x42), Jaderberg et al. 2015, Appendix A."""
    return DistortedMNISTCNN(num_classes=num_classes, in_chans=in_chans)


@variant(
    ModelCard(
        paper=PAPER,
        authors=AUTHORS,
        year=2015,
        url=URL,
        input_size=(1, RTS_SIZE, RTS_SIZE),
        num_classes=10,
        published_params=CNN_PARAMS + LOCALISATION_PARAMS,
        params_source="not printed: Appendix A written out at 42x42, the CNN's 60,842 and the "
        "localisation net's 17,086 (conv 520, conv 10,020, fc 6,420, regression 126)",
        published_errors=(ST_CNN_AFF_RTS,),
        recipe="st_cnn_aff_mnist_rts",
        weights=(rts_weights("st_cnn_aff_mnist_rts", 2.02),),
        fixed_input_size=True,
        notes="The ST-CNN Aff of Table 1 on the RTS digits: an affine spatial transformer "
        "(bilinear sampling, V at 42x42, starting at the identity) before the CNN. "
        + NOT_CONFIRMED,
    )
)
def st_cnn_aff_mnist_rts(num_classes: int = 10, in_chans: int = 1) -> SpatialTransformerNet:
    """Table 1's ST-CNN Aff on RTS (42x42), Jaderberg et al. 2015, §4.1 and Appendix A."""
    transformer = SpatialTransformer(AffineLocalisation(in_chans))
    return SpatialTransformerNet(transformer, DistortedMNISTCNN(num_classes, in_chans))
