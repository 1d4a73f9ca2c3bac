"""DenseNet (Huang, Liu, van der Maaten and Weinberger, CVPR 2017) as a cnnzoo plugin."""

from cnnzoo_densenet.densenet import (
    CIFAR_TABLE,
    IMAGENET_TABLE,
    DenseNet,
    DenseNetConfig,
    densenet40_k12,
    densenet100_k12,
    densenet100_k24,
    densenet121,
    densenet161,
    densenet169,
    densenet201,
    densenet264,
    densenet_bc100_k12,
    densenet_bc190_k40,
    densenet_bc250_k24,
    from_torchvision_state_dict,
)
from cnnzoo_densenet.layers import BNReLUConv, DenseBlock, DenseLayer, Transition

__all__ = [
    "CIFAR_TABLE",
    "IMAGENET_TABLE",
    "BNReLUConv",
    "DenseBlock",
    "DenseLayer",
    "DenseNet",
    "DenseNetConfig",
    "Transition",
    "densenet40_k12",
    "densenet100_k12",
    "densenet100_k24",
    "densenet121",
    "densenet161",
    "densenet169",
    "densenet201",
    "densenet264",
    "densenet_bc100_k12",
    "densenet_bc190_k40",
    "densenet_bc250_k24",
    "from_torchvision_state_dict",
]
