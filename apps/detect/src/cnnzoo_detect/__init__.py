"""cnnzoo-detect: R-CNN, Fast R-CNN and Faster R-CNN (single map, C4 or FPN) on any registered
cnnzoo backbone."""

from cnnzoo_detect.backbone import BackboneError
from cnnzoo_detect.data import CocoDataModule, DetectionDataModule, VocDataModule
from cnnzoo_detect.fast_rcnn import FastRCNN, build_fast_rcnn, truncated_svd
from cnnzoo_detect.model import build_faster_rcnn
from cnnzoo_detect.module import Detector
from cnnzoo_detect.proposals import ProposalError, selective_search
from cnnzoo_detect.rcnn import RCNN, build_rcnn

__all__ = [
    "RCNN",
    "BackboneError",
    "CocoDataModule",
    "DetectionDataModule",
    "Detector",
    "FastRCNN",
    "ProposalError",
    "VocDataModule",
    "build_fast_rcnn",
    "build_faster_rcnn",
    "build_rcnn",
    "selective_search",
    "truncated_svd",
]
