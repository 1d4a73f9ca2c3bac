"""Feature retrieval: Krizhevsky, Sutskever and Hinton 2012, §6.1 and Fig. 4.

"If two images produce feature activation vectors with a small Euclidean separation, we can
say that the higher levels of the neural network consider them to be similar." Each query
image is shown with the training images whose activations in the last hidden layer (AlexNet's
4096-d fc7; each model's `pre_logits` features) are nearest to its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from cnnzoo_explain.images import DatasetImages, Preprocessing


@torch.no_grad()
def embed(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """The last hidden layer's activations (N, D): the classifier's input."""
    model.eval()
    return model.forward_head(model.forward_features(inputs), pre_logits=True).flatten(1)


@torch.no_grad()
def embed_dataset(
    model: nn.Module,
    data: DatasetImages,
    preprocessing: Preprocessing,
    split: str = "train",
    limit: int | None = None,
    batch_size: int = 256,
) -> torch.Tensor:
    """`embed` over the first `limit` images of a split, batch by batch."""
    device = next(model.parameters()).device
    total = len(data.split(split)) if limit is None else min(limit, len(data.split(split)))
    features = [
        embed(model, preprocessing(pixels).to(device)).cpu()
        for pixels, _ in tqdm(
            data.batches(split, limit, batch_size),
            total=-(-total // batch_size),
            desc=f"features of {data.name} {split}",
            unit="batch",
        )
    ]
    return torch.cat(features)


@dataclass
class Neighbours:
    indices: torch.Tensor  # (queries, k) into the searched images, nearest first
    distances: torch.Tensor  # (queries, k) Euclidean


def nearest(queries: torch.Tensor, database: torch.Tensor, k: int = 5) -> Neighbours:
    """The `k` database vectors nearest to each query (Euclidean)."""
    distances = torch.cdist(queries.double(), database.double())
    found = distances.topk(min(k, len(database)), dim=1, largest=False)
    return Neighbours(found.indices, found.values.float())


def save_figure(
    query_pixels: torch.Tensor,
    query_names: list[str],
    neighbour_pixels: torch.Tensor,  # (queries, k, C, H, W)
    neighbour_names: list[list[str]],
    neighbours: Neighbours,
    path: str,
    title: str,
) -> None:
    """Fig. 4's layout: each query in the first column, its neighbours to the right."""
    from cnnzoo_explain.figures import as_image, plt, save

    queries, k = neighbours.indices.shape
    figure, axes = plt.subplots(
        queries, k + 1, figsize=(1.2 * (k + 1), 1.35 * queries + 0.3), squeeze=False
    )
    figure.suptitle(title, fontsize=9)
    for row in range(queries):
        axes[row, 0].imshow(as_image(query_pixels[row]), cmap="gray", vmin=0, vmax=1)
        axes[row, 0].set_title(f"query\n{query_names[row]}", fontsize=6)
        for col in range(k):
            axis = axes[row, col + 1]
            axis.imshow(as_image(neighbour_pixels[row, col]), cmap="gray", vmin=0, vmax=1)
            distance = float(neighbours.distances[row, col])
            axis.set_title(f"{neighbour_names[row][col]}\nd={distance:.2f}", fontsize=6)
    for axis in axes.flat:
        axis.set_axis_off()
    save(figure, path)
