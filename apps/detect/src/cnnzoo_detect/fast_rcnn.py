"""Fast R-CNN (Girshick, "Fast R-CNN", ICCV 2015) on a registered classifier.

The whole image goes once through the convolutional trunk, cut after its last stride-16
stage (VGG-16's conv5_3, AlexNet's conv5: the last max pooling is replaced by RoI pooling,
§2.2). Each object proposal (RoI) is max-pooled from that map into a fixed 7x7 grid (§2.1),
passes fc6 and fc7, and ends in two sibling outputs: a softmax over K + 1 classes and K
class-specific box regressions (§2). The proposals come from outside (selective search in
the paper); the network only scores and refines them.

torchvision's RoIHeads does the sampling, box coding and post-processing; `FastRCNNHeads`
changes only where the paper differs: background RoIs come from IoU [0.1, 0.5) only, and the
box loss is smooth L1 with beta 1 (eq. 3). Truncated SVD (§3.1) compresses fc6 and fc7.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from cnnzoo import CnnzooError
from cnnzoo.card import IMAGENET_MEAN, IMAGENET_STD
from cnnzoo.features import trunk
from torch import nn
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.ops import RoIPool, box_iou

from cnnzoo_detect.backbone import Backbone, cut_classifier, single_map_stage
from cnnzoo_detect.model import NormalizeAndBatch
from cnnzoo_detect.proposals import check_proposals

# §2.3, "Mini-batch sampling": N = 2 images a mini-batch (the data module's batch) and
# R = 128 RoIs, "sampling 64 RoIs from each image"; "25% of the RoIs from object proposals
# that have IoU overlap with a ground-truth bounding box of at least 0.5"; background from
# "[0.1, 0.5)": "the lower threshold of 0.1 appears to act as a heuristic for hard example
# mining".
ROIS_PER_IMAGE = 64
FOREGROUND_FRACTION = 0.25
FOREGROUND_IOU = 0.5
BACKGROUND_IOU_LOW = 0.1
# Eq. 1: "we use lambda = 1"; eq. 3: smooth L1 is 0.5 x^2 below |x| = 1, |x| - 0.5 above.
LOSS_BALANCE = 1.0
SMOOTH_L1_BETA = 1.0
# "H = W = 7 for VGG16" (§2.2): the grid fc6 was trained on.
ROI_SIZE = 7
# Test (§3): per-class NMS "using the algorithm and settings from R-CNN", IoU 0.3 in the
# released code; up to 100 detections an image above a low score (py-faster-rcnn's 0.05).
TEST_NMS_IOU = 0.3
TEST_SCORE_THRESHOLD = 0.05
DETECTIONS_PER_IMAGE = 100
# §2.3: the sibling layers start from zero-mean Gaussians of these deviations, biases 0.
CLASS_SCORE_INIT_STD = 0.01
BOX_PREDICTION_INIT_STD = 0.001
# §3.1: "the top 1024 singular values from the 25088 x 4096 matrix in VGG16's fc6 layer and
# the top 256 singular values from the 4096 x 4096 fc7 layer".
FC6_RANK = 1024
FC7_RANK = 256


class FastRCNNInputError(CnnzooError, ValueError):
    """Proposals or targets that Fast R-CNN cannot take."""


class CompressionError(CnnzooError, ValueError):
    """A truncated SVD that cannot be made."""


def truncated_svd(layer: nn.Linear, rank: int) -> nn.Sequential:
    """The layer y = W x + b as two (§3.1): W ~ U Sigma_t V^T with the top `rank` singular
    values, "the first using the weight matrix Sigma_t V^T (and no biases) and the second
    using U (with the original biases associated with W)". Parameters drop from u v to
    t (u + v) for a u x v matrix W."""
    out_features, in_features = layer.weight.shape
    most = min(in_features, out_features)  # W has no more singular values
    if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= most:
        raise CompressionError(
            f"the rank of a truncated SVD of a {in_features} -> {out_features} linear layer "
            f"must be an integer from 1 to {most}, its number of singular values; got {rank!r}."
        )
    # In float64, so that at full rank the two layers give back W to float32's precision.
    U, sigma, Vt = torch.linalg.svd(layer.weight.detach().double(), full_matrices=False)
    project = nn.Linear(in_features, rank, bias=False)
    expand = nn.Linear(rank, out_features, bias=layer.bias is not None)
    dtype, device = layer.weight.dtype, layer.weight.device
    with torch.no_grad():
        project.weight.copy_(sigma[:rank, None] * Vt[:rank])
        expand.weight.copy_(U[:, :rank])
        if layer.bias is not None:
            expand.bias.copy_(layer.bias)
    return nn.Sequential(project, expand).to(device=device, dtype=dtype)


class FullyConnectedHead(TwoMLPHead):
    """fc6 and fc7 on the flattened RoI maps, each followed by ReLU and dropout as in the
    classifiers they come from (VGG-16's fc6 and fc7 keep their dropout in Fast R-CNN)."""

    def __init__(self, in_features: int, representation_size: int, dropout: float) -> None:
        super().__init__(in_features, representation_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(F.relu(self.fc6(x.flatten(1))))
        return self.dropout(F.relu(self.fc7(x)))


def multi_task_loss(
    class_logits: torch.Tensor,
    box_regression: torch.Tensor,
    labels: list[torch.Tensor],
    regression_targets: list[torch.Tensor],
) -> dict[str, torch.Tensor]:
    """Eq. 1, L = L_cls(p, u) + lambda [u >= 1] L_loc(t^u, v), averaged over the R RoIs of
    the mini-batch: log loss for the true class u, and for foreground RoIs smooth L1 (eq. 2,
    3) between the regression of class u and the normalised target v."""
    labels = torch.cat(labels)
    targets = torch.cat(regression_targets)
    classification = F.cross_entropy(class_logits, labels)
    foreground = torch.where(labels > 0)[0]
    predicted = box_regression.reshape(len(labels), -1, 4)[foreground, labels[foreground]]
    localisation = F.smooth_l1_loss(
        predicted, targets[foreground], beta=SMOOTH_L1_BETA, reduction="sum"
    ) / len(labels)
    return {"loss_classifier": classification, "loss_box_reg": LOSS_BALANCE * localisation}


class FastRCNNHeads(RoIHeads):
    """torchvision's RoIHeads on one feature map with RoI max pooling, sampling background
    from IoU [0.1, 0.5) only and training with eq. 1's loss.

    The box coder's weights (10, 10, 5, 5) are the paper's normalisation of the regression
    targets to zero mean and unit variance (§2.3): the released code divides them by the
    standard deviations (0.1, 0.1, 0.2, 0.2).
    """

    def __init__(
        self,
        box_roi_pool: RoIPool,
        box_head: FullyConnectedHead,
        box_predictor: FastRCNNPredictor,
        rois_per_image: int = ROIS_PER_IMAGE,
        foreground_fraction: float = FOREGROUND_FRACTION,
        score_thresh: float = TEST_SCORE_THRESHOLD,
        nms_thresh: float = TEST_NMS_IOU,
        detections_per_img: int = DETECTIONS_PER_IMAGE,
    ) -> None:
        super().__init__(
            box_roi_pool,
            box_head,
            box_predictor,
            fg_iou_thresh=FOREGROUND_IOU,
            bg_iou_thresh=FOREGROUND_IOU,  # below it background, until the override below
            batch_size_per_image=rois_per_image,
            positive_fraction=foreground_fraction,
            bbox_reg_weights=None,
            score_thresh=score_thresh,
            nms_thresh=nms_thresh,
            detections_per_img=detections_per_img,
        )

    def assign_targets_to_proposals(self, proposals, gt_boxes, gt_labels):
        matched_idxs, labels = super().assign_targets_to_proposals(proposals, gt_boxes, gt_labels)
        # torchvision takes every RoI below 0.5 as background; the paper none below 0.1.
        for rois, boxes, labels_in_image in zip(proposals, gt_boxes, labels, strict=True):
            if len(boxes):
                best_iou = box_iou(boxes, rois).max(dim=0).values
                labels_in_image[best_iou < BACKGROUND_IOU_LOW] = -1  # the sampler skips -1
        return matched_idxs, labels

    def forward(
        self,
        feature_map: torch.Tensor,
        proposals: list[torch.Tensor],
        image_shapes: list[tuple[int, int]],
        targets: list[dict[str, torch.Tensor]] | None = None,
    ) -> tuple[list[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
        if self.training:
            # Ground-truth boxes join the proposals first, as in the released code.
            proposals, _, labels, regression_targets = self.select_training_samples(
                proposals, targets
            )
        features = self.box_head(self.box_roi_pool(feature_map, proposals))
        class_logits, box_regression = self.box_predictor(features)
        if self.training:
            return [], multi_task_loss(class_logits, box_regression, labels, regression_targets)
        boxes, scores, labels = self.postprocess_detections(
            class_logits, box_regression, proposals, image_shapes
        )
        detections = [
            {"boxes": b, "scores": s, "labels": c}
            for b, s, c in zip(boxes, scores, labels, strict=True)
        ]
        return detections, {}


class FastRCNN(nn.Module):
    """Fast R-CNN (§2): one pass of the batch through `backbone`, RoI max pooling of each
    proposal to a `roi_size` grid at 1/`stride` of the image, fc6 and fc7, and the
    (K + 1)-way softmax and per-class box regression of `num_classes` = K classes.

    `forward(images, proposals, targets=None)`: images are float (3, H, W) tensors in
    [0, 1], proposals (N_i, 4) boxes in their pixels; training returns the losses of eq. 1
    ("loss_classifier", "loss_box_reg"), evaluation a dict of boxes, scores and labels
    for each image.

    `representation_size` is fc6's and fc7's width (4096 in VGG-16), `dropout` follows
    each; `rois_per_image` and `foreground_fraction` are §2.3's 64 and 25% (the images a
    mini-batch, N = 2, are the data's batch); `score_thresh`, `nms_thresh` and
    `detections_per_img` govern the detections at test time.
    """

    def __init__(
        self,
        backbone: Backbone,
        stride: int,
        num_classes: int,
        representation_size: int = 4096,
        roi_size: int = ROI_SIZE,
        dropout: float = 0.5,
        image_mean: Sequence[float] = IMAGENET_MEAN,
        image_std: Sequence[float] = IMAGENET_STD,
        rois_per_image: int = ROIS_PER_IMAGE,
        foreground_fraction: float = FOREGROUND_FRACTION,
        score_thresh: float = TEST_SCORE_THRESHOLD,
        nms_thresh: float = TEST_NMS_IOU,
        detections_per_img: int = DETECTIONS_PER_IMAGE,
    ) -> None:
        super().__init__()
        self.transform = NormalizeAndBatch(
            min_size=1, max_size=1, image_mean=list(image_mean), image_std=list(image_std)
        )
        self.backbone = backbone
        # §2.1: "max pooling to convert the features inside any valid region of interest into
        # a small feature map with a fixed spatial extent of H x W" (quantised, as Caffe's).
        roi_pool = RoIPool(roi_size, spatial_scale=1 / stride)
        head = FullyConnectedHead(backbone.out_channels * roi_size**2, representation_size, dropout)
        predictor = FastRCNNPredictor(representation_size, num_classes + 1)
        for layer, std in (
            (predictor.cls_score, CLASS_SCORE_INIT_STD),
            (predictor.bbox_pred, BOX_PREDICTION_INIT_STD),
        ):
            nn.init.normal_(layer.weight, std=std)
            nn.init.zeros_(layer.bias)
        self.roi_heads = FastRCNNHeads(
            roi_pool,
            head,
            predictor,
            rois_per_image=rois_per_image,
            foreground_fraction=foreground_fraction,
            score_thresh=score_thresh,
            nms_thresh=nms_thresh,
            detections_per_img=detections_per_img,
        )

    def forward(
        self,
        images: list[torch.Tensor],
        proposals: list[torch.Tensor],
        targets: list[dict[str, torch.Tensor]] | None = None,
    ) -> dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]:
        check_proposals(images, proposals, "Fast R-CNN", self.training)
        if self.training and targets is None:
            raise FastRCNNInputError(
                "Fast R-CNN in training mode needs targets (boxes and labels of each image) "
                "to sample and label its RoIs; call model.eval() to detect."
            )
        batch, targets = self.transform(images, targets)
        (feature_map,) = self.backbone(batch.tensors).values()
        proposals = [boxes.to(feature_map.device, torch.float32) for boxes in proposals]
        detections, losses = self.roi_heads(feature_map, proposals, batch.image_sizes, targets)
        return losses if self.training else detections

    def compress(self, fc6_rank: int = FC6_RANK, fc7_rank: int = FC7_RANK) -> tuple[int, int]:
        """Replace fc6 and fc7 by their truncated SVDs (§3.1), in place; the model's
        parameter counts before and after."""
        head = self.roi_heads.box_head
        if not (isinstance(head.fc6, nn.Linear) and isinstance(head.fc7, nn.Linear)):
            raise CompressionError(
                "fc6 and fc7 are compressed already; build the model again (or load its "
                "uncompressed weights) to compress with other ranks."
            )
        before = sum(p.numel() for p in self.parameters())
        fc6, fc7 = truncated_svd(head.fc6, fc6_rank), truncated_svd(head.fc7, fc7_rank)
        head.fc6, head.fc7 = fc6, fc7
        return before, sum(p.numel() for p in self.parameters())


def start_from_classifier(head: FullyConnectedHead, classifier: nn.Module) -> bool:
    """§2.2: the pre-trained network's fc6 and fc7 become the head's, where it has them and
    their shapes agree (VGG's on 7x7 RoIs; AlexNet's and ZFNet's on 6x6, roi_size=6 and
    representation_size=4096). Whether they were copied."""
    pairs = []
    for name in ("fc6", "fc7"):
        layers = getattr(classifier, name, nn.Identity()).modules()
        theirs = [layer for layer in layers if isinstance(layer, nn.Linear)]
        ours = getattr(head, name)
        if len(theirs) != 1 or theirs[0].weight.shape != ours.weight.shape:
            return False
        pairs.append((ours, theirs[0]))
    with torch.no_grad():
        for ours, theirs in pairs:
            ours.weight.copy_(theirs.weight)
            ours.bias.copy_(theirs.bias)
    return True


def build_fast_rcnn(
    backbone: str,
    num_classes: int,
    backbone_checkpoint: str | Path | None = None,
    frozen_bn: bool | None = None,
    trainable_stages: int | None = None,
    representation_size: int = 4096,
    image_mean: Sequence[float] = IMAGENET_MEAN,
    image_std: Sequence[float] = IMAGENET_STD,
    **kwargs: Any,
) -> FastRCNN:
    """A Fast R-CNN for `num_classes` object classes (plus background) on the registered
    classifier `backbone`, cut after its last stride-16 stage.

    `frozen_bn` and `trainable_stages` default as `build_faster_rcnn`'s: with backbone
    weights, frozen BatchNorm and the last 3 stages trainable (VGG-16's conv3_1 and up, as
    §4.5 fine-tunes it); from random weights, everything trains. Where the classifier has
    fc6 and fc7 of the head's shapes, they start it (§2.2). Other keyword arguments are
    FastRCNN's (roi_size, dropout, rois_per_image, score_thresh, nms_thresh, ...).
    """
    traced, stage = cut_classifier(
        backbone, backbone_checkpoint, frozen_bn, trainable_stages, single_map_stage
    )
    info = traced.feature_info
    model = FastRCNN(
        Backbone(trunk(traced, [stage]), info[stage].channels, fpn=None),
        info[stage].stride,
        num_classes,
        representation_size=representation_size,
        image_mean=image_mean,
        image_std=image_std,
        **kwargs,
    )
    start_from_classifier(model.roi_heads.box_head, traced.model)
    return model
