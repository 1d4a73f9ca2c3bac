"""GoogLeNet and the Inception line (Szegedy et al. 2014-2016, Ioffe and Szegedy 2015)."""

from cnnzoo_inception.bn_inception import FIGURE_5, BNInception, BNInceptionRow, bn_inception
from cnnzoo_inception.googlenet import TABLE_1, GoogLeNet, InceptionRow, googlenet
from cnnzoo_inception.inception_v3 import InceptionV3, from_torchvision_state_dict, inception_v3
from cnnzoo_inception.inception_v4 import (
    InceptionV4Net,
    from_timm_state_dict,
    inception_resnet_v1,
    inception_resnet_v2,
    inception_v4,
)
from cnnzoo_inception.layers import (
    Conv,
    ConvUnit,
    Fork,
    InceptionModule,
    InceptionResNetModule,
    Pool,
)
from cnnzoo_inception.net import InceptionNet

__all__ = [
    "FIGURE_5",
    "TABLE_1",
    "BNInception",
    "BNInceptionRow",
    "Conv",
    "ConvUnit",
    "Fork",
    "GoogLeNet",
    "InceptionModule",
    "InceptionNet",
    "InceptionResNetModule",
    "InceptionRow",
    "InceptionV3",
    "InceptionV4Net",
    "Pool",
    "bn_inception",
    "from_timm_state_dict",
    "from_torchvision_state_dict",
    "googlenet",
    "inception_resnet_v1",
    "inception_resnet_v2",
    "inception_v3",
    "inception_v4",
]
