"""What a capsule network's digit capsules hold: Sabour, Frosst and Hinton 2017, §5.1.

Fig. 3's reconstructions (each image beside the decoder's image from its longest capsule)
and Fig. 4's perturbations ("we feed a perturbed version of this activity vector to the
decoder": each of the 16 dimensions of the predicted capsule tweaked by intervals of 0.05 in
the range [-0.25, 0.25]), whose rows show what each dimension encodes: stroke thickness,
skew, width, translation.
"""

from __future__ import annotations

import torch
from cnnzoo import ClassifierNet

from cnnzoo_explain.errors import NoCapsulesError
from cnnzoo_explain.figures import as_image, plt, save

# §5.1: "tweak one of the dimensions by intervals of 0.05 in the range [−0.25, 0.25]".
TWEAKS = torch.arange(-5, 6) * 0.05


def check_capsules(model: ClassifierNet) -> None:
    """Refuse a model without digit capsules and a decoder, saying which have them."""
    if not (callable(getattr(model, "capsules", None)) and getattr(model, "decoder", None)):
        raise NoCapsulesError(
            f"{model.name or type(model).__name__} has no digit capsules to reconstruct "
            "from: the capsules view takes a capsule network with its decoder "
            "(e.g. --model capsnet, or a capsnet checkpoint)."
        )


@torch.no_grad()
def reconstructions(model, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The predicted classes and the decoder's images from their capsules (Fig. 3)."""
    poses = model.capsules(inputs)
    predicted = poses.norm(dim=-1).argmax(dim=1)
    return predicted, model.reconstruct(poses, predicted)


@torch.no_grad()
def perturbations(model, image: torch.Tensor) -> tuple[int, torch.Tensor]:
    """The predicted class of one image and the decoder's images with each dimension of its
    capsule tweaked (Fig. 4): (dimensions, tweaks, C, H, W)."""
    poses = model.capsules(image[None])
    predicted = int(poses.norm(dim=-1).argmax())
    dims = poses.shape[-1]
    tweaked = poses.repeat(dims * len(TWEAKS), 1, 1).view(dims, len(TWEAKS), *poses.shape[1:])
    for dim in range(dims):
        tweaked[dim, :, predicted, dim] += TWEAKS.to(poses.device)
    keep = torch.full((dims * len(TWEAKS),), predicted, device=poses.device)
    images = model.reconstruct(tweaked.flatten(0, 1), keep)
    return predicted, images.view(dims, len(TWEAKS), *images.shape[1:])


def save_reconstructions(pixels, images, names, predicted_names, path: str, title: str):
    """Input above reconstruction, one column per image."""
    columns = len(names)
    figure, axes = plt.subplots(2, columns, figsize=(1.3 * columns, 3.0), squeeze=False)
    for column in range(columns):
        axes[0, column].imshow(as_image(pixels[column]), cmap="gray", vmin=0, vmax=1)
        axes[0, column].set_title(names[column], fontsize=7)
        axes[1, column].imshow(as_image(images[column]), cmap="gray", vmin=0, vmax=1)
        axes[1, column].set_title(f"as {predicted_names[column]}", fontsize=7)
    for axis in axes.flat:
        axis.set_axis_off()
    figure.suptitle(title, fontsize=9)
    return save(figure, path)


def save_perturbations(images: torch.Tensor, path: str, title: str):
    """One row per capsule dimension, one column per tweak."""
    dims, tweaks = images.shape[:2]
    figure, axes = plt.subplots(dims, tweaks, figsize=(0.6 * tweaks, 0.6 * dims), squeeze=False)
    for dim in range(dims):
        for column in range(tweaks):
            axis = axes[dim, column]
            axis.imshow(as_image(images[dim, column]), cmap="gray", vmin=0, vmax=1)
            axis.set_xticks([])
            axis.set_yticks([])
            if column == 0:
                axis.set_ylabel(str(dim), fontsize=6, rotation=0, labelpad=8)
            if dim == dims - 1:
                axis.set_xlabel(f"{float(TWEAKS[column]):+.2f}", fontsize=5)
    figure.suptitle(title, fontsize=8, y=0.91)
    return save(figure, path)
