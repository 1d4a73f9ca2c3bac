"""The input check every cnnzoo network makes before its forward (`ClassifierNet.check_input`)
and the feature maps cut from one make too: the shape a net and its card can take."""

from __future__ import annotations

import torch
from torch.fx._symbolic_trace import is_fx_symbolic_tracing

from cnnzoo.card import ModelCard
from cnnzoo.errors import InputShapeError


def check_input(x: torch.Tensor, name: str, in_chans: int, card: ModelCard | None) -> None:
    """Fail early, saying what to do, on input a network `name` of `in_chans` channels and
    this card cannot take.

    Skipped while torch.fx traces the network or TorchScript compiles it: their inputs are
    symbols, not tensors with shapes to check, and a check would be control flow in the
    traced graph (torch.export and torch.jit.trace see real shapes and check)."""
    if is_fx_symbolic_tracing() or torch.jit.is_scripting():
        return
    if x.ndim != 4:
        raise InputShapeError(
            f"{name} takes a batch of images shaped (N, C, H, W); got a tensor of shape "
            f"{tuple(x.shape)}. Add a batch dimension with x.unsqueeze(0) for one image."
        )
    if x.shape[1] != in_chans:
        raise InputShapeError(
            f"{name} was built for {in_chans}-channel images but got {x.shape[1]} "
            f"channels. Build it with in_chans={x.shape[1]}, or convert the images "
            f"(grayscale <-> RGB) to {in_chans}."
        )
    if card is None:
        return
    height, width = x.shape[-2:]
    if card.fixed_input_size and (height, width) != tuple(card.input_size[1:]):
        raise InputShapeError(
            f"{name} only takes {card.input_size[1]}x{card.input_size[2]} images (its "
            f"classifier is sized for them, as in the paper); got {height}x{width}. "
            f"Resize or pad the images to {card.input_size[1]}x{card.input_size[2]}."
        )
    if card.min_input_size is not None and min(height, width) < card.min_input_size:
        raise InputShapeError(
            f"{name} needs images of at least {card.min_input_size}x{card.min_input_size}; "
            f"got {height}x{width}. Resize them up (the paper used "
            f"{card.input_size[1]}x{card.input_size[2]})."
        )
