"""What a spatial transformer does to its input: Jaderberg et al. 2015, Fig. 3 and 4.

For each image, the input U with the region the transformer reads outlined (the output's
grid G mapped through T_theta, Fig. 3 (b)), above the transformer's output V (Fig. 3 (c)).
A trained ST-CNN's outputs stand its distorted digits upright, centred and at one size; at
random weights the transformer is the identity it starts as, and V equals U.

Any module with `localisation` and `transform(U) -> (V, theta)` (cnnzoo_stn's
`SpatialTransformer`) is a spatial transformer here, wherever it sits in the network: its
input is caught on the way through the model's forward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from cnnzoo import CnnzooError
from torch import nn


class NoSpatialTransformerError(CnnzooError, ValueError):
    """A model with no spatial transformer to show."""


def spatial_transformers(model: nn.Module) -> list[str]:
    """The dotted names of the model's spatial transformers, in the order they were built."""
    return [
        name
        for name, module in model.named_modules()
        if hasattr(module, "localisation") and callable(getattr(module, "transform", None))
    ]


def find_transformer(model: nn.Module, name: str) -> str:
    """The model's (first) spatial transformer, or a clear error for a model without one."""
    found = spatial_transformers(model)
    if not found:
        raise NoSpatialTransformerError(
            f"{name} has no spatial transformer (a module with a localisation net and "
            f"transform()), so there is nothing to show. Choose a model with one: "
            f"st_cnn_aff_mnist_rts, or any classifier wrapped by "
            f"cnnzoo_stn.spatial_transformer(...)."
        )
    return found[0]


@dataclass
class Transformed:
    """The transformer's input U, its output V and the theta of each image."""

    inputs: torch.Tensor  # (N, C, H, W), as the transformer saw them
    outputs: torch.Tensor  # (N, C, H', W')
    theta: torch.Tensor  # (N, 2, 3)
    module: str

    def source_corners(self) -> torch.Tensor:
        """(N, 4, 2) pixel coordinates (x, y) in U of the corners of V's grid, eq. 1: the
        edges of the output, (+-1, +-1), through A_theta, in imshow's coordinates (pixel
        centres at integers)."""
        corners = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
        homogeneous = torch.cat([corners, torch.ones(4, 1)], dim=1).to(self.theta)
        normalised = homogeneous @ self.theta.transpose(1, 2)  # (N, 4, 2)
        height, width = self.inputs.shape[-2:]
        scale = torch.tensor([width / 2, height / 2]).to(normalised)
        return (normalised + 1) * scale - 0.5


def transform(model: nn.Module, inputs: torch.Tensor, module: str) -> Transformed:
    """Run the model on `inputs`, catch what reaches the transformer `module`, and take its
    output and theta."""
    transformer = model.get_submodule(module)
    caught: list[torch.Tensor] = []
    handle = transformer.register_forward_pre_hook(lambda _m, args: caught.append(args[0]))
    try:
        with torch.no_grad():
            model.eval()(inputs)
            outputs, theta = transformer.transform(caught[0])
    finally:
        handle.remove()
    return Transformed(caught[0], outputs, theta, module)


def _shown(images: torch.Tensor) -> torch.Tensor:
    """Normalised images (or feature maps) as [0, 1] tiles: each scaled on its own range."""
    if images.shape[1] not in (1, 3):
        images = images.mean(dim=1, keepdim=True)
    low = images.amin(dim=(1, 2, 3), keepdim=True)
    high = images.amax(dim=(1, 2, 3), keepdim=True)
    return (images - low) / (high - low).clamp_min(1e-12)


def save_figure(result: Transformed, names: list[str], path: str, title: str) -> None:
    """Inputs with T_theta(G) outlined above the transformer's outputs, one column each."""
    from cnnzoo_explain.figures import as_image, plt, save

    count = len(result.inputs)
    figure, axes = plt.subplots(2, count, figsize=(1.3 * count, 3.0), squeeze=False)
    figure.suptitle(title, fontsize=9)
    inputs, outputs = _shown(result.inputs.cpu()), _shown(result.outputs.cpu())
    corners = result.source_corners().cpu().numpy()
    for col in range(count):
        axes[0, col].imshow(as_image(inputs[col]), cmap="gray", vmin=0, vmax=1)
        outline = corners[col].tolist() + corners[col][:1].tolist()
        xs, ys = zip(*outline, strict=True)
        axes[0, col].plot(xs, ys, color="lime", linewidth=1)
        # The image's own extent: an outline reaching outside it is cut at its border.
        height, width = result.inputs.shape[-2:]
        axes[0, col].set_xlim(-0.5, width - 0.5)
        axes[0, col].set_ylim(height - 0.5, -0.5)
        axes[0, col].set_title(names[col], fontsize=6)
        axes[1, col].imshow(as_image(outputs[col]), cmap="gray", vmin=0, vmax=1)
    for row, label in enumerate(("input U", "output V")):
        axes[row, 0].text(
            -0.1,
            0.5,
            label,
            transform=axes[row, 0].transAxes,
            rotation=90,
            ha="right",
            va="center",
            fontsize=7,
        )
    for axis in axes.flat:
        axis.set_axis_off()
    save(figure, path)
