"""Deep Networks with Stochastic Depth (Huang, Sun, Liu, Sedra, Weinberger, ECCV 2016).

§3: while training, residual block l survives each mini-batch with probability p_l,

    H_l = ReLU(b_l f_l(H_{l-1}) + id(H_{l-1})),   b_l ~ Bernoulli(p_l)

so a dropped block passes its input through its shortcut alone ("a dropped layer connects
layer l+1 to l-1"); at test every block is used, its residual scaled by its survival:

    H_l = ReLU(p_l f_l(H_{l-1}) + id(H_{l-1})).

The linear decay rule (§3) gives the first block nearly 1 and the last p_L:
p_l = 1 - (l / L)(1 - p_L), p_L = 0.5. The network is the 110-layer CIFAR ResNet of He et al.
(L = 54 blocks of two 3x3 convolutions), whose shortcuts where the width doubles are, in the
authors' release, a 2x2 average pooling with zero maps appended (He et al.'s option A takes
every other pixel instead).

The residual of a dropped block is computed and multiplied by b_l = 0 rather than skipped:
the outputs are the paper's, and so are the updates, since the authors' SGD (Torch's
optim.sgd over one flat parameter vector) applies weight decay and momentum to every weight
at every step, which a skipped block's missing gradient would not. What this gives up is
§4's training-time saving. The gate is drawn on the device: no host read in the step, one
graph under torch.fx, and every DDP process computes every parameter's gradient.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from cnnzoo import ModelCard, PublishedError, variant
from torch import nn

from cnnzoo_resnet.cifar import TABLE_6
from cnnzoo_resnet.resnet import BasicBlock, ResNet

LAST_SURVIVAL = 0.5  # p_L of the linear decay rule (the release's deathRate 0.5)


def linear_decay(blocks: int, last_survival: float = LAST_SURVIVAL) -> list[float]:
    """The linear decay rule (§3): p_l = 1 - (l / L)(1 - p_L) for l = 1 ... L."""
    if not 0 < last_survival <= 1:
        raise ValueError(f"the last block's survival p_L must be in (0, 1]; got {last_survival}")
    return [1 - (block / blocks) * (1 - last_survival) for block in range(1, blocks + 1)]


class AvgPoolPadIdentity(nn.Module):
    """The release's shortcut where a block downsamples: a `stride` x `stride` average
    pooling, then zero maps for the extra channels. No parameters."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.extra_channels = out_channels - in_channels
        self.pool = nn.AvgPool2d(stride, stride) if stride > 1 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(self.pool(x), (0, 0, 0, 0, 0, self.extra_channels))


class StochasticDepthBlock(BasicBlock):
    """He et al.'s two-layer block whose residual survives a training mini-batch with
    probability `survival` (p_l), and is scaled by it at test."""

    def __init__(self, in_channels: int, width: int, stride: int, survival: float) -> None:
        super().__init__(in_channels, width, stride, shortcut="A")
        if stride != 1 or in_channels != width:
            self.shortcut = AvgPoolPadIdentity(in_channels, width, stride)
        self.survival = survival

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.residual(x)
        if self.training:  # b_l ~ Bernoulli(p_l), once for the whole mini-batch
            gate = (torch.rand((), device=x.device) < self.survival).to(residual.dtype)
        else:
            gate = self.survival
        return self.relu(gate * residual + self.shortcut(x))

    def extra_repr(self) -> str:
        return f"survival={self.survival:.4f}"


class StochasticDepthResNet(ResNet):
    """A CIFAR ResNet of `layers` blocks a stage whose blocks survive by the linear decay
    rule, from nearly 1 at the first to `last_survival` at the last."""

    def __init__(
        self,
        layers: Sequence[int],
        num_classes: int = 10,
        in_chans: int = 3,
        last_survival: float = LAST_SURVIVAL,
    ) -> None:
        # Taken by _unit, block by block, while ResNet builds the stages (a plain attribute:
        # it may be set before nn.Module's own); each block keeps its own after.
        self._survivals = iter(linear_decay(sum(layers), last_survival))
        super().__init__(BasicBlock, layers, num_classes, in_chans, "A", dataset="cifar")
        del self._survivals

    def _unit(self, block, in_channels, width, stride, shortcut, first_unit) -> nn.Module:
        return StochasticDepthBlock(in_channels, width, stride, next(self._survivals))


# Table 1 (test error, %, CIFAR-10 with the standard augmentation): the 110-layer ResNet with
# constant depth 6.41, with stochastic depth 5.25; the authors' released code ends at 5.23.
PUBLISHED_ERROR = 5.25


@variant(
    ModelCard(
        paper="Deep Networks with Stochastic Depth",
        authors="G. Huang, Y. Sun, Z. Liu, D. Sedra, K. Q. Weinberger",
        year=2016,
        url="https://arxiv.org/abs/1603.09382",
        input_size=(3, 32, 32),
        num_classes=10,
        published_params=TABLE_6[110][1],
        params_source="the 110-layer ResNet of He et al. (their Table 6: 1.7M), which "
        "stochastic depth trains without adding a parameter",
        published_errors=(
            PublishedError(
                "CIFAR-10 test",
                top1=PUBLISHED_ERROR,
                evaluation="single view of the 32x32 test image, at the epoch of the best "
                "validation error (45k/5k split), after 500 epochs",
                source="Table 1: 110-layer ResNet with stochastic depth, CIFAR10+",
            ),
        ),
        recipe="resnet110_sd_cifar10",
        notes="Linear decay of survival to p_L = 0.5 over the 54 blocks (§3); a dropped "
        "block's residual is multiplied by 0 rather than skipped (the same outputs and "
        "updates, without §4's training-time saving); downsampling shortcuts average 2x2 "
        "and zero-pad, as the authors' release does. Its convolutions have no bias (He et "
        "al.'s; the release gives them one, at 0).",
    )
)
def resnet110_sd(num_classes: int = 10, in_chans: int = 3) -> StochasticDepthResNet:
    """The 110-layer CIFAR ResNet trained with stochastic depth (n = 18, 54 blocks):
    1,727,962 parameters, He et al.'s ResNet-110's."""
    n = TABLE_6[110][0]
    return StochasticDepthResNet((n, n, n), num_classes, in_chans)
