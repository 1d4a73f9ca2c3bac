"""The deconvnet of Zeiler and Fergus, "Visualizing and Understanding Convolutional
Networks" (arXiv:1311.2901), §2.1 and Fig. 2.

To see what excites one feature map, the paper takes its strongest activation, sets every
other activation of the layer to zero, and maps it back to pixels through the layers below,
each undone in turn:

    Unpooling      the max-pooling switches put each value back where its max came from;
    Rectification  the reconstructed signal passes through a ReLU, "to obtain valid feature
                   reconstructions at each layer (which also should be positive)";
    Filtering      the transposed (flipped) filters of the convolution.

Unpooling with switches is max pooling's backward, and filtering with the transposed filters
is convolution's backward, so the deconvnet is the backward pass from the chosen activation
with one change: each ReLU passes relu(signal) back instead of masking it by where its
forward input was positive. Hooking the ReLU modules makes that change on any registered
model; the contrast normalisations, which §2.1 does not invert, pass the signal through.
Other layers (tanh, batch norm in evaluation) pass it back by their own gradient.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from cnnzoo_explain.images import DatasetImages, Preprocessing
from cnnzoo_explain.layers import check_channel, feature_maps, without_inplace


class _RectifiedBackward(torch.autograd.Function):
    """ReLU forward; backward the ReLU of the signal itself (§2.1, "Rectification")."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, signal: torch.Tensor) -> torch.Tensor:
        return signal.clamp(min=0)


class _PassedBackward(torch.autograd.Function):
    """The layer's own output forward; the signal unchanged backward (a layer the deconvnet
    does not invert, such as contrast normalisation)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        return output.detach().clone()

    @staticmethod
    def backward(ctx, signal: torch.Tensor) -> tuple[torch.Tensor, None]:
        return signal, None


def _is_contrast_norm(module: nn.Module) -> bool:
    # torch's LocalResponseNorm, and AlexNet's own grouped one of the same name.
    return isinstance(module, nn.LocalResponseNorm) or type(module).__name__ == "LocalResponseNorm"


@contextlib.contextmanager
def deconvnet_mode(model: nn.Module) -> Iterator[None]:
    """Within the block, backward passes through `model` are the deconvnet's."""
    handles = []
    for module in model.modules():
        if isinstance(module, nn.ReLU):
            hook = lambda m, inputs, output: _RectifiedBackward.apply(inputs[0])  # noqa: E731
        elif _is_contrast_norm(module):
            hook = lambda m, inputs, output: _PassedBackward.apply(inputs[0], output)  # noqa: E731
        else:
            continue
        handles.append(module.register_forward_hook(hook))
    try:
        with without_inplace(model):  # the hooks need each ReLU's input intact
            yield
    finally:
        for handle in handles:
            handle.remove()


@dataclass
class Projection:
    """Each image's strongest activation of one channel, projected down to pixel space."""

    pixels: torch.Tensor  # (N, C, H, W), the reconstruction in the input's space
    locations: torch.Tensor  # (N, 2) row and column of the activation in the layer's map
    activations: torch.Tensor  # (N,) its value


