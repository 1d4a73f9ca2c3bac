"""AlexNet (Krizhevsky, Sutskever and Hinton, 2012) as a cnnzoo plugin."""

from cnnzoo_alexnet.alexnet import (
    AlexNet,
    AlexNetOWT,
    alexnet,
    alexnet_owt,
    from_torchvision_state_dict,
)
from cnnzoo_alexnet.layers import LocalResponseNorm

__all__ = [
    "AlexNet",
    "AlexNetOWT",
    "LocalResponseNorm",
    "alexnet",
    "alexnet_owt",
    "from_torchvision_state_dict",
]
