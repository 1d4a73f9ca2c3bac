"""The detection LightningModule: trains Faster R-CNN, evaluates COCO mAP, predicts boxes.

Batches are (images, targets): lists of uint8 images, already resized by the data module,
and of dicts with `boxes` (x1, y1, x2, y2 in the resized image), `labels`, `iscrowd` and
`orig_size`. Evaluation and prediction give boxes back in the image file's coordinates.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from cnnzoo.card import IMAGENET_MEAN, IMAGENET_STD
from cnnzoo.optim import OptimizerSpec, ScheduleSpec, configure_optimization, step_scheduler
from torchmetrics.detection import MeanAveragePrecision

from cnnzoo_detect.model import Neck, build_faster_rcnn

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


class Detector(L.LightningModule):
    """Faster R-CNN on a registered cnnzoo backbone.

    Args:
        backbone: registry name of the classifier to build on (`cnnzoo models`).
        neck: "single" (one stride-16 map, the Faster R-CNN paper's VGG-16), "c4" (the
            ResNet paper's conv4_x trunk and conv5_x RoI head) or "fpn".
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
        optimizer, schedule: see cnnzoo.optim; SGD at 0.02 for 16 images by default.
    """

    def __init__(
        self,
        backbone: str = "resnet50",
        neck: Neck = "fpn",
        num_classes: int = 80,
        backbone_checkpoint: str | None = None,
        frozen_bn: bool | None = None,
        trainable_stages: int | None = None,
        anchor_sizes: list[int] | None = None,
        representation_size: int = 1024,
        image_mean: tuple[float, float, float] = IMAGENET_MEAN,
        image_std: tuple[float, float, float] = IMAGENET_STD,
        faster_rcnn: dict[str, Any] | None = None,
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
        self.save_hyperparameters(
            {
                "backbone": backbone,
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
                "optimizer": dataclasses.asdict(self.optimizer_spec),
                "schedule": dataclasses.asdict(self.schedule_spec),
            }
        )
        self.model = build_faster_rcnn(
            backbone,
            num_classes,
            neck,
            backbone_checkpoint=backbone_checkpoint,
            frozen_bn=frozen_bn,
            trainable_stages=trainable_stages,
            anchor_sizes=anchor_sizes,
            representation_size=representation_size,
            image_mean=image_mean,
            image_std=image_std,
            **(faster_rcnn or {}),
        )
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

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """Detections (boxes, scores, labels) in the coordinates of the given uint8 images."""
        return self.model(self._floats(images))

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, targets = batch
        losses = self.model(self._floats(images), targets)
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

    def detect(self, images, targets) -> list[dict[str, torch.Tensor]]:
        """Detections of a batch, their boxes in the image files' coordinates."""
        detections = self(images)
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