def project(
    model: nn.Module,
    layer: str,
    inputs: torch.Tensor,
    channel: int,
    locations: torch.Tensor | None = None,
) -> Projection:
    """Project one activation per image of `channel` of `layer` back to pixels: the strongest
    (or the one at `locations`), all others set to zero (§2.1)."""
    model.eval()
    x = inputs.detach().clone().requires_grad_(True)
    with deconvnet_mode(model), torch.enable_grad():
        maps = feature_maps(model, layer, x)
        check_channel(maps, channel, layer)
        chosen = maps[:, channel]
        width = chosen.shape[-1]
        if locations is None:
            flat = chosen.detach().flatten(1).argmax(dim=1)
            locations = torch.stack([flat // width, flat % width], dim=1)
        rows = torch.arange(len(x))
        activations = chosen.detach()[rows, locations[:, 0], locations[:, 1]]
        # The activation itself, alone in its layer, is what goes down the deconvnet.
        seed = torch.zeros_like(maps)
        seed[rows, channel, locations[:, 0], locations[:, 1]] = activations
        (pixels,) = torch.autograd.grad(maps, x, seed)
    return Projection(pixels.detach(), locations, activations)


class _PassedThroughReLU(torch.autograd.Function):
    """ReLU forward; the signal unchanged backward (every path through it counts)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, signal: torch.Tensor) -> torch.Tensor:
        return signal


class _SpreadPooling(torch.autograd.Function):
    """Max pooling forward; backward spread over the whole window, as average pooling does
    (every pixel of the window, not only the switch, is in the receptive field)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, output: torch.Tensor, pool: nn.MaxPool2d) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.pool = pool
        return output.detach().clone()

    @staticmethod
    def backward(ctx, signal: torch.Tensor):
        (x,) = ctx.saved_tensors
        pool = ctx.pool
        with torch.enable_grad():
            probe = x.detach().requires_grad_(True)
            averaged = F.avg_pool2d(
                probe, pool.kernel_size, pool.stride, pool.padding, ceil_mode=pool.ceil_mode
            )
            (spread,) = torch.autograd.grad(averaged, probe, signal.abs())
        return spread, None, None


def receptive_fields(
    model: nn.Module, layer: str, image_shape: tuple[int, ...], locations: torch.Tensor
) -> list[tuple[int, int, int, int]]:
    """The box (top, left, bottom, right; bottom and right exclusive) of input pixels that
    each unit at `locations` of `layer` sees: where its gradient can be non-zero."""
    handles = []
    for module in model.modules():
        if isinstance(module, nn.ReLU):
            hook = lambda m, inputs, output: _PassedThroughReLU.apply(inputs[0])  # noqa: E731
        elif isinstance(module, nn.MaxPool2d):
            hook = lambda m, inputs, output: _SpreadPooling.apply(inputs[0], output, m)  # noqa: E731
        else:
            continue
        handles.append(module.register_forward_hook(hook))
    # Random input and weights in general position: no gradient cancels to exactly zero.
    generator = torch.Generator().manual_seed(0)
    device = next(model.parameters()).device
    probe = torch.randn((len(locations), *image_shape), generator=generator).to(device)
    probe.requires_grad_(True)
    try:
        with without_inplace(model), torch.enable_grad():
            maps = feature_maps(model, layer, probe)
            seed = torch.zeros_like(maps)
            seed[torch.arange(len(locations)), :, locations[:, 0], locations[:, 1]] = 1.0
            (grad,) = torch.autograd.grad(maps, probe, seed)
    finally:
        for handle in handles:
            handle.remove()
    boxes = []
    for support in grad.abs().sum(dim=1) > 0:
        rows, cols = support.any(dim=1).nonzero(), support.any(dim=0).nonzero()
        boxes.append((int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1))
    return boxes


@dataclass
class TopActivations:
    """The images of a dataset whose strongest activation of a channel is highest."""

    indices: list[int]  # into the scanned split
    values: list[float]


@torch.no_grad()
def strongest_images(
    model: nn.Module,
    layer: str,
    channel: int,
    data: DatasetImages,
    preprocessing: Preprocessing,
    split: str = "test",
    limit: int | None = None,
    top: int = 9,
    batch_size: int = 256,
) -> TopActivations:
    """Scan a split for the `top` images that excite `channel` of `layer` most (Fig. 2's
    "top 9 activations" of each feature map)."""
    model.eval()
    device = next(model.parameters()).device
    best_values = torch.empty(0)
    best_indices = torch.empty(0, dtype=torch.long)
    total = len(data.split(split)) if limit is None else min(limit, len(data.split(split)))
    for pixels, indices in tqdm(
        data.batches(split, limit, batch_size),
        total=-(-total // batch_size),
        desc=f"scanning {data.name} {split} for {layer}[{channel}]",
        unit="batch",
    ):
        maps = feature_maps(model, layer, preprocessing(pixels).to(device))
        check_channel(maps, channel, layer)
        strongest = maps[:, channel].flatten(1).amax(dim=1).cpu()
        values = torch.cat([best_values, strongest])
        candidates = torch.cat([best_indices, torch.tensor(indices)])
        kept = values.topk(min(top, len(values))).indices
        best_values, best_indices = values[kept], candidates[kept]
    return TopActivations(best_indices.tolist(), best_values.tolist())


def save_figure(
    projection: Projection,
    pixels: torch.Tensor,
    boxes: list[tuple[int, int, int, int]],
    path: str,
    title: str,
) -> None:
    """Fig. 2's layout: the projections on the left, the image patches they come from on
    the right, each cropped to the unit's receptive field."""
    from cnnzoo_explain.figures import as_image, columns_for, plt, save, signed_image

    count = len(boxes)
    cols = columns_for(count)
    rows = -(-count // cols)
    figure = plt.figure(figsize=(2 * cols * 1.1 + 0.4, rows * 1.1 + 0.5), dpi=100)
    figure.suptitle(title, fontsize=9)
    halves = figure.subfigures(1, 2, wspace=0.05)
    for half, name in zip(halves, ("projections", "image patches"), strict=True):
        half.suptitle(name, fontsize=8, y=0.93)
        axes = half.subplots(rows, cols, squeeze=False)
        for index, axis in enumerate(axes.flat):
            axis.set_axis_off()
            if index >= count:
                continue
            top, left, bottom, right = boxes[index]
            if name == "projections":
                tile = signed_image(projection.pixels[index, :, top:bottom, left:right])
            else:
                tile = as_image(pixels[index, :, top:bottom, left:right])
            axis.imshow(tile, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    save(figure, path)
