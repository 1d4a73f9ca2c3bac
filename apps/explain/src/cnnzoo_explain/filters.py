"""First-layer filters as an image grid: Krizhevsky, Sutskever and Hinton 2012, Fig. 3
("96 convolutional kernels of size 11x11x3 learned by the first convolutional layer").

The filters that read the image directly are themselves images: each kernel is shown as a
tile, scaled on its own to the full range (its minimum black, its maximum white), in colour
when it has three input channels and in grey otherwise, one tile per input channel.
Random-weight filters are noise; the Gabor-like edges and colour blobs of Fig. 3 appear only
after training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cnnzoo_explain.errors import NotConvolutionalError
from cnnzoo_explain.figures import columns_for

PADDING = 1  # pixels of background between tiles


def first_convolutions(model: nn.Module, image_shape: tuple[int, int, int]) -> list[str]:
    """The convolutions that read the input image itself (AlexNet has one; a network
    whose stem branches has several), found by running one image through the model."""
    convolutions = {m: n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    if not convolutions:
        raise NotConvolutionalError(
            f"{type(model).__name__} has no nn.Conv2d layer, so it has no filters to show; "
            f"choose a convolutional model (`cnnzoo models`)."
        )
    image = torch.zeros((1, *image_shape), device=next(model.parameters()).device)
    readers: list[str] = []
    ran: list[str] = []

    def note(module, inputs, output):
        ran.append(convolutions[module])
        if inputs[0] is image:
            readers.append(convolutions[module])

    handles = [conv.register_forward_hook(note) for conv in convolutions]
    try:
        with torch.no_grad():
            model.eval()(image)
    finally:
        for handle in handles:
            handle.remove()
    # A model that prepares its input first (a scaling, a padding) hands the first
    # convolution another tensor: then the first convolution to run is the one.
    return readers or ran[:1]


@dataclass
class FilterGrid:
    """Kernels laid out as tiles of one image."""

    image: torch.Tensor  # (3 or 1, H, W) float in [0, 1]
    tile_size: tuple[int, int]
    columns: int
    count: int

    def tile(self, index: int) -> torch.Tensor:
        """The tile of the `index`-th kernel (row-major)."""
        row, col = divmod(index, self.columns)
        height, width = self.tile_size
        top = PADDING + row * (height + PADDING)
        left = PADDING + col * (width + PADDING)
        return self.image[:, top : top + height, left : left + width]


def normalized(kernels: torch.Tensor) -> torch.Tensor:
    """Each kernel (K, C, h, w) scaled on its own to [0, 1]."""
    low = kernels.amin(dim=(1, 2, 3), keepdim=True)
    high = kernels.amax(dim=(1, 2, 3), keepdim=True)
    return (kernels - low) / (high - low).clamp_min(1e-12)


def filter_grid(weight: torch.Tensor, columns: int | None = None) -> FilterGrid:
    """The kernels of a convolution's weight (K, C, h, w) as a grid of tiles: colour tiles for
    C = 3, else one grey tile per kernel and input channel."""
    weight = weight.detach().float().cpu()
    if weight.shape[1] == 3:
        tiles = normalized(weight)
    else:
        out, chans, height, width = weight.shape
        tiles = normalized(weight.reshape(out * chans, 1, height, width))
    count, chans, height, width = tiles.shape
    columns = columns or columns_for(count)
    rows = -(-count // columns)
    image = torch.ones(
        chans, PADDING + rows * (height + PADDING), PADDING + columns * (width + PADDING)
    )
    grid = FilterGrid(image, (height, width), columns, count)
    for index in range(count):
        grid.tile(index).copy_(tiles[index])
    return grid


def save_figure(grid: FilterGrid, path: str, title: str) -> None:
    from cnnzoo_explain.figures import as_image, plt, save

    height, width = grid.image.shape[-2:]
    scale = max(1.0, 360 / max(height, width))  # small kernels drawn large enough to see
    figure, axis = plt.subplots(figsize=(width * scale / 100 + 0.2, height * scale / 100 + 0.4))
    axis.imshow(as_image(grid.image), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    axis.set_title(title, fontsize=8)
    axis.set_axis_off()
    save(figure, path)
