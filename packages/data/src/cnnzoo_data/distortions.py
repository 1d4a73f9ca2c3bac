"""LeNet-5's distortions of the training set (LeCun et al. 1998, §III.C).

"The increased training set was composed of the 60,000 original patterns plus 540,000
instances of distorted patterns with randomly picked distortion parameters. The distortions
were combinations of the following planar affine transformations: horizontal and vertical
translations, scaling, squeezing (simultaneous horizontal compression and vertical
elongation, or the reverse), and horizontal shearing." The training length was left at 20
passes of 60,000 patterns, so a pattern presented is a distorted one 9 times in 10.

Drawn afresh for each image in each epoch (from the generator that `TransformedDataset`
seeds by (seed, epoch, image)), rather than stored: the same distribution of patterns. The
paper prints no ranges for the parameters; ours (`LeNetDistortion`'s defaults) keep a digit
inside the 32x32 field: translations of up to 2 pixels, scaling by up to 10%, squeezing by up
to 10% and horizontal shearing by up to 0.2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def distort(
    image: torch.Tensor, translate: tuple[float, float], scale: float, squeeze: float, shear: float
) -> torch.Tensor:
    """A (C, H, W) uint8 image through the planar affine map x -> A x + t about its centre:
    A = scale * diag(1 / squeeze, squeeze) * [[1, shear], [0, 1]] (squeeze > 1 compresses
    horizontally and elongates vertically), t = `translate` in pixels (x right, y down);
    bilinear sampling, background 0 outside the image."""
    _, height, width = image.shape
    # affine_grid maps each output pixel to where it is read from: the inverse of A, in
    # coordinates from -1 to 1 along each side (of a square image), written out for the
    # triangular A: [[q / s, -h / (s q)], [0, 1 / (s q)]].
    s, q, h = scale, squeeze, shear
    inverse = ((q / s, -h / (s * q)), (0.0, 1 / (s * q)))
    tx, ty = 2 * translate[0] / width, 2 * translate[1] / height
    theta = torch.tensor(
        [
            [inverse[0][0], inverse[0][1], -(inverse[0][0] * tx + inverse[0][1] * ty)],
            [0.0, inverse[1][1], -inverse[1][1] * ty],
        ]
    )
    grid = F.affine_grid(theta[None], [1, *image.shape], align_corners=False)
    warped = F.grid_sample(image[None].float(), grid, mode="bilinear", align_corners=False)
    return warped[0].round().clamp(0, 255).to(image.dtype)


class LeNetDistortion(nn.Module):
    """A training image distorted with probability `share` (the paper's 540,000 of 600,000),
    with parameters drawn uniformly within the given ranges."""

    def __init__(
        self,
        translate: float = 2.0,
        scale: float = 0.1,
        squeeze: float = 0.1,
        shear: float = 0.2,
        share: float = 0.9,
    ) -> None:
        super().__init__()
        self.translate, self.scale, self.squeeze, self.shear = translate, scale, squeeze, shear
        self.share = share

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        draws = torch.rand(6)  # one draw of each, whether used or not: a fixed stream
        if draws[0] >= self.share:
            return image.as_subclass(torch.Tensor)
        uniform = draws[1:] * 2 - 1  # in [-1, 1)
        return distort(
            image.as_subclass(torch.Tensor),
            translate=(self.translate * float(uniform[0]), self.translate * float(uniform[1])),
            scale=1 + self.scale * float(uniform[2]),
            squeeze=1 + self.squeeze * float(uniform[3]),
            shear=self.shear * float(uniform[4]),
        )
