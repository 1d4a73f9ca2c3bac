"""cnnzoo-detect: Faster R-CNN on any registered cnnzoo backbone (single map, C4 or FPN)."""

from cnnzoo_detect.backbone import BackboneError
from cnnzoo_detect.data import CocoDataModule, DetectionDataModule, VocDataModule
from cnnzoo_detect.model import build_faster_rcnn
from cnnzoo_detect.module import Detector

__all__ = [
    "BackboneError",
    "CocoDataModule",
    "DetectionDataModule",
    "Detector",
    "VocDataModule",
    "build_faster_rcnn",
]
