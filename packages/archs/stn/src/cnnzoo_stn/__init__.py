"""Spatial transformer networks (Jaderberg, Simonyan, Zisserman and Kavukcuoglu 2015) for cnnzoo."""

from cnnzoo_stn.mnist import DistortedMNISTCNN, cnn_mnist_rts, st_cnn_aff_mnist_rts
from cnnzoo_stn.network import SpatialTransformerNet, spatial_transformer
from cnnzoo_stn.transformer import (
    AffineLocalisation,
    SpatialTransformer,
    affine_grid,
    bilinear_sample,
)

__all__ = [
    "AffineLocalisation",
    "DistortedMNISTCNN",
    "SpatialTransformer",
    "SpatialTransformerNet",
    "affine_grid",
    "bilinear_sample",
    "cnn_mnist_rts",
    "spatial_transformer",
    "st_cnn_aff_mnist_rts",
]
