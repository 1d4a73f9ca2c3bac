"""What every view's picture shares: matplotlib without a display, tiles, heat maps."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: the views only write PNG files

import matplotlib.pyplot as plt
import numpy as np
import torch

__all__ = ["as_image", "columns_for", "heat_map", "plt", "save", "signed_image"]

DPI = 100  # small PNGs: a few hundred pixels a side


def columns_for(count: int) -> int:
    """Columns of a near-square grid of `count` tiles."""
    return max(1, math.ceil(math.sqrt(count)))


def as_image(pixels: torch.Tensor) -> np.ndarray:
    """(C, H, W) uint8 or [0, 1] float -> what `imshow` takes: (H, W) grey or (H, W, 3)."""
    image = pixels.detach().float().cpu()
    if pixels.dtype == torch.uint8:
        image = image / 255
    image = image.clamp(0, 1)
    return image[0].numpy() if image.shape[0] == 1 else image.permute(1, 2, 0).numpy()


def signed_image(signal: torch.Tensor) -> np.ndarray:
    """A signed (C, H, W) signal shown around mid-grey: zero grey, its largest magnitude
    black or white, so tiles of different strength each use the full range."""
    scale = signal.abs().max().clamp_min(1e-12)
    return as_image(signal / (2 * scale) + 0.5)


def heat_map(axis, values: np.ndarray, extent, title: str, image: np.ndarray | None = None):
    """A map of `values` over the image's area (`extent` in pixels), with a colour bar."""
    if image is not None:
        axis.imshow(image, cmap="gray", vmin=0, vmax=1)
        shown = axis.imshow(values, cmap="jet", alpha=0.5, extent=extent, interpolation="bilinear")
    else:
        shown = axis.imshow(values, cmap="jet", extent=extent, interpolation="nearest")
    axis.set_title(title, fontsize=8)
    axis.set_axis_off()
    colorbar = axis.figure.colorbar(shown, ax=axis, fraction=0.046, pad=0.04)
    colorbar.ax.tick_params(labelsize=6)
    return shown


def save(figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(figure)
    return path
