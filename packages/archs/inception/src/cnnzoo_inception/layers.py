"""What the Inception papers share: a module is a set of parallel branches whose outputs are
concatenated along the channels (GoogLeNet §4, Fig. 2b), and every later paper draws its
modules the same way, as columns of convolutions and poolings over one input.

So a module is written here as data, one tuple per branch, read off the paper's figure or
table column by column:

    # Inception-v4, Fig. 4 (Inception-A)
    ((Conv(96, 1),),
     (Conv(64, 1), Conv(96, 3)),
     (Conv(64, 1), Conv(96, 3), Conv(96, 3)),
     (Pool("avg"), Conv(96, 1)))

`Conv(out, kernel, stride, valid)` follows the figures' notation: "V" marks a valid
(unpadded) convolution, every other one is padded to keep its grid (Inception-v4 §3).
`Fork` is a branch that ends in parallel convolutions (Rethinking, Fig. 7).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else size


@dataclass(frozen=True)
class Conv:
    """One convolution of a figure: `out` filters of size `kernel` (1x7 is `(1, 7)`)."""

    out: int
    kernel: int | tuple[int, int]
    stride: int = 1
    valid: bool = False  # the figures' "V": no padding, the grid shrinks

    @property
    def padding(self) -> tuple[int, int]:
        height, width = _pair(self.kernel)
        return (0, 0) if self.valid else (height // 2, width // 2)


@dataclass(frozen=True)
class Pool:
    """A pooling branch step: max or average over `kernel` x `kernel` windows."""

    kind: Literal["max", "avg"]
    kernel: int = 3
    stride: int = 1
    valid: bool = False
    # TensorFlow's padded average pooling divides by the pixels inside the image; Caffe's and
    # torchvision's Inception-v3 divide by the whole window.
    count_include_pad: bool = False

    def build(self) -> nn.Module:
        padding = 0 if self.valid else self.kernel // 2
        if self.kind == "max":
            return nn.MaxPool2d(self.kernel, self.stride, padding)
        return nn.AvgPool2d(
            self.kernel, self.stride, padding, count_include_pad=self.count_include_pad
        )


@dataclass(frozen=True)
class Fork:
    """A branch's last step split into parallel convolutions, their outputs concatenated:
    the "expanded filter bank" of Rethinking the Inception Architecture, Fig. 7."""

    convs: tuple[Conv, ...]


Step = Conv | Pool | Fork
Branch = tuple[Step, ...]


class ConvUnit(nn.Sequential):
    """A convolution and its ReLU; with `bn_eps`, batch normalisation between them and no
    bias (a bias before BN is redundant, BN paper §3.2)."""

    def __init__(self, in_chans: int, spec: Conv, bn_eps: float | None = None) -> None:
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            conv=nn.Conv2d(
                in_chans,
                spec.out,
                spec.kernel,
                spec.stride,
                spec.padding,
                bias=bn_eps is None,
            )
        )
        if bn_eps is not None:
            layers["bn"] = nn.BatchNorm2d(spec.out, eps=bn_eps)
        layers["relu"] = nn.ReLU(inplace=True)
        super().__init__(layers)


class ForkUnit(nn.Module):
    """`Fork` built: parallel convolutions over one input, concatenated."""

    def __init__(self, in_chans: int, spec: Fork, bn_eps: float | None) -> None:
        super().__init__()
        self.convs = nn.ModuleList(ConvUnit(in_chans, conv, bn_eps) for conv in spec.convs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([conv(x) for conv in self.convs], dim=1)


def build_branch(in_chans: int, steps: Branch, bn_eps: float | None) -> tuple[nn.Sequential, int]:
    """One column of a figure as a Sequential, and the channels it gives."""
    layers: list[nn.Module] = []
    channels = in_chans
    for step in steps:
        if isinstance(step, Conv):
            layers.append(ConvUnit(channels, step, bn_eps))
            channels = step.out
        elif isinstance(step, Fork):
            layers.append(ForkUnit(channels, step, bn_eps))
            channels = sum(conv.out for conv in step.convs)
        else:  # a pooling passes its channels through ("pass through" in the BN paper)
            layers.append(step.build())
    return nn.Sequential(*layers), channels


class InceptionModule(nn.Module):
    """Parallel branches over one input, concatenated along the channels (GoogLeNet §4).

    `bn_eps=None` builds GoogLeNet's units (convolution with bias, ReLU); a number builds
    the batch-normalised units of every later paper with that epsilon.
    """

    def __init__(
        self, in_chans: int, branches: tuple[Branch, ...], bn_eps: float | None = None
    ) -> None:
        super().__init__()
        built = [build_branch(in_chans, steps, bn_eps) for steps in branches]
        self.branches = nn.ModuleList(branch for branch, _ in built)
        self.in_chans = in_chans
        self.out_chans = sum(channels for _, channels in built)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.branches], dim=1)


class InceptionResNetModule(nn.Module):
    """Inception-v4 paper §3.2, Figs. 10-13 and 16-19: an Inception module whose
    concatenated branches go through a 1x1 convolution without activation ("1x1 Conv,
    Linear") back to the input's width, are scaled down (§3.3: by 0.1 to 0.3, "to
    stabilize the training") and added to the input; the ReLU follows the sum. BN sits
    on the branches' convolutions only, "not on top of the summations" (§3.2)."""

    def __init__(
        self,
        in_chans: int,
        branches: tuple[Branch, ...],
        scale: float,
        bn_eps: float,
        activate: bool = True,
    ) -> None:
        super().__init__()
        self.inception = InceptionModule(in_chans, branches, bn_eps)
        self.up = nn.Conv2d(self.inception.out_chans, in_chans, 1)
        self.relu = nn.ReLU(inplace=True) if activate else nn.Identity()
        self.scale = scale
        self.in_chans = self.out_chans = in_chans

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(x + self.scale * self.up(self.inception(x)))

    def extra_repr(self) -> str:
        return f"scale={self.scale}"
