"""The spatial transformer: Jaderberg, Simonyan, Zisserman and Kavukcuoglu, "Spatial
Transformer Networks", NIPS 2015, §3 and Fig. 2.

A spatial transformer has three parts:

    localisation net (§3.1)   theta = f_loc(U): the transformation's parameters, from U itself
    grid generator (§3.2)     the output's regular grid G mapped through T_theta (eq. 1)
    sampler (§3.3)            V: U read at those points by bilinear interpolation (eq. 3-5)

all differentiable, so that the localisation net learns from the classification loss alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# theta of the identity transform, row by row: [[1, 0, 0], [0, 1, 0]].
IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def affine_grid(theta: torch.Tensor, size: list[int] | torch.Size) -> torch.Tensor:
    """The grid generator of §3.2, eq. 1: each point (x_t, y_t) of the output's regular grid
    G, in coordinates normalised to [-1, 1] across the output, is mapped to the source point
    (x_s, y_s) = A_theta (x_t, y_t, 1). `size` is the output's (N, C, H', W'); the grid is
    (N, H', W', 2) with x_s before y_s.

    torch's affine_grid is exactly this product. align_corners=False puts -1 and 1 at the
    outer edges of the border pixels, so that the identity maps each pixel onto itself
    whatever the image's size."""
    return F.affine_grid(theta, size, align_corners=False)


def bilinear_sample(images: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """The bilinear sampler of §3.3, eq. 5: V_i^c = sum_n sum_m U_nm^c max(0, 1 - |x_i^s - m|)
    max(0, 1 - |y_i^s - n|), the four pixels nearest each source point weighted by their
    closeness; its gradients with respect to U and to (x_s, y_s) are eq. 6 and 7.

    torch's grid_sample with mode="bilinear" is that kernel. Points that fall outside the
    input read zeros (the background of the digits' canvas)."""
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class AffineLocalisation(nn.Module):
    """The ST-CNN localisation net of Appendix A: two 20-filter 5x5 convolutions (stride 1,
    no padding) on a 2x max-pooled input, with 2x2 max pooling between them, a 20-unit fully
    connected layer, and a regression layer to the 6 parameters of A_theta.

    The regression layer starts at the identity transform (weights zero, bias the identity):
    the transformer first passes its input through unchanged, and learns to move from there.
    """

    hidden_units = 20
    # The second convolution's map at the paper's 42x42 input (42 -> 21 -> 17 -> 8 -> 4).
    # Another input size is pooled to it, so that the net takes any size a classifier does;
    # at 42x42 that pooling is the identity.
    map_size = 4

    def __init__(self, in_chans: int = 1, filters: int = 20) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.MaxPool2d(2),  # "acting on a 2x downsampled input"
            nn.Conv2d(in_chans, filters, 5),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(filters, filters, 5),
            nn.ReLU(inplace=True),
            nn.AdaptiveMaxPool2d(self.map_size),
        )
        self.hidden = nn.Sequential(
            nn.Linear(filters * self.map_size**2, self.hidden_units), nn.ReLU(inplace=True)
        )
        self.regression = nn.Linear(self.hidden_units, 6)
        nn.init.zeros_(self.regression.weight)
        with torch.no_grad():
            self.regression.bias.copy_(torch.tensor(IDENTITY))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """theta as the (N, 2, 3) matrices A_theta of eq. 1."""
        return self.regression(self.hidden(self.features(x).flatten(1))).view(-1, 2, 3)


class SpatialTransformer(nn.Module):
    """A spatial transformer with an affine T_theta (§3, Fig. 2): U -> V.

    Args:
        localisation: the net that gives theta (N, 2, 3) from U.
        output_size: (H', W') of V; None samples V at U's own size.
    """

    def __init__(self, localisation: nn.Module, output_size: tuple[int, int] | None = None) -> None:
        super().__init__()
        self.localisation = localisation
        self.output_size = output_size

    def sample(self, images: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """V for a given theta: the grid generator, then the sampler."""
        if self.output_size is None:
            size = images.shape
        else:
            size = [images.shape[0], images.shape[1], *self.output_size]
        return bilinear_sample(images, affine_grid(theta, size))

    def transform(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The transformed images V and the theta that made them (the explain view's)."""
        theta = self.localisation(images)
        return self.sample(images, theta), theta

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.sample(images, self.localisation(images))
