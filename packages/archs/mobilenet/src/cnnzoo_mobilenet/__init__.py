"""MobileNet-v1 (Howard et al. 2017) and MobileNet-v2 (Sandler et al. 2018) for cnnzoo."""

from cnnzoo_mobilenet.mobilenet_v1 import (
    TABLE_1,
    DepthwiseSeparableConv,
    MobileNetV1,
    from_timm_state_dict,
    mobilenet_v1,
    mobilenet_v1_025,
    mobilenet_v1_050,
    mobilenet_v1_075,
)
from cnnzoo_mobilenet.mobilenet_v2 import (
    TABLE_2,
    InvertedResidual,
    MobileNetV2,
    from_torchvision_state_dict,
    mobilenet_v2,
    mobilenet_v2_035,
    mobilenet_v2_050,
    mobilenet_v2_075,
    mobilenet_v2_140,
)

__all__ = [
    "TABLE_1",
    "TABLE_2",
    "DepthwiseSeparableConv",
    "InvertedResidual",
    "MobileNetV1",
    "MobileNetV2",
    "from_timm_state_dict",
    "from_torchvision_state_dict",
    "mobilenet_v1",
    "mobilenet_v1_025",
    "mobilenet_v1_050",
    "mobilenet_v1_075",
    "mobilenet_v2",
    "mobilenet_v2_035",
    "mobilenet_v2_050",
    "mobilenet_v2_075",
    "mobilenet_v2_140",
]
