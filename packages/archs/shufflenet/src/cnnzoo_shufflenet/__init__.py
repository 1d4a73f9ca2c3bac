"""ShuffleNet (Zhang et al. 2017) and ShuffleNet V2 (Ma et al. 2018) for cnnzoo."""

from cnnzoo_shufflenet.layers import ChannelShuffle, channel_shuffle
from cnnzoo_shufflenet.shufflenet_v1 import (
    TABLE_1,
    ShuffleNetV1,
    ShuffleUnit,
    shufflenet_v1_g1,
    shufflenet_v1_g2,
    shufflenet_v1_g3,
    shufflenet_v1_g3_x0_5,
    shufflenet_v1_g3_x0_25,
    shufflenet_v1_g3_x1_5,
    shufflenet_v1_g3_x2_0,
    shufflenet_v1_g4,
    shufflenet_v1_g8,
)
from cnnzoo_shufflenet.shufflenet_v2 import (
    TABLE_5,
    BasicUnit,
    DownsamplingUnit,
    ShuffleNetV2,
    from_torchvision_state_dict,
    shufflenet_v2_x0_5,
    shufflenet_v2_x1_0,
    shufflenet_v2_x1_5,
    shufflenet_v2_x2_0,
)

__all__ = [
    "TABLE_1",
    "TABLE_5",
    "BasicUnit",
    "ChannelShuffle",
    "DownsamplingUnit",
    "ShuffleNetV1",
    "ShuffleNetV2",
    "ShuffleUnit",
    "channel_shuffle",
    "from_torchvision_state_dict",
    "shufflenet_v1_g1",
    "shufflenet_v1_g2",
    "shufflenet_v1_g3",
    "shufflenet_v1_g3_x0_5",
    "shufflenet_v1_g3_x0_25",
    "shufflenet_v1_g3_x1_5",
    "shufflenet_v1_g3_x2_0",
    "shufflenet_v1_g4",
    "shufflenet_v1_g8",
    "shufflenet_v2_x0_5",
    "shufflenet_v2_x1_0",
    "shufflenet_v2_x1_5",
    "shufflenet_v2_x2_0",
]
