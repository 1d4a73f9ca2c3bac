"""MnasNet (Tan et al. 2019) for cnnzoo."""

from cnnzoo_mnasnet.mnasnet import (
    FIGURE_7A,
    MNASNET_B1,
    MBConv,
    MnasNet,
    SepConv,
    SqueezeExcitation,
    from_timm_state_dict,
    from_torchvision_state_dict,
    mnasnet_a1,
    mnasnet_b1,
    mnasnet_b1_050,
    mnasnet_b1_075,
    mnasnet_b1_130,
)

__all__ = [
    "FIGURE_7A",
    "MNASNET_B1",
    "MBConv",
    "MnasNet",
    "SepConv",
    "SqueezeExcitation",
    "from_timm_state_dict",
    "from_torchvision_state_dict",
    "mnasnet_a1",
    "mnasnet_b1",
    "mnasnet_b1_050",
    "mnasnet_b1_075",
    "mnasnet_b1_130",
]
