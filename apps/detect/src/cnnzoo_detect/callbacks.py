"""Pictures of detections (PNG, and W&B when it is a logger) and COCO-style result files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger
from PIL import Image
from torchvision.utils import draw_bounding_boxes


def draw_detections(
    image: torch.Tensor,
    detection: dict[str, torch.Tensor],
    classes: list[str] | None,
    score_threshold: float,
) -> torch.Tensor:
    """A uint8 image with its detections above the threshold, boxes in its coordinates."""
    keep = detection["scores"] >= score_threshold
    if not keep.any():
        return image.cpu()
    labels = detection["labels"][keep].tolist()
    scores = detection["scores"][keep].tolist()
    names = [
        f"{classes[label] if classes else label} {score:.2f}"
        for label, score in zip(labels, scores, strict=True)
    ]
    return draw_bounding_boxes(
        image.cpu(), detection["boxes"][keep].cpu(), labels=names, colors="red", width=2
    )


def write_png(picture: torch.Tensor, path: Path) -> None:
    Image.fromarray(picture.permute(1, 2, 0).numpy()).save(path)


def _in_image(detection: dict[str, torch.Tensor], image, target) -> dict[str, torch.Tensor]:
    """A detection whose boxes are in file coordinates, back in the resized image's."""
    height, width = image.shape[-2:]
    orig_height, orig_width = (int(v) for v in target["orig_size"])
    scale = detection["boxes"].new_tensor([width / orig_width, height / orig_height] * 2)
    return detection | {"boxes": detection["boxes"] * scale}


class DetectionGallery(L.Callback):
    """Draw the first `num_images` validation and test images with their detections.

    Saved as `detections-<stage>-<i>.png` in the run's log folder and logged to W&B.
    """

    def __init__(self, num_images: int = 4, score_threshold: float = 0.3) -> None:
        self.num_images = num_images
        self.score_threshold = score_threshold

    def _draw(self, trainer: L.Trainer, outputs, batch, stage: str) -> None:
        if trainer.sanity_checking or not outputs:
            return
        # Every process asks: under DDP `log_dir` is a broadcast, which rank 0 alone would wait
        # on forever.
        folder = Path(trainer.log_dir or trainer.default_root_dir)
        if not trainer.is_global_zero:
            return
        images, targets = batch
        classes = getattr(trainer.datamodule, "classes", None)
        drawn = [
            draw_detections(
                image, _in_image(detection, image, target), classes, self.score_threshold
            )
            for image, target, detection in list(zip(images, targets, outputs, strict=True))[
                : self.num_images
            ]
        ]
        folder.mkdir(parents=True, exist_ok=True)
        for i, picture in enumerate(drawn):
            write_png(picture, folder / f"detections-{stage}-{i}.png")
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(
                    key=f"{stage}/detections",
                    images=[picture.permute(1, 2, 0).numpy() for picture in drawn],
                    step=trainer.global_step,
                )

    def on_validation_batch_end(self, trainer, module, outputs, batch, batch_idx, dataloader_idx=0):
        if batch_idx == 0:
            self._draw(trainer, outputs, batch, "val")

    def on_test_batch_end(self, trainer, module, outputs, batch, batch_idx, dataloader_idx=0):
        if batch_idx == 0:
            self._draw(trainer, outputs, batch, "test")


class DetectionWriter(L.Callback):
    """Write `predict`'s detections as a COCO results file, `detections.json`: one record
    per box with image_id, category_id (the dataset's own ids), bbox [x, y, width, height]
    in the image file's pixels and score, as pycocotools' `loadRes` reads. With
    `save_images`, also each image with its boxes and class names as `<image_id>.png`."""

    def __init__(
        self, output_dir: str | Path, save_images: bool = False, score_threshold: float = 0.3
    ) -> None:
        self.output_dir = Path(output_dir)
        self.save_images = save_images
        self.score_threshold = score_threshold
        self.results: list[dict[str, Any]] = []

    def on_predict_start(self, trainer, module) -> None:
        self.results = []
        self.output_dir.mkdir(parents=True, exist_ok=True)

    def on_predict_batch_end(self, trainer, module, outputs, batch, batch_idx, dataloader_idx=0):
        category_ids = trainer.datamodule.category_ids
        images, targets = batch
        for image, target, detection in zip(images, targets, outputs, strict=True):
            for (x1, y1, x2, y2), score, label in zip(
                detection["boxes"].tolist(),
                detection["scores"].tolist(),
                detection["labels"].tolist(),
                strict=True,
            ):
                self.results.append(
                    {
                        "image_id": int(detection["image_id"]),
                        "category_id": category_ids[label],
                        "bbox": [round(v, 2) for v in (x1, y1, x2 - x1, y2 - y1)],
                        "score": round(score, 4),
                    }
                )
            if self.save_images:
                picture = draw_detections(
                    image,
                    _in_image(detection, image, target),
                    trainer.datamodule.classes,
                    self.score_threshold,
                )
                write_png(picture, self.output_dir / f"{int(detection['image_id'])}.png")

    def on_predict_end(self, trainer, module) -> None:
        path = self.output_dir / "detections.json"
        path.write_text(json.dumps(self.results))
        print(f"wrote {len(self.results)} detections to {path}")
