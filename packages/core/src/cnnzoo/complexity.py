"""Parameters and multiply-adds, counted as the papers count them.

Multiply-adds are those of convolutions and matrix products (torch's flop counter divided
by two); like the papers, the count leaves out normalisation, activations and pooling. Both
counts build the model on the meta device, so even VGG-19 costs no memory and little time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import torch
from torch.utils.flop_counter import FlopCounterMode

from cnnzoo.registry import create_model, model_card


@dataclass(frozen=True)
class Complexity:
    params: int
    macs: int
    input_size: tuple[int, int, int]


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: torch.nn.Module, input_size: tuple[int, int, int]) -> int:
    """Multiply-adds of one forward pass of one image of `input_size` (C, H, W), in eval mode
    (no auxiliary classifiers, as the papers count)."""
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, *input_size, device=device))
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


@cache
def complexity(name: str, input_size: tuple[int, int, int] | None = None) -> Complexity:
    """Parameters and multiply-adds of a registered model at its paper's input size (or
    `input_size`), with the paper's number of classes."""
    size = input_size or model_card(name).input_size
    with torch.device("meta"):
        model = create_model(name)
    return Complexity(count_params(model), count_macs(model, size), size)


def printed_precision(figure: int) -> int:
    """Half a unit of the last printed digit: 138_000_000 ("138M") may be 137.5M to 138.5M."""
    if figure == 0:
        return 0
    zeros = len(str(figure)) - len(str(figure).rstrip("0"))
    return 10**zeros // 2


def matches_published(ours: int, published: int, tolerance: float = 0.0) -> bool:
    """Whether our count rounds to the printed figure, give or take `tolerance` (relative)."""
    allowed = printed_precision(published) + math.ceil(tolerance * published)
    return abs(ours - published) <= allowed
