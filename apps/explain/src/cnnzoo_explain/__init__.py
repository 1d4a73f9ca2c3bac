"""Seeing inside cnnzoo models: the deconvnet and occlusion experiments of Zeiler & Fergus,
AlexNet's first-layer filters and feature retrieval, and Grad-CAM, on any registered model."""

from cnnzoo_explain.deconvnet import deconvnet_mode, project, receptive_fields, strongest_images
from cnnzoo_explain.filters import filter_grid, first_convolutions
from cnnzoo_explain.gradcam import grad_cam
from cnnzoo_explain.layers import feature_maps, find_layer
from cnnzoo_explain.occlusion import occlusion_maps
from cnnzoo_explain.retrieval import embed, nearest

__all__ = [
    "deconvnet_mode",
    "embed",
    "feature_maps",
    "filter_grid",
    "find_layer",
    "first_convolutions",
    "grad_cam",
    "nearest",
    "occlusion_maps",
    "project",
    "receptive_fields",
    "strongest_images",
]
