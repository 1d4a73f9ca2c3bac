"""An annotated image file, as the data modules and the proposal cache know it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from cnnzoo import DatasetError
from PIL import Image, UnidentifiedImageError


@dataclass
class AnnotatedImage:
    """One image file and its objects, in the file's pixel coordinates."""

    path: Path
    image_id: int
    width: int
    height: int
    boxes: list[list[float]] = field(default_factory=list)  # x1, y1, x2, y2
    labels: list[int] = field(default_factory=list)  # contiguous, 1..K
    crowd: list[bool] = field(default_factory=list)  # COCO iscrowd, VOC difficult
    names: list[str] = field(default_factory=list)  # each annotation, for error messages
    proposals: torch.Tensor | None = None  # (N, 4) region proposals, for R-CNN and Fast R-CNN


def load_rgb(path: Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise DatasetError(f"cannot decode image {path}: {exc}. Remove or replace it.") from exc
