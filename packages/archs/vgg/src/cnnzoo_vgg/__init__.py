"""VGG (Simonyan and Zisserman 2014): configurations A to E of Table 1 for cnnzoo, and the
BatchNorm variants of torchvision."""

from cnnzoo_vgg.dense import FullyConvolutionalVGG, to_fully_convolutional
from cnnzoo_vgg.vgg import (
    TABLE_1,
    VGG,
    from_torchvision_state_dict,
    init_from_shallower,
    vgg11,
    vgg11_bn,
    vgg11_lrn,
    vgg13,
    vgg13_bn,
    vgg16,
    vgg16_bn,
    vgg16_c,
    vgg19,
    vgg19_bn,
)

__all__ = [
    "TABLE_1",
    "VGG",
    "FullyConvolutionalVGG",
    "from_torchvision_state_dict",
    "init_from_shallower",
    "to_fully_convolutional",
    "vgg11",
    "vgg11_bn",
    "vgg11_lrn",
    "vgg13",
    "vgg13_bn",
    "vgg16",
    "vgg16_bn",
    "vgg16_c",
    "vgg19",
    "vgg19_bn",
]
