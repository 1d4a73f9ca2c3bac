"""AlexNet's colour augmentation (§4.1): noise along the principal components of RGB.

"We perform PCA on the set of RGB pixel values throughout the ImageNet training set. To
each training image, we add multiples of the found principal components, with magnitudes
proportional to the corresponding eigenvalues times a random variable drawn from a Gaussian
with mean zero and standard deviation 0.1." Every pixel of an image gets the same offset

    [p1, p2, p3] [a1 l1, a2 l2, a3 l3]^T

with p_i, l_i the i-th eigenvector and eigenvalue of the 3x3 RGB covariance and a_i drawn
once per image each time it is presented.

The offset grows with the square of the pixel scale, so the eigenvalues must come from
pixels on the scale the transform sees: here, float images in [0, 1], before Normalize.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import islice
from typing import Any

import PIL.Image
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from tqdm.auto import tqdm

# The ImageNet figures in wide use, for images in [0, 1] (fb.resnet.torch,
# datasets/imagenet.lua, "computed from random subset of ImageNet training images").
# The eigenvectors are the columns, from the largest eigenvalue down.
IMAGENET_PCA: dict[str, tuple] = {
    "eigenvalues": (0.2175, 0.0188, 0.0045),
    "eigenvectors": (
        (-0.5675, 0.7192, 0.4009),
        (-0.5808, -0.0045, -0.8140),
        (-0.5836, -0.6948, 0.4203),
    ),
}


def _is_plain_tensor(inpt: Any) -> bool:
    return isinstance(inpt, torch.Tensor) and not isinstance(inpt, tv_tensors.TVTensor)


class PCALighting(v2.Transform):
    """Adds AlexNet's PCA colour noise to float RGB images in [0, 1] (§4.1).

    Args:
        eigenvalues: (3,) the RGB covariance's eigenvalues, largest first.
        eigenvectors: (3, 3) its unit eigenvectors as columns, in the same order.
        std: standard deviation of the Gaussian multipliers a_i (0.1 in the paper).

    Takes a (..., 3, H, W) tensor or `tv_tensors.Image`; each image in a batch gets its own
    multipliers, drawn with torch's global RNG (so `torch.manual_seed` repeats them). Other
    entries of a sample (labels, boxes) pass through. The result is not clipped to [0, 1],
    as in the paper. Fit the figures with `fit_pca_lighting`, or use `IMAGENET_PCA`:
    `PCALighting(**IMAGENET_PCA)`.
    """

    # Images only: masks, boxes and labels pass through. PIL images are taken only to be
    # refused, rather than passed through unchanged.
    _transformed_types = (tv_tensors.Image, PIL.Image.Image, _is_plain_tensor)

    def __init__(
        self,
        eigenvalues: torch.Tensor | Sequence[float],
        eigenvectors: torch.Tensor | Sequence[Sequence[float]],
        std: float = 0.1,
    ) -> None:
        super().__init__()
        eigenvalues = torch.as_tensor(eigenvalues, dtype=torch.float32)
        eigenvectors = torch.as_tensor(eigenvectors, dtype=torch.float32)
        if eigenvalues.shape != (3,) or eigenvectors.shape != (3, 3):
            raise ValueError(
                f"PCALighting needs 3 eigenvalues and a 3x3 matrix of eigenvectors (RGB); got "
                f"shapes {tuple(eigenvalues.shape)} and {tuple(eigenvectors.shape)}."
            )
        if std < 0:
            raise ValueError(f"std must be >= 0; got {std}.")
        self.std = std
        self.register_buffer("eigenvalues", eigenvalues)
        self.register_buffer("eigenvectors", eigenvectors)

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, PIL.Image.Image):
            raise TypeError(
                "PCALighting takes float tensor images in [0, 1], not PIL images. Put "
                "v2.ToImage() and v2.ToDtype(torch.float32, scale=True) before it."
            )
        if not inpt.is_floating_point():
            raise TypeError(
                f"PCALighting takes float images in [0, 1]; got {inpt.dtype}. Put "
                f"v2.ToDtype(torch.float32, scale=True) before it."
            )
        if inpt.ndim < 3 or inpt.shape[-3] != 3:
            raise ValueError(
                f"PCALighting takes RGB images shaped (..., 3, H, W); got {tuple(inpt.shape)}."
            )
        if self.std == 0:
            return inpt
        alpha = torch.randn(*inpt.shape[:-3], 3) * self.std
        eigenvalues = self.eigenvalues.to(inpt.device, inpt.dtype)
        eigenvectors = self.eigenvectors.to(inpt.device, inpt.dtype)
        # [p1, p2, p3] [a1 l1, a2 l2, a3 l3]^T for every image: one RGB offset per image.
        offset = (alpha.to(inpt.device, inpt.dtype) * eigenvalues) @ eigenvectors.T
        output = inpt.as_subclass(torch.Tensor) + offset[..., :, None, None]
        return tv_tensors.wrap(output, like=inpt) if isinstance(inpt, tv_tensors.Image) else output

    def extra_repr(self) -> str:
        values = ", ".join(f"{value:.4g}" for value in self.eigenvalues.tolist())
        return f"eigenvalues=({values}), std={self.std}"


def fit_pca_lighting(
    images: Iterable[torch.Tensor],
    max_pixels_per_image: int | None = 10_000,
    max_images: int | None = 10_000,
    std: float = 0.1,
    progress: bool = True,
) -> PCALighting:
    """PCA of the RGB pixel values of training images, as a `PCALighting` transform.

    Args:
        images: float (3, H, W) images in [0, 1], e.g. `(image for image, _ in dataset)`.
        max_pixels_per_image: pixels drawn at random (torch's global RNG) from each image;
            None takes them all.
        max_images: images read at most; None reads them all.
        std: the multipliers' standard deviation for the transform (0.1 in the paper).
        progress: show a tqdm progress bar.

    The covariance is accumulated in float64 over all drawn pixels of all images.
    """
    count = 0
    total = torch.zeros(3, dtype=torch.float64)
    outer = torch.zeros(3, 3, dtype=torch.float64)
    sized = len(images) if hasattr(images, "__len__") else None  # type: ignore[arg-type]
    expected = min(filter(None, (sized, max_images)), default=None)
    for image in tqdm(
        islice(images, max_images),
        total=expected,
        desc="PCA of RGB pixels",
        unit="image",
        disable=not progress,
    ):
        if image.ndim != 3 or image.shape[0] != 3 or not image.is_floating_point():
            raise ValueError(
                f"fit_pca_lighting takes float RGB images shaped (3, H, W) in [0, 1]; got a "
                f"{image.dtype} tensor of shape {tuple(image.shape)}."
            )
        pixels = image.reshape(3, -1).T.to(torch.float64)
        if max_pixels_per_image is not None and pixels.shape[0] > max_pixels_per_image:
            pixels = pixels[torch.randperm(pixels.shape[0])[:max_pixels_per_image]]
        count += pixels.shape[0]
        total += pixels.sum(dim=0)
        outer += pixels.T @ pixels
    if count < 2:
        raise ValueError("fit_pca_lighting needs at least two pixels; got no images or fewer.")
    mean = total / count
    covariance = (outer - count * torch.outer(mean, mean)) / (count - 1)
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)  # ascending
    eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.flip(1)
    # An eigenvector's sign is arbitrary (the multipliers are symmetric); fix it so that
    # the same pixels always give the same figures: largest component positive.
    largest = eigenvectors.abs().argmax(dim=0)
    eigenvectors = eigenvectors * eigenvectors[largest, torch.arange(3)].sign()
    return PCALighting(eigenvalues.clamp_min(0), eigenvectors, std=std)
