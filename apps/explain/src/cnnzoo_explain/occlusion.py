"""Occlusion sensitivity: Zeiler and Fergus (arXiv:1311.2901), §4.2 and Fig. 7.

"Is the model truly identifying the location of the object in the image, or just using the
surrounding context? We attempt to answer this question by systematically occluding
different portions of the input image with a grey square, and monitoring the output of the
classifier." For each position of the square we record (a) the probability of the correct
class and (b) the total activation of the feature map that is strongest on the whole image;
both drop where the square hides what the network looks at.

The grey is the data's mean pixel: zero after the data module's normalisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from cnnzoo_explain.layers import recorded


@dataclass
class OcclusionMaps:
    """The two maps of Fig. 7 for one image, one value per position of the square."""

    probability: torch.Tensor  # (rows, cols): probability of `target` with the square there
    feature: torch.Tensor  # (rows, cols): total activation of feature map `channel`
    target: int
    channel: int
    layer: str
    tops: list[int]  # the square's top edge in each row of positions
    lefts: list[int]
    size: int
    clean_probability: float  # without the square
    clean_feature: float


def _positions(extent: int, size: int, stride: int) -> list[int]:
    """The square's offsets along one side, the last one flush with the edge."""
    positions = list(range(0, max(extent - size, 0) + 1, stride))
    if positions[-1] != max(extent - size, 0):
        positions.append(extent - size)
    return positions


@torch.no_grad()
def occlusion_maps(
    model: nn.Module,
    image: torch.Tensor,
    layer: str,
    target: int | None = None,
    size: int = 8,
    stride: int = 4,
    batch_size: int = 64,
) -> OcclusionMaps:
    """Slide a `size` x `size` grey square over one normalised image (C, H, W) with `stride`,
    and map the target class's probability and the strongest feature map's total activation.
    `target` defaults to the class the model predicts for the whole image."""
    model.eval()
    image = image.unsqueeze(0) if image.ndim == 3 else image
    height, width = image.shape[-2:]
    with recorded(model, layer) as outputs:
        probabilities = model(image).softmax(dim=-1)[0]
    target = int(probabilities.argmax()) if target is None else target
    totals = outputs[0][0].sum(dim=(1, 2))
    channel = int(totals.argmax())
    tops, lefts = _positions(height, size, stride), _positions(width, size, stride)
    corners = [(top, left) for top in tops for left in lefts]
    probability, feature = [], []
    for start in tqdm(range(0, len(corners), batch_size), desc="occluding", unit="batch"):
        occluded = image.repeat(len(corners[start : start + batch_size]), 1, 1, 1)
        for index, (top, left) in enumerate(corners[start : start + batch_size]):
            occluded[index, :, top : top + size, left : left + size] = 0.0
        with recorded(model, layer) as occluded_outputs:
            probability.append(model(occluded).softmax(dim=-1)[:, target])
        feature.append(occluded_outputs[0][:, channel].sum(dim=(1, 2)))
    shape = (len(tops), len(lefts))
    return OcclusionMaps(
        probability=torch.cat(probability).view(shape).cpu(),
        feature=torch.cat(feature).view(shape).cpu(),
        target=target,
        channel=channel,
        layer=layer,
        tops=tops,
        lefts=lefts,
        size=size,
        clean_probability=float(probabilities[target]),
        clean_feature=float(totals[channel]),
    )


def save_figure(
    maps: OcclusionMaps, pixels: torch.Tensor, path: str, title: str, class_name: str
) -> None:
    """Fig. 7's panels: the image with the square, (b) the feature map's total activation
    and (a) the class probability, each as a function of the square's position."""
    from cnnzoo_explain.figures import as_image, heat_map, plt, save

    image = as_image(pixels)
    centre = maps.size / 2
    step_x = maps.lefts[1] - maps.lefts[0] if len(maps.lefts) > 1 else maps.size
    step_y = maps.tops[1] - maps.tops[0] if len(maps.tops) > 1 else maps.size
    extent = (
        maps.lefts[0] + centre - step_x / 2,
        maps.lefts[-1] + centre + step_x / 2,
        maps.tops[-1] + centre + step_y / 2,
        maps.tops[0] + centre - step_y / 2,
    )
    figure, axes = plt.subplots(1, 3, figsize=(9, 3.2))
    figure.suptitle(title, fontsize=9)
    axes[0].imshow(image, cmap="gray", vmin=0, vmax=1)
    axes[0].add_patch(
        plt.Rectangle((0, 0), maps.size, maps.size, fill=True, color="0.5", alpha=0.9)
    )
    axes[0].set_title(f"input, {maps.size}x{maps.size} grey square", fontsize=8)
    axes[0].set_axis_off()
    heat_map(
        axes[1],
        maps.feature.numpy(),
        extent,
        f"(b) total activation, {maps.layer}[{maps.channel}]\n"
        f"(unoccluded {maps.clean_feature:.3g})",
    )
    heat_map(
        axes[2],
        np.asarray(maps.probability.numpy()),
        extent,
        f"(a) p({class_name}) (unoccluded {maps.clean_probability:.2f})",
    )
    for axis in axes[1:]:
        axis.set_xlim(0, image.shape[1])
        axis.set_ylim(image.shape[0], 0)
    save(figure, path)
