"""The detection LightningModule: trains one of the R-CNN line, evaluates COCO mAP, predicts
boxes.

The three methods, each the paper's own, share the backbone cutting, the data and the
evaluation:

- `rcnn` (Girshick et al., 2014): each selective-search proposal warped to the network's
  input and classified alone; SGD fine-tunes the network on warped windows, and after the
  last epoch one linear SVM a class and the box regressors are fit on its features.
- `fast_rcnn` (Girshick, 2015): the image through the trunk once, each proposal max-pooled
  from the stride-16 map, a softmax and box regressor trained jointly.
- `faster_rcnn` (Ren et al., 2015): the proposals from a region proposal network on the
  same map, so no selective search; on a single map, C4 or a feature pyramid.

Batches are (images, targets): lists of uint8 images, already resized by the data module,
and of dicts with `boxes` (x1, y1, x2, y2 in the resized image), `labels`, `iscrowd`,
`orig_size` and, for the first two methods, `proposals` (in the resized image too).
Evaluation and prediction give boxes back in the image file's coordinates.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from typing import Any, Literal

import lightning as L
import torch
from cnnzoo import CnnzooError
from cnnzoo.card import IMAGENET_MEAN, IMAGENET_STD
from cnnzoo.optim import OptimizerSpec, ScheduleSpec, configure_optimization, step_scheduler
from torchmetrics.detection import MeanAveragePrecision
from tqdm.auto import tqdm

from cnnzoo_detect.fast_rcnn import build_fast_rcnn
from cnnzoo_detect.model import Neck, build_faster_rcnn
from cnnzoo_detect.proposals import ProposalError
from cnnzoo_detect.rcnn import build_rcnn

Method = Literal["rcnn", "fast_rcnn", "faster_rcnn"]
# The methods that classify proposals made outside the network (selective search).
PROPOSAL_METHODS = ("rcnn", "fast_rcnn")

MONITOR = "val/map"
# The detectors' SGD (Detectron, torchvision's reference: 0.02 for 16 images a batch; scale
# the rate with the batch) with the papers' momentum and weight decay.
DEFAULT_OPTIMIZER = OptimizerSpec(name="sgd", lr=0.02, momentum=0.9, weight_decay=1e-4)


def to_file_coordinates(boxes: torch.Tensor, size: Sequence[int], orig_size) -> torch.Tensor:
    """Boxes of a resized image (height, width = size) in its file's pixel coordinates."""
    height, width = size
    orig_height, orig_width = (int(v) for v in orig_size)
    scale = boxes.new_tensor([orig_width / width, orig_height / height] * 2)
    return boxes * scale


def check_neck(method: Method, neck: Neck | None) -> Neck | None:
    """The neck a method takes: Faster R-CNN any (fpn by default), Fast R-CNN the single
    map it was built on, R-CNN none (it warps each region into the whole network)."""
    if method not in ("rcnn", "fast_rcnn", "faster_rcnn"):
        raise ValueError(f"method must be rcnn, fast_rcnn or faster_rcnn; got {method!r}.")
    if method == "faster_rcnn":
        return neck or "fpn"
    allowed = ("single",) if method == "fast_rcnn" else ()
    if neck is not None and neck not in allowed:
        raise ValueError(
            f"{method} has {'only the single stride-16 map' if allowed else 'no neck'}: it "
            f"cannot take --model.neck {neck}. Leave the neck out, or use --model.method "
            f"faster_rcnn for {neck}."
        )
    return "single" if method == "fast_rcnn" else None


