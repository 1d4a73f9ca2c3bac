"""Faster R-CNN (Ren et al., 2015) on a registered backbone, in one of three forms.

- `single`: RPN and RoI pooling on one stride-16 map, the Faster R-CNN paper's form for
  ZFNet and VGG-16 (conv5_3, §3), with two fully connected layers on 7x7 RoIs.
- `c4`: the ResNet paper's form (He et al., 2016, appendix A; detectron2's R50-C4): the
  stages up to conv4_x are the shared trunk, RPN and 14x14 RoIAlign work on conv4_x, and
  conv5_x with global average pooling is the per-RoI head.
- `fpn`: a feature pyramid (Lin et al., 2017) on the stride 4-32 stages plus a max-pooled
  P6, with RoIs assigned to levels by size, as torchvision's fasterrcnn_resnet50_fpn.

torchvision's FasterRCNN does the rest: anchors, the RPN, RoIAlign, the losses.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from cnnzoo.card import IMAGENET_MEAN, IMAGENET_STD
from cnnzoo.features import trunk
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import MultiScaleRoIAlign

from cnnzoo_detect.backbone import (
    Backbone,
    c4_stages,
    cut_classifier,
    fpn_backbone,
    fpn_stages,
    single_map_stage,
    stage_head,
)

Neck = Literal["single", "c4", "fpn"]

# "3 scales with box areas of 128^2, 256^2 and 512^2 pixels, and 3 aspect ratios of 1:1,
# 1:2 and 2:1" (Faster R-CNN §3.1.1); on COCO a fourth scale, 64^2, "mainly motivated by
# handling small objects" (Faster R-CNN §4.2).
SINGLE_MAP_ANCHORS = (64, 128, 256, 512)
ASPECT_RATIOS = (0.5, 1.0, 2.0)
# FPN §4.1: anchors of 32^2 to 512^2 on P2-P6, one scale per level: 8 x the level's stride.
FPN_ANCHOR_PER_STRIDE = 8


class NormalizeAndBatch(GeneralizedRCNNTransform):
    """torchvision's detection transform without its resize: the data module has resized
    the images to the papers' shorter side already (one place for it), so boxes come out
    in the coordinates of the images the model was given."""

    def resize(self, image, target=None):
        return image, target


def build_faster_rcnn(
    backbone: str,
    num_classes: int,
    neck: Neck = "fpn",
    backbone_checkpoint: str | Path | None = None,
    frozen_bn: bool | None = None,
    trainable_stages: int | None = None,
    anchor_sizes: Sequence[int] | None = None,
    representation_size: int = 1024,
    image_mean: Sequence[float] = IMAGENET_MEAN,
    image_std: Sequence[float] = IMAGENET_STD,
    **faster_rcnn_kwargs: Any,
) -> FasterRCNN:
    """A Faster R-CNN for `num_classes` object classes (plus background) on a registered
    classifier `backbone`.

    `frozen_bn` and `trainable_stages` default as torchvision's do: with backbone weights
    (a checkpoint), frozen BatchNorm and the last 3 stages trainable, as the papers
    fine-tune ImageNet models; from random weights, BatchNorm as it is and every stage
    trainable. Other keyword arguments are FasterRCNN's (rpn_post_nms_top_n_test, ...).
    """
    if neck not in ("single", "c4", "fpn"):
        raise ValueError(f"neck must be 'single', 'c4' or 'fpn'; got {neck!r}.")
    choose = {"single": single_map_stage, "c4": c4_stages, "fpn": fpn_stages}[neck]
    traced, stages = cut_classifier(
        backbone, backbone_checkpoint, frozen_bn, trainable_stages, choose
    )
    info = traced.feature_info
    aspect_ratios = ASPECT_RATIOS

    if neck == "fpn":
        net = fpn_backbone(traced, stages)
        names = [str(k) for k in range(len(stages))]
        strides = [info[i].stride for i in stages] + [2 * info[stages[-1]].stride]  # + P6
        sizes = (
            [FPN_ANCHOR_PER_STRIDE * stride for stride in strides]
            if anchor_sizes is None
            else list(anchor_sizes)
        )
        if len(sizes) != len(strides):
            raise ValueError(
                f"the FPN of {backbone} has {len(strides)} levels (strides {strides}); give "
                f"one anchor size for each, or none for 8 x the stride; got {sizes}."
            )
        anchors = AnchorGenerator(tuple((s,) for s in sizes), (aspect_ratios,) * len(sizes))
        roi_pool = MultiScaleRoIAlign(names, output_size=7, sampling_ratio=2)
        box_head: nn.Module = TwoMLPHead(net.out_channels * 7 * 7, representation_size)
        box_features = representation_size
    else:
        sizes = tuple(SINGLE_MAP_ANCHORS if anchor_sizes is None else anchor_sizes)
        anchors = AnchorGenerator((sizes,), (aspect_ratios,))
        if neck == "single":
            stage = stages
            net = Backbone(trunk(traced, [stage]), info[stage].channels, fpn=None)
            # The paper's RoI pooling gives 7x7 maps to VGG's fc6 and fc7 (Faster R-CNN §3,
            # Fast R-CNN §2.1); RoIAlign (Mask R-CNN) replaces its quantised max pooling.
            roi_pool = MultiScaleRoIAlign(["0"], output_size=7, sampling_ratio=2)
            box_head = TwoMLPHead(net.out_channels * 7 * 7, representation_size)
            box_features = representation_size
        else:  # c4
            split, last = stages
            net = Backbone(trunk(traced, [split]), info[split].channels, fpn=None)
            roi_pool = MultiScaleRoIAlign(["0"], output_size=14, sampling_ratio=2)
            box_head = nn.Sequential(
                stage_head(traced, split, last), nn.AdaptiveAvgPool2d(1), nn.Flatten(1)
            )
            box_features = info[last].channels

    model = FasterRCNN(
        net,
        rpn_anchor_generator=anchors,
        box_roi_pool=roi_pool,
        box_head=box_head,
        box_predictor=FastRCNNPredictor(box_features, num_classes + 1),
        **faster_rcnn_kwargs,
    )
    model.transform = NormalizeAndBatch(
        min_size=1, max_size=1, image_mean=list(image_mean), image_std=list(image_std)
    )
    return model
