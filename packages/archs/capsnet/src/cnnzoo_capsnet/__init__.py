"""Capsule networks (Sabour, Frosst and Hinton 2017) for cnnzoo: capsules, the squash,
routing-by-agreement, the margin loss and the reconstruction decoder."""

from cnnzoo_capsnet.capsnet import CapsNet, Decoder, capsnet
from cnnzoo_capsnet.capsules import DigitCaps, PrimaryCaps, dynamic_routing, margin_loss, squash

__all__ = [
    "CapsNet",
    "Decoder",
    "DigitCaps",
    "PrimaryCaps",
    "capsnet",
    "dynamic_routing",
    "margin_loss",
    "squash",
]