class Detector(L.LightningModule):
    """R-CNN, Fast R-CNN or Faster R-CNN on a registered cnnzoo backbone.

    Args:
        backbone: registry name of the classifier to build on (`cnnzoo models`).
        neck: Faster R-CNN's form: "single" (one stride-16 map, the Faster R-CNN paper's
            VGG-16), "c4" (the ResNet paper's conv4_x trunk and conv5_x RoI head) or "fpn";
            None: fpn. Fast R-CNN has the single map only; R-CNN has no neck.
        method: "rcnn", "fast_rcnn" or "faster_rcnn" (see the module's docstring); the
            first two read each image's `proposals` (--data.proposals selective_search).
        num_classes: object classes, background not counted; the CLI takes it from the data.
        backbone_checkpoint: a cnnzoo classification checkpoint (`cnnzoo fit`) of `backbone`
            whose weights start the backbone.
        frozen_bn: BatchNorm as FrozenBatchNorm2d; None: frozen when a checkpoint is given.
        trainable_stages: how many of the last feature stages train; None: 3 with a
            checkpoint (conv1 and conv2_x fixed, as in the papers), all without.
        anchor_sizes: anchor sides in pixels; None: 64-512 on one map, 8 x stride on FPN.
        representation_size: width of the two fully connected layers of the box head
            (single and fpn; 4096 in VGG-16's fc6 and fc7, 1024 in the FPN paper).
        image_mean, image_std: the normalisation the backbone was trained with.
        faster_rcnn: further arguments of torchvision's FasterRCNN, by its names
            (rpn_post_nms_top_n_train, box_detections_per_img, ...).
        fast_rcnn: further arguments of `cnnzoo_detect.fast_rcnn.FastRCNN` (roi_size,
            rois_per_image, nms_thresh, ...).
        rcnn: further arguments of `cnnzoo_detect.rcnn.RCNN` (warp_size, region_batch, ...).
        optimizer, schedule: see cnnzoo.optim; SGD at 0.02 for 16 images by default.
    """

    def __init__(
        self,
        backbone: str = "resnet50",
        neck: Neck | None = None,
        method: Method = "faster_rcnn",
        num_classes: int = 80,
        backbone_checkpoint: str | None = None,
        frozen_bn: bool | None = None,
        trainable_stages: int | None = None,
        anchor_sizes: list[int] | None = None,
        representation_size: int = 1024,
        image_mean: tuple[float, float, float] = IMAGENET_MEAN,
        image_std: tuple[float, float, float] = IMAGENET_STD,
        faster_rcnn: dict[str, Any] | None = None,
        fast_rcnn: dict[str, Any] | None = None,
        rcnn: dict[str, Any] | None = None,
        optimizer: OptimizerSpec | None = None,
        schedule: ScheduleSpec | None = None,
    ) -> None:
        super().__init__()
        # A checkpoint's hyper-parameters hold the specs as dicts (load_from_checkpoint).
        optimizer = OptimizerSpec(**optimizer) if isinstance(optimizer, dict) else optimizer
        schedule = ScheduleSpec(**schedule) if isinstance(schedule, dict) else schedule
        self.optimizer_spec = optimizer or DEFAULT_OPTIMIZER
        self.schedule_spec = schedule or ScheduleSpec()
        if self.schedule_spec.name == "plateau":
            raise ValueError(
                "the plateau schedule watches an error going down; detection watches mAP "
                "going up. Use the papers' multistep schedule (milestones) instead."
            )
        # Resolved now, so that a detector reloaded without its backbone checkpoint
        # (from_checkpoint) has the same modules.
        frozen_bn = backbone_checkpoint is not None if frozen_bn is None else frozen_bn
        neck = check_neck(method, neck)
        self.method = method
        self.save_hyperparameters(
            {
                "backbone": backbone,
                "method": method,
                "neck": neck,
                "num_classes": num_classes,
                "backbone_checkpoint": backbone_checkpoint,
                "frozen_bn": frozen_bn,
                "trainable_stages": trainable_stages,
                "anchor_sizes": anchor_sizes,
                "representation_size": representation_size,
                "image_mean": tuple(image_mean),
                "image_std": tuple(image_std),
                "faster_rcnn": dict(faster_rcnn or {}),
                "fast_rcnn": dict(fast_rcnn or {}),
                "rcnn": dict(rcnn or {}),
                "optimizer": dataclasses.asdict(self.optimizer_spec),
                "schedule": dataclasses.asdict(self.schedule_spec),
            }
        )
        shared = {
            "backbone_checkpoint": backbone_checkpoint,
            "frozen_bn": frozen_bn,
            "image_mean": image_mean,
            "image_std": image_std,
        }
        if method == "faster_rcnn":
            self.model = build_faster_rcnn(
                backbone,
                num_classes,
                neck,
                trainable_stages=trainable_stages,
                anchor_sizes=anchor_sizes,
                representation_size=representation_size,
                **shared,
                **(faster_rcnn or {}),
            )
        elif method == "fast_rcnn":
            self.model = build_fast_rcnn(
                backbone,
                num_classes,
                trainable_stages=trainable_stages,
                representation_size=representation_size,
                **shared,
                **(fast_rcnn or {}),
            )
        else:
            self.model = build_rcnn(backbone, num_classes, **shared, **(rcnn or {}))
        self.metrics = torch.nn.ModuleDict(
            {
                stage: MeanAveragePrecision(
                    box_format="xyxy", iou_type="bbox", backend="faster_coco_eval"
                )
                for stage in ("val", "test")
            }
        )

    @classmethod
    def from_checkpoint(cls, path: str, map_location: str = "cpu") -> Detector:
        """Load a trained detector. Its weights replace the backbone's, so the
        classification checkpoint it started from is not read (nor needed on this machine)."""
        return cls.load_from_checkpoint(
            path, map_location=map_location, weights_only=False, backbone_checkpoint=None
        )

    @staticmethod
    def _floats(images: list[torch.Tensor]) -> list[torch.Tensor]:
        # uint8 in [0, 255] -> [0, 1]; the model's transform normalises with image_mean/std.
        return [image.float() / 255 for image in images]

    def _run(self, images, targets=None, proposals=None):
        floats = self._floats(images)
        if self.method == "faster_rcnn":
            return self.model(floats, targets)
        return self.model(floats, proposals, targets)

    def _proposals(self, targets) -> list[torch.Tensor] | None:
        if self.method not in PROPOSAL_METHODS:
            return None
        if any("proposals" not in target for target in targets):
            raise ProposalError(
                f"{self.method} classifies region proposals, and this batch's images have "
                f"none. Pass --data.proposals selective_search (cnnzoo-detect sets it from "
                f"--model.method), or give each target its 'proposals'."
            )
        return [target["proposals"] for target in targets]

    def forward(
        self, images: list[torch.Tensor], proposals: list[torch.Tensor] | None = None
    ) -> list[dict[str, torch.Tensor]]:
        """Detections (boxes, scores, labels) in the coordinates of the given uint8 images;
        R-CNN and Fast R-CNN classify the given `proposals` (boxes in the same coordinates,
        `cnnzoo_detect.proposals.selective_search`)."""
        if self.method in PROPOSAL_METHODS and proposals is None:
            raise ProposalError(
                f"{self.method} classifies region proposals: give them, one (N, 4) tensor "
                f"an image (cnnzoo_detect.proposals.selective_search makes them)."
            )
        return self._run(images, proposals=proposals)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, targets = batch
        losses = self._run(images, targets, self._proposals(targets))
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"the training loss became {loss.item()} at step {self.global_step} "
                f"({ {name: round(value.item(), 4) for name, value in losses.items()} }). "
                f"Lower the learning rate or add a warm-up (--model.schedule.warmup_epochs)."
            )
        every = self._trainer.log_every_n_steps if self._trainer is not None else 1
        if (self.global_step + 1) % every == 0:
            logged = {f"train/{name}": value.detach() for name, value in losses.items()}
            self.log_dict(logged | {"train/loss": loss.detach()}, batch_size=len(images))
        return loss

    def on_fit_start(self) -> None:
        if self.method == "rcnn" and self.trainer.world_size > 1:
            # Each process would fit its SVMs on its own share of the images.
            raise CnnzooError(
                f"R-CNN fits its SVMs and box regressors in one process, after fine-tuning; "
                f"this run has {self.trainer.world_size}. Train R-CNN on one device, or "
                f"fine-tune with DDP and then call detector.fit_rcnn_classifiers("
                f"datamodule.feature_dataloader()) in one process."
            )

    def on_train_epoch_end(self) -> None:
        # R-CNN's SVMs and box regressors are fit on the fine-tuned network's features after
        # its last epoch (§2.3), before the last checkpoint is written, so that it holds them.
        if self.method == "rcnn" and self._last_epoch():
            self.fit_rcnn_classifiers(self.trainer.datamodule.feature_dataloader())

    def _last_epoch(self) -> bool:
        trainer = self.trainer
        by_epochs = (
            trainer.max_epochs not in (None, -1) and self.current_epoch + 1 >= trainer.max_epochs
        )
        by_steps = trainer.max_steps not in (None, -1) and self.global_step >= trainer.max_steps
        return by_epochs or by_steps

    @torch.no_grad()
    def fit_rcnn_classifiers(self, loader) -> None:
        """R-CNN's second stage: one pass over the training images (no flips), collecting
        fc7 and pool5 features of their proposals, then the per-class SVMs with hard
        negative mining and the box regressors (§2.3, appendix C)."""
        if self.method != "rcnn":
            raise CnnzooError(f"SVMs and box regressors belong to R-CNN, not {self.method}.")
        for images, targets in tqdm(loader, desc="R-CNN features", unit="batch"):
            images = [image.to(self.device) for image in images]
            proposals = [p.to(self.device) for p in self._proposals(targets)]
            self.model.collect_features(self._floats(images), proposals, targets)
        self.model.fit_classifiers()

    def detect(self, images, targets) -> list[dict[str, torch.Tensor]]:
        """Detections of a batch, their boxes in the image files' coordinates."""
        detections = self._run(images, proposals=self._proposals(targets))
        for detection, image, target in zip(detections, images, targets, strict=True):
            detection["boxes"] = to_file_coordinates(
                detection["boxes"], image.shape[-2:], target["orig_size"]
            )
        return detections

    def _evaluate(self, batch, stage: str) -> list[dict[str, torch.Tensor]]:
        images, targets = batch
        detections = self.detect(images, targets)
        truth = [
            {
                "boxes": to_file_coordinates(t["boxes"], image.shape[-2:], t["orig_size"]),
                "labels": t["labels"],
                "iscrowd": t["iscrowd"],
            }
            for image, t in zip(images, targets, strict=True)
        ]
        self.metrics[stage].update(detections, truth)
        return detections

    def _log_map(self, stage: str) -> None:
        results = self.metrics[stage].compute()
        self.metrics[stage].reset()
        for name in ("map", "map_50", "map_75", "mar_100"):
            self.log(f"{stage}/{name}", results[name].float(), prog_bar=name == "map")

    def validation_step(self, batch, batch_idx: int):
        return self._evaluate(batch, "val")

    def test_step(self, batch, batch_idx: int):
        return self._evaluate(batch, "test")

    def on_validation_epoch_end(self) -> None:
        self._log_map("val")

    def on_test_start(self) -> None:
        if self.method == "rcnn" and self.model.scoring != "svm":
            warnings.warn(
                "this R-CNN's SVMs are not fit (they are fit after the last fine-tuning epoch, "
                "and only the last checkpoint holds them): it is tested with the fine-tuned "
                "softmax instead. Test runs/<run>/checkpoints/last.ckpt for the paper's R-CNN.",
                stacklevel=2,
            )

    def on_test_epoch_end(self) -> None:
        self._log_map("test")

    def predict_step(self, batch, batch_idx: int, dataloader_idx: int = 0):
        images, targets = batch
        detections = self.detect(images, targets)
        for detection, target in zip(detections, targets, strict=True):
            detection["image_id"] = target["image_id"]
        return detections

    def configure_optimizers(self):
        return configure_optimization(
            self, self.model, self.optimizer_spec, self.schedule_spec, MONITOR, mode="max"
        )

    def lr_scheduler_step(self, scheduler, metric) -> None:
        step_scheduler(
            scheduler,
            self.schedule_spec.interval,
            epoch=self.current_epoch,
            global_step=self.global_step,
            metric=metric,
        )
