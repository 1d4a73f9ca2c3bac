"""Layers by their dotted module names, and what they output.

Every view names a layer as `model.get_submodule` does ("features.c3", "layer4.2.conv1");
a wrong name fails with the names that exist and the closest ones.
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Iterator

import torch
from torch import nn

from cnnzoo_explain.errors import ChannelError, LayerNotFoundError, NotConvolutionalError


def layer_names(model: nn.Module) -> list[str]:
    return [name for name, _ in model.named_modules() if name]


def find_layer(model: nn.Module, name: str) -> nn.Module:
    """The module called `name`, or an error listing the names that exist."""
    names = layer_names(model)
    if name in names:
        return model.get_submodule(name)
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    shown = ", ".join(names[:60]) + (f", ... ({len(names)} in all)" if len(names) > 60 else "")
    raise LayerNotFoundError(
        f"{type(model).__name__} has no layer {name!r}.{hint} Layers are dotted module "
        f"names: {shown}."
    )


@contextlib.contextmanager
def without_inplace(model: nn.Module) -> Iterator[None]:
    """Turn off in-place activations for a while: hooks and gradients need each layer's
    output to stay as it was computed (a ReLU(inplace=True) overwrites its input)."""
    switched = [m for m in model.modules() if getattr(m, "inplace", False) is True]
    for module in switched:
        module.inplace = False
    try:
        yield
    finally:
        for module in switched:
            module.inplace = True


class _Reached(Exception):
    """Raised by a hook to stop a forward pass once the wanted layer has run."""


def _check_maps(output: object, name: str) -> torch.Tensor:
    if not isinstance(output, torch.Tensor) or output.ndim != 4:
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise NotConvolutionalError(
            f"layer {name!r} outputs {shape}, not feature maps (N, C, H, W); choose a "
            f"convolutional layer, such as a stage of the model's feature_info."
        )
    return output


def feature_maps(model: nn.Module, name: str, x: torch.Tensor) -> torch.Tensor:
    """The output of layer `name` for input `x` (the rest of the network is not run)."""
    captured: list[torch.Tensor] = []

    def record(module, inputs, output):
        captured.append(output)
        raise _Reached

    handle = find_layer(model, name).register_forward_hook(record)
    try:
        model(x)
    except _Reached:
        pass
    finally:
        handle.remove()
    if not captured:
        raise NotConvolutionalError(
            f"layer {name!r} did not run in the model's forward pass; choose one that does."
        )
    return _check_maps(captured[0], name)


@contextlib.contextmanager
def recorded(model: nn.Module, name: str) -> Iterator[list[torch.Tensor]]:
    """Record the outputs of layer `name` during the forward passes inside the block."""
    outputs: list[torch.Tensor] = []
    handle = find_layer(model, name).register_forward_hook(
        lambda module, inputs, output: outputs.append(_check_maps(output, name))
    )
    try:
        yield outputs
    finally:
        handle.remove()


def check_channel(maps: torch.Tensor, channel: int, name: str) -> None:
    if not 0 <= channel < maps.shape[1]:
        raise ChannelError(
            f"layer {name!r} has {maps.shape[1]} channels (0 to {maps.shape[1] - 1}); "
            f"got channel {channel}."
        )


def default_layer(model: nn.Module, x: torch.Tensor) -> str:
    """The last stage of the model's `feature_info` whose maps are more than one pixel:
    a 1x1 map (LeNet-5's C5) has nothing to show where in the image it looks."""
    stages = [info.module for info in getattr(model, "feature_info", [])]
    if not stages:
        raise NotConvolutionalError(
            f"{type(model).__name__} declares no feature_info stages; name a layer with --layer."
        )
    with torch.no_grad():
        for name in reversed(stages):
            if min(feature_maps(model, name, x[:1]).shape[-2:]) > 1:
                return name
    return stages[-1]
