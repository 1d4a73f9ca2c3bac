"""Grad-CAM: Selvaraju, Cogswell, Das, Vedantam, Parikh and Batra, "Grad-CAM: Visual
Explanations from Deep Networks via Gradient-based Localization", ICCV 2017, §3.

The modern companion of the deconvnet: for class c and the feature maps A^k of a
convolutional layer, each map is weighted by the mean gradient of the class score over it,

    alpha_k^c = 1/Z sum_ij d y^c / d A^k_ij          (eq. 1)
    L^c       = ReLU(sum_k alpha_k^c A^k)             (eq. 2)

and the map, of the layer's size, is upsampled to the image's. The ReLU keeps only what
speaks for the class. y^c is the score before the softmax (the logit).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cnnzoo_explain.layers import recorded, without_inplace


@dataclass
class GradCam:
    maps: torch.Tensor  # (N, H, W) at the image's size, >= 0, in the layer's units
    coarse: torch.Tensor  # (N, h, w) at the layer's size
    classes: list[int]  # the class each map explains


def grad_cam(
    model: nn.Module, inputs: torch.Tensor, layer: str, classes: list[int | None] | None = None
) -> GradCam:
    """Grad-CAM of `layer` for each image, for its class in `classes` (None: the class the
    model predicts)."""
    model.eval()
    with without_inplace(model), torch.enable_grad(), recorded(model, layer) as outputs:
        logits = model(inputs.detach())
        activations = outputs[0]
        wanted = classes or [None] * len(inputs)
        chosen = [int(logits[i].argmax()) if c is None else int(c) for i, c in enumerate(wanted)]
        scores = logits[torch.arange(len(inputs)), chosen]
        (gradients,) = torch.autograd.grad(scores.sum(), activations)
    weights = gradients.mean(dim=(2, 3), keepdim=True)  # eq. 1
    coarse = F.relu((weights * activations.detach()).sum(dim=1))  # eq. 2
    maps = F.interpolate(
        coarse.unsqueeze(1), size=inputs.shape[-2:], mode="bilinear", align_corners=False
    )
    return GradCam(maps[:, 0], coarse, chosen)


def save_figure(
    cam: GradCam,
    pixels: torch.Tensor,
    names: list[str],
    class_names: list[str],
    path: str,
    title: str,
) -> None:
    """Each image above its Grad-CAM laid over it."""
    from cnnzoo_explain.figures import as_image, plt, save

    count = len(pixels)
    figure, axes = plt.subplots(2, count, figsize=(1.9 * count, 4.2), squeeze=False)
    figure.suptitle(title, fontsize=9)
    for col in range(count):
        image = as_image(pixels[col])
        heat = cam.maps[col]
        heat = (heat / heat.max().clamp_min(1e-12)).cpu().numpy()
        axes[0, col].imshow(image, cmap="gray", vmin=0, vmax=1)
        axes[0, col].set_title(names[col], fontsize=7)
        axes[1, col].imshow(image, cmap="gray", vmin=0, vmax=1)
        axes[1, col].imshow(heat, cmap="jet", alpha=0.5, vmin=0, vmax=1)
        axes[1, col].set_title(f"Grad-CAM: {class_names[col]}", fontsize=7)
    for axis in axes.flat:
        axis.set_axis_off()
    save(figure, path)
