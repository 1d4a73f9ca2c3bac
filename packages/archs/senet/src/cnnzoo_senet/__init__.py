"""Squeeze-and-Excitation networks (Hu, Shen, Albanie, Sun and Wu, CVPR 2018) as a cnnzoo
plugin: the SE block; SE-ResNet and SE-ResNeXt built on cnnzoo_resnet; SE-BN-Inception built
on cnnzoo_inception."""

from cnnzoo_senet.layers import SqueezeExcitation
from cnnzoo_senet.se_inception import SEBNInception, SEInceptionModule, se_bn_inception
from cnnzoo_senet.se_resnet import (
    SE_TABLE,
    ResNeXtBottleneck,
    SEBasicBlock,
    SEBottleneck,
    SEResNet,
    SEResNeXtBottleneck,
    from_timm_state_dict,
    se_resnet18,
    se_resnet34,
    se_resnet50,
    se_resnet101,
    se_resnet152,
    se_resnext50_32x4d,
)

__all__ = [
    "SE_TABLE",
    "ResNeXtBottleneck",
    "SEBNInception",
    "SEBasicBlock",
    "SEBottleneck",
    "SEInceptionModule",
    "SEResNeXtBottleneck",
    "SEResNet",
    "SqueezeExcitation",
    "from_timm_state_dict",
    "se_bn_inception",
    "se_resnet18",
    "se_resnet34",
    "se_resnet50",
    "se_resnet101",
    "se_resnet152",
    "se_resnext50_32x4d",
]
