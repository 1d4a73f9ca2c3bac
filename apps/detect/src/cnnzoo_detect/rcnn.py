"""R-CNN (Girshick, Donahue, Darrell and Malik, "Rich feature hierarchies for accurate object
detection and semantic segmentation", CVPR 2014, and its appendices) on a registered classifier.

Each object proposal is warped, with 16 pixels of context, to the classifier's input size
(§2.1, appendix A) and passes the whole network; its pool5 and fc7 features do the rest:

1. fine-tuning (§2.3): the classifier's last layer becomes a (K + 1)-way softmax, trained
   by SGD on batches of 32 foreground windows (IoU >= 0.5) and 96 background ones;
2. object category classifiers (§2.3): one linear SVM per class on fc7, its positives the
   ground-truth boxes and its negatives the proposals of IoU < 0.3, with hard negative
   mining over one pass of the training images;
3. bounding-box regression (appendix C): class-specific ridge regression from pool5;
4. test (§2.2): every proposal scored by every SVM, its box regressed, and greedy
   non-maximum suppression for each class.

The SVMs are in `cnnzoo_detect.svm`, the box regression in `cnnzoo_detect.box_regression`.
Stages 2 and 3 are fit outside SGD: `collect_features` over the training batches, then
`fit_classifiers`. Until the SVMs are fit the model scores with its fine-tuned softmax
(appendix B's "FT softmax" variant); `scoring` says which.

The constants come from the paper where it gives them and from its released code
(github.com/rbgirshick/rcnn: rcnn_train.m, rcnn_im_crop.m, rcnn_train_bbox_regressor.m)
where it does not.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from cnnzoo import ClassifierNet, CnnzooError
from cnnzoo.card import IMAGENET_MEAN, IMAGENET_STD
from torch import nn
from torchvision.ops import batched_nms, box_iou, clip_boxes_to_image, roi_align

from cnnzoo_detect.backbone import freeze_batchnorm, load_classifier
from cnnzoo_detect.box_regression import (
    REGRESSION_IOU,
    REGRESSION_SAMPLES_PER_CLASS,
    RIDGE_LAMBDA,
    RegressionSamples,
    apply_regression,
    regression_targets,
    ridge_regression,
)
from cnnzoo_detect.proposals import check_proposals
from cnnzoo_detect.svm import FEATURE_NORM, HardNegativeCache

# Appendix A: "we dilate the tight bounding box so that at the warped size there are exactly
# p pixels of warped image context around the original box (we use p = 16)".
CONTEXT_PADDING = 16
# §2.3, fine-tuning: "all region proposals with >= 0.5 IoU overlap with a ground-truth box
# [are] positives for that box's class and the rest as negatives"; "in each SGD iteration, we
# uniformly sample 32 positive windows (over all classes) and 96 background windows to
# construct a mini-batch of size 128".
FOREGROUND_IOU = 0.5
WINDOWS_PER_BATCH = 128
POSITIVE_WINDOWS = 32
# §2.3, the SVMs: negatives are proposals "with less than 0.3 IoU overlap with all instances
# of a class"; positives are the ground-truth boxes alone.
NEGATIVE_IOU = 0.3
# §2.2: "greedy non-maximum suppression (for each class independently)"; the released code
# (rcnn_test.m) suppresses at IoU 0.3. Up to 100 detections an image.
TEST_NMS_IOU = 0.3
DETECTIONS_PER_IMAGE = 100
# "A low score threshold": the SVMs' margin for their scores (a window below -1 is one the
# SVM was trained to reject with room to spare), torchvision's 0.05 for softmax scores.
SVM_SCORE_THRESHOLD = -1.0
SOFTMAX_SCORE_THRESHOLD = 0.05


class RCNNError(CnnzooError, ValueError):
    """Input R-CNN cannot take, or a stage asked for before the one it needs."""


class UntrainedClassWarning(UserWarning):
    """Classes whose SVM could not be trained: they are never detected."""


def dilate_boxes(boxes: torch.Tensor, size: int, context: int = CONTEXT_PADDING) -> torch.Tensor:
    """Each box grown about its centre so that, warped to `size` x `size`, the original box
    fills the central size - 2 * context pixels: `context` pixels of image around it on
    every side (appendix A), in each direction on its own scale (the warp is anisotropic)."""
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    half_sides = (boxes[:, 2:] - boxes[:, :2]) / 2 * (size / (size - 2 * context))
    return torch.cat([centres - half_sides, centres + half_sides], dim=1)


def warp_regions(
    image: torch.Tensor, boxes: torch.Tensor, size: int, context: int = CONTEXT_PADDING
) -> torch.Tensor:
    """The regions of a normalised (3, H, W) image, each dilated by `context` warped pixels
    (appendix A) and warped to `size` x `size`: (N, 3, size, size).

    The warp samples the image bilinearly at the centres of the output pixels, without
    antialiasing, as the released code's `imresize(..., 'bilinear', 'antialiasing', false)`
    (rcnn_im_crop.m, "to better match OpenCV's bilinear interpolation that is used in
    Caffe's WindowDataLayer"): roi_align with one sample a bin, pixel centres aligned. Where
    the dilated box leaves the image, the warp sees the image mean, zero after normalisation:
    the image is padded with zeros far enough that roi_align never clamps to its border.
    """
    windows = dilate_boxes(boxes.to(image.dtype), size, context)
    height, width = image.shape[-2:]
    overhang = torch.cat([-windows[:, :2], windows[:, 2:] - windows.new_tensor([width, height])])
    margin = math.ceil(max(overhang.max().item(), 0.0)) + 1 if len(windows) else 0
    padded = F.pad(image, (margin, margin, margin, margin))
    indexed = torch.cat([windows.new_zeros(len(windows), 1), windows + margin], dim=1)
    return roi_align(padded[None], indexed, size, sampling_ratio=1, aligned=True)


def window_labels(
    regions: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor, iou: float = FOREGROUND_IOU
) -> torch.Tensor:
    """Fine-tuning's label of each region (§2.3): the class of the ground-truth box it
    overlaps most if that IoU is at least `iou`, else 0 (background)."""
    if len(boxes) == 0:
        return torch.zeros(len(regions), dtype=torch.int64, device=regions.device)
    best_iou, best = box_iou(regions, boxes).max(dim=1)
    return torch.where(best_iou >= iou, labels[best], 0)


def sample_windows(
    labels: torch.Tensor,
    batch_size: int = WINDOWS_PER_BATCH,
    positives: int = POSITIVE_WINDOWS,
) -> torch.Tensor:
    """The indices of one SGD batch (§2.3): `positives` foreground windows drawn uniformly
    over all classes, the rest of the `batch_size` background. With fewer foreground windows
    than that, all of them and more background, as Fast R-CNN's sampling fills its batch."""
    foreground = torch.nonzero(labels > 0).flatten()
    background = torch.nonzero(labels == 0).flatten()
    foreground = foreground[torch.randperm(len(foreground), device=labels.device)[:positives]]
    background_count = batch_size - len(foreground)
    background = background[torch.randperm(len(background), device=labels.device)]
    return torch.cat([foreground, background[:background_count]])


@dataclass
class FeatureCollection:
    """What `collect_features` gathers for the SVMs and the box regressors. The feature
    scales are set on the first image, as rcnn_feature_stats measures the mean norm on a
    sample of training images before training."""

    fc7_scale: float
    pool5_scale: float
    caches: list[HardNegativeCache]
    regression: list[RegressionSamples]
    images: int = 0


def ground_truth(target: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """A target's boxes and labels, crowd regions left out (they are not trained on)."""
    boxes, labels = target["boxes"], target["labels"]
    if "iscrowd" in target:
        keep = target["iscrowd"] == 0
        boxes, labels = boxes[keep], labels[keep]
    return boxes.float(), labels


def usable_proposals(boxes: torch.Tensor, image_size: Sequence[int]) -> torch.Tensor:
    """Proposals clipped to their image, those with no width or height left out."""
    boxes = clip_boxes_to_image(boxes.float(), tuple(image_size))
    sides = boxes[:, 2:] - boxes[:, :2]
    return boxes[(sides >= 1).all(dim=1)]


class RCNN(nn.Module):
    """R-CNN on `classifier` for `num_classes` = K object classes.

    `forward(images, proposals, targets=None)`: images are float (3, H, W) tensors in [0, 1]
    and proposals (N_i, 4) boxes in their pixels. Training fine-tunes the network and
    returns {"loss_classifier": ...}; evaluation returns a dict of boxes, scores and labels
    for each image, scored by the SVMs once they are fit (`fit_classifiers`) and by the
    fine-tuned softmax before, and box-regressed once the regressors are fit.

    Args:
        classifier: a registered classifier (`cnnzoo.create_model`); its classifier is
            replaced by a randomly initialised (K + 1)-way one (§2.3).
        num_classes: object classes, background not counted.
        warp_size: the side regions are warped to; None: the classifier's input size
            (the paper's 227 for Caffe's AlexNet).
        region_batch: regions warped and passed through the network at once at test and
            while collecting features.
        image_mean, image_std: the normalisation the classifier was trained with.
        svm_score_threshold, softmax_score_threshold: detections scoring below are dropped.
        regression_samples_per_class: the most box-regression samples kept for a class.
    """

    def __init__(
        self,
        classifier: ClassifierNet,
        num_classes: int,
        warp_size: int | None = None,
        region_batch: int = 256,
        image_mean: Sequence[float] = IMAGENET_MEAN,
        image_std: Sequence[float] = IMAGENET_STD,
        svm_score_threshold: float = SVM_SCORE_THRESHOLD,
        softmax_score_threshold: float = SOFTMAX_SCORE_THRESHOLD,
        detections_per_img: int = DETECTIONS_PER_IMAGE,
        regression_samples_per_class: int = REGRESSION_SAMPLES_PER_CLASS,
    ) -> None:
        super().__init__()
        name = classifier.name or type(classifier).__name__
        if warp_size is None:
            warp_size = classifier.card.input_size[-1] if classifier.card else 224
        if warp_size <= 2 * CONTEXT_PADDING:
            raise RCNNError(
                f"warp_size {warp_size} leaves no room for the box inside its "
                f"{CONTEXT_PADDING}-pixel context on each side (appendix A); give more than "
                f"{2 * CONTEXT_PADDING} (the paper warps to 227, {name}'s input is "
                f"{classifier.card.input_size[-1] if classifier.card else 'unknown'})."
            )
        if num_classes < 1:
            raise RCNNError(
                f"num_classes must be at least 1 (background not counted); got {num_classes}."
            )
        classifier.reset_classifier(num_classes + 1)
        self.network = classifier
        self.num_classes = num_classes
        self.warp_size = warp_size
        self.region_batch = region_batch
        self.svm_score_threshold = svm_score_threshold
        self.softmax_score_threshold = softmax_score_threshold
        self.detections_per_img = detections_per_img
        self.regression_samples_per_class = regression_samples_per_class
        self.register_buffer("image_mean", torch.tensor(image_mean).view(3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(image_std).view(3, 1, 1), persistent=False)
        pool5_dim, fc7_dim = self._feature_dims(name)
        # The SVMs and the box regressors, fit outside SGD; buffers, so that checkpoints keep
        # them and optimizers leave them alone.
        self.register_buffer("svm_weight", torch.zeros(num_classes, fc7_dim))
        self.register_buffer("svm_bias", torch.zeros(num_classes))
        self.register_buffer("box_regressor", torch.zeros(num_classes, 4, pool5_dim + 1))
        self.register_buffer("svms_fit", torch.tensor(False))
        self.register_buffer("box_regressors_fit", torch.tensor(False))
        self.collection: FeatureCollection | None = None

    def _feature_dims(self, name: str) -> tuple[int, int]:
        """The sizes of pool5 (the last feature map, flattened) and fc7 at the warp size."""
        training = self.network.training
        reference = next(self.network.parameters())
        window = reference.new_zeros(1, 3, self.warp_size, self.warp_size)
        self.network.eval()
        try:
            with torch.no_grad():
                pool5 = self.network.forward_features(window)
                fc7 = self.network.forward_head(pool5, pre_logits=True)
        except (RuntimeError, ValueError) as error:
            raise RCNNError(
                f"{name} cannot take {self.warp_size}x{self.warp_size} windows ({error}); "
                f"give a warp_size it takes (its input size: warp_size=None)."
            ) from error
        finally:
            self.network.train(training)
        return pool5[0].numel(), fc7.shape[1]

    @property
    def scoring(self) -> str:
        """ "svm" once the SVMs are fit, else "softmax": the fine-tuned network's (K + 1)-way
        softmax, appendix B's "FT softmax" variant."""
        return "svm" if bool(self.svms_fit) else "softmax"

    def normalise(self, image: torch.Tensor) -> torch.Tensor:
        return (image - self.image_mean) / self.image_std

    def region_features(
        self, image: torch.Tensor, boxes: torch.Tensor
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """pool5 (flattened) and fc7 of the warped regions of a normalised image,
        `region_batch` regions at a time."""
        for chunk in boxes.split(self.region_batch):
            pool5 = self.network.forward_features(warp_regions(image, chunk, self.warp_size))
            yield pool5.flatten(1), self.network.forward_head(pool5, pre_logits=True)

    def forward(
        self,
        images: list[torch.Tensor],
        proposals: list[torch.Tensor],
        targets: list[dict[str, torch.Tensor]] | None = None,
    ) -> dict[str, torch.Tensor] | list[dict[str, torch.Tensor]]:
        self._check_inputs(images, proposals, targets)
        if self.training:
            return {"loss_classifier": self.finetuning_loss(images, proposals, targets)}
        return [self.detect(image, boxes) for image, boxes in zip(images, proposals, strict=True)]

    def _check_inputs(self, images, proposals, targets) -> None:
        check_proposals(images, proposals, "R-CNN", self.training)
        if self.training and (targets is None or len(targets) != len(images)):
            raise RCNNError(
                "R-CNN in training mode fine-tunes on windows labelled by the ground truth: "
                "give targets (boxes and labels, a dict for each image), or call model.eval() "
                "to detect."
            )

    def finetuning_loss(
        self,
        images: list[torch.Tensor],
        proposals: list[torch.Tensor],
        targets: list[dict[str, torch.Tensor]],
    ) -> torch.Tensor:
        """Cross entropy of the (K + 1)-way classifier on one SGD batch of windows (§2.3),
        drawn from these images' proposals and ground-truth boxes."""
        regions, labels, owners = [], [], []
        for index, (image, boxes, target) in enumerate(
            zip(images, proposals, targets, strict=True)
        ):
            truth, truth_labels = ground_truth(target)
            truth, truth_labels = truth.to(image.device), truth_labels.to(image.device)
            candidates = torch.cat(
                [truth, usable_proposals(boxes.to(image.device), image.shape[-2:])]
            )
            regions.append(candidates)
            labels.append(window_labels(candidates, truth, truth_labels))
            owners.append(torch.full((len(candidates),), index, device=image.device))
        regions, labels, owners = torch.cat(regions), torch.cat(labels), torch.cat(owners)
        if len(regions) == 0:
            raise RCNNError(
                "these images have neither proposals nor ground-truth boxes: R-CNN has no "
                "window to fine-tune on. Give each image its proposals."
            )
        chosen = sample_windows(labels)
        chosen = chosen[owners[chosen].argsort(stable=True)]  # grouped by image, to warp
        windows = torch.cat(
            [
                warp_regions(
                    self.normalise(image), regions[chosen][owners[chosen] == index], self.warp_size
                )
                for index, image in enumerate(images)
            ]
        )
        logits = self.network.forward_head(self.network.forward_features(windows))
        return F.cross_entropy(logits, labels[chosen])

    def detect(self, image: torch.Tensor, proposals: torch.Tensor) -> dict[str, torch.Tensor]:
        """Test time (§2.2) on one image: every proposal warped and scored for every class,
        its box regressed for that class (appendix C), then greedy NMS for each class."""
        boxes = usable_proposals(proposals.to(image.device), image.shape[-2:])
        normalised = self.normalise(image)
        scores, regressed = [], []
        for chunk, (pool5, fc7) in zip(
            boxes.split(self.region_batch), self.region_features(normalised, boxes), strict=True
        ):
            scores.append(self.class_scores(fc7))
            regressed.append(self.regress(chunk, pool5))
        scores = torch.cat(scores) if scores else image.new_zeros(0, self.num_classes)
        regressed = torch.cat(regressed) if regressed else image.new_zeros(0, self.num_classes, 4)
        return self.suppress(regressed, scores, image.shape[-2:])

    def class_scores(self, fc7: torch.Tensor) -> torch.Tensor:
        """(N, K) scores: the SVMs' once fit, else the fine-tuned softmax's."""
        if self.scoring == "svm":
            return fc7 @ self.svm_weight.T + self.svm_bias
        return F.softmax(self.network.get_classifier()(fc7), dim=1)[:, 1:]

    def regress(self, proposals: torch.Tensor, pool5: torch.Tensor) -> torch.Tensor:
        """(N, K, 4): each proposal's box for each class, moved by that class's regressor
        once fit, else the proposal as it is."""
        if not bool(self.box_regressors_fit):
            return proposals[:, None].expand(-1, self.num_classes, -1)
        features = torch.cat([pool5, pool5.new_ones(len(pool5), 1)], dim=1)
        t = torch.einsum("nd,ktd->nkt", features, self.box_regressor)
        return apply_regression(proposals[:, None], t)

    def suppress(
        self, boxes: torch.Tensor, scores: torch.Tensor, image_size: Sequence[int]
    ) -> dict[str, torch.Tensor]:
        """The detections of one image from (N, K, 4) boxes and (N, K) scores: those above
        the score threshold, greedy NMS at IoU 0.3 within each class, the best 100 kept."""
        threshold = (
            self.svm_score_threshold if self.scoring == "svm" else self.softmax_score_threshold
        )
        labels = torch.arange(1, self.num_classes + 1, device=scores.device).expand_as(scores)
        boxes = clip_boxes_to_image(boxes.reshape(-1, 4), tuple(image_size))
        scores, labels = scores.reshape(-1), labels.reshape(-1)
        keep = scores > threshold
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        keep = batched_nms(boxes, scores, labels, TEST_NMS_IOU)[: self.detections_per_img]
        return {"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]}

    @torch.no_grad()
    def collect_features(
        self,
        images: list[torch.Tensor],
        proposals: list[torch.Tensor],
        targets: list[dict[str, torch.Tensor]],
    ) -> None:
        """Gather, from one batch of training images, what the SVMs and the box regressors
        are fit on: fc7 of the ground-truth boxes (each SVM's positives), the hard negatives
        of each class (mining as it goes, §2.3), and pool5 of the proposals near a
        ground-truth box (appendix C). Call it over one pass of the training data, then
        `fit_classifiers()`; the network runs in eval mode, as at test."""
        if targets is None or len(targets) != len(images):
            raise RCNNError(
                "collect_features labels regions by the ground truth: give targets (boxes "
                "and labels, a dict for each image) with the images."
            )
        self._check_inputs(images, proposals, targets)
        training = self.training
        self.eval()
        try:
            for image, boxes, target in zip(images, proposals, targets, strict=True):
                self._collect_image(image, boxes, target)
        finally:
            self.train(training)

    def _collect_image(self, image, proposals, target) -> None:
        truth, truth_labels = (t.to(image.device) for t in ground_truth(target))
        # The ground-truth boxes are regions too: positives for their class, negatives
        # for the others, regression samples with targets 0.
        regions = torch.cat([truth, usable_proposals(proposals.to(image.device), image.shape[-2:])])
        if len(regions) == 0:
            return
        pool5_rows: list[torch.Tensor] = []
        fc7_rows: list[torch.Tensor] = []
        overlaps = box_iou(regions, truth)  # (regions, ground truth)
        near_truth = (overlaps > REGRESSION_IOU).any(dim=1)
        near_chunks = near_truth.split(self.region_batch)
        for near, (pool5, fc7) in zip(
            near_chunks, self.region_features(self.normalise(image), regions), strict=True
        ):
            pool5_rows.append(pool5[near].cpu())
            fc7_rows.append(fc7.cpu())
        fc7 = torch.cat(fc7_rows)
        pool5 = torch.cat(pool5_rows)
        if self.collection is None:
            self.collection = self._start_collection(fc7, pool5)
        collection = self.collection
        collection.images += 1
        overlaps, truth, truth_labels = overlaps.cpu(), truth.cpu(), truth_labels.cpu()
        regions, near_truth = regions.cpu(), near_truth.cpu()
        for label in range(1, self.num_classes + 1):
            of_class = truth_labels == label
            cache = collection.caches[label - 1]
            if of_class.any():
                cache.add_positives(fc7[: len(truth)][of_class])
                class_overlaps = overlaps[:, of_class]
                best_iou, best = class_overlaps[near_truth].max(dim=1)
                assigned = best_iou > REGRESSION_IOU
                collection.regression[label - 1].add(
                    pool5[assigned],
                    regression_targets(
                        regions[near_truth][assigned], truth[of_class][best[assigned]]
                    ),
                )
                negatives = (class_overlaps < NEGATIVE_IOU).all(dim=1)
            else:
                negatives = torch.ones(len(regions), dtype=torch.bool)
            cache.add_negatives(fc7, negatives)
            if cache.due():
                cache.train()

    def _start_collection(self, fc7: torch.Tensor, pool5: torch.Tensor) -> FeatureCollection:
        """The feature scales (mean norm 20, rcnn_scale_features) from the first image."""
        fc7_scale = FEATURE_NORM / fc7.norm(dim=1).mean().clamp(min=1e-12).item()
        pool5_norm = pool5.norm(dim=1).mean().item() if len(pool5) else 0.0
        return FeatureCollection(
            fc7_scale=fc7_scale,
            pool5_scale=FEATURE_NORM / pool5_norm if pool5_norm > 0 else 1.0,
            caches=[HardNegativeCache(fc7_scale) for _ in range(self.num_classes)],
            regression=[
                RegressionSamples(self.regression_samples_per_class)
                for _ in range(self.num_classes)
            ],
        )

    def _collected(self, what: str, features: str) -> FeatureCollection:
        if self.collection is None:
            raise RCNNError(
                f"R-CNN's {what} are trained on {features} features of the training "
                f"proposals: collect_features(images, proposals, targets) first, over one "
                f"pass of the training data."
            )
        return self.collection

    def fit_svms(self) -> None:
        """Train each class's SVM a last time on its positives and hard negatives (the end
        of the pass in rcnn_train.m) and keep it in the buffers. A class with no
        ground-truth box in the data seen has no positives: its SVM is left out (weight 0,
        bias -inf, so it never detects), with a warning that names it."""
        collection = self._collected("SVMs", "fc7")
        weights = torch.zeros_like(self.svm_weight, device="cpu")
        biases = torch.full_like(self.svm_bias, -math.inf, device="cpu")
        untrained = []
        for label, cache in enumerate(collection.caches, start=1):
            if cache.negatives is None or len(cache.negatives) == 0:
                untrained.append(label)
                continue
            cache.train()
            weights[label - 1], biases[label - 1] = cache.weight, cache.bias
        if len(untrained) == self.num_classes:
            raise RCNNError(
                f"no class could be trained: the {collection.images} images collected hold "
                f"no ground-truth box (or no negative window). Collect features of images "
                f"with boxes and proposals."
            )
        if untrained:
            warnings.warn(
                f"no ground-truth box (so no positive for its SVM), or no negative window, "
                f"of the classes labelled {untrained} in the {collection.images} images "
                f"collected: their SVMs are left out (score -inf), so they are never "
                f"detected. Collect features over all the training images.",
                UntrainedClassWarning,
                stacklevel=2,
            )
        self.svm_weight.copy_(weights)
        self.svm_bias.copy_(biases)
        self.svms_fit.fill_(True)

    def fit_box_regressors(self, lam: float = RIDGE_LAMBDA) -> None:
        """Fit each class's ridge regressors from pool5 (appendix C) and keep them in the
        buffers. A class with no sample keeps the identity (t = 0: the proposal unmoved)."""
        collection = self._collected("box regressors", "pool5")
        regressors = torch.zeros_like(self.box_regressor, device="cpu")
        for label, samples in enumerate(collection.regression, start=1):
            if len(samples) == 0:
                continue
            features = torch.cat(samples.features).float() * collection.pool5_scale
            weights = ridge_regression(features, torch.cat(samples.targets), lam)
            # Fold the scale in, so that the regressors take pool5 as the network gives it.
            weights[:, :-1] *= collection.pool5_scale
            regressors[label - 1] = weights
        self.box_regressor.copy_(regressors)
        self.box_regressors_fit.fill_(True)

    def fit_classifiers(self) -> None:
        """Fit the SVMs and the box regressors, then let the collected features go."""
        self.fit_svms()
        self.fit_box_regressors()
        self.collection = None


def build_rcnn(
    backbone: str,
    num_classes: int,
    backbone_checkpoint: str | Path | None = None,
    frozen_bn: bool | None = None,
    **kwargs: Any,
) -> RCNN:
    """An R-CNN for `num_classes` object classes on the registered classifier `backbone`,
    at random or with the weights of a cnnzoo classification checkpoint (the paper starts
    from ImageNet's AlexNet, §2.3). `frozen_bn` defaults as `build_faster_rcnn`'s: frozen
    BatchNorm with a checkpoint. Other keyword arguments are RCNN's (warp_size,
    region_batch, ...)."""
    frozen_bn = backbone_checkpoint is not None if frozen_bn is None else frozen_bn
    classifier = load_classifier(backbone, backbone_checkpoint)
    if frozen_bn:
        freeze_batchnorm(classifier)
    return RCNN(classifier, num_classes, **kwargs)
