"""The layers of LeNet-5 that torch does not have, as §II.B and Appendix A define them."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class ScaledTanh(nn.Module):
    """The squashing function f(a) = A tanh(S a), A = 1.7159, S = 2/3 (Appendix A).

    With these constants f(1) = 1 and f(-1) = -1, and the gain is largest around them.
    """

    amplitude = 1.7159
    slope = 2.0 / 3.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.amplitude * torch.tanh(self.slope * x)


def uniform_fan_in_(tensor: torch.Tensor, fan_in: int | torch.Tensor) -> torch.Tensor:
    """Appendix A: weights drawn uniformly in [-2.4/F, 2.4/F], F the unit's fan-in."""
    with torch.no_grad():
        bound = 2.4 / torch.as_tensor(fan_in, dtype=tensor.dtype, device=tensor.device)
        return tensor.uniform_(-1, 1).mul_(bound)


class Subsampling(nn.Module):
    """S2 and S4: each unit adds its four 2x2 inputs, multiplies the sum by a trainable
    coefficient, adds a trainable bias and squashes. Two parameters per feature map."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.coefficient = nn.Parameter(torch.empty(channels))
        self.bias = nn.Parameter(torch.empty(channels))
        self.squash = ScaledTanh()
        uniform_fan_in_(self.coefficient, 4)
        uniform_fan_in_(self.bias, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        summed = F.avg_pool2d(x, kernel_size=2) * 4
        return self.squash(
            summed * self.coefficient.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        )


# Table I: which S2 feature maps (rows) each of C3's 16 maps (columns) is connected to.
# The first six see three contiguous maps, the next six four contiguous maps, the next three
# four non-contiguous maps, and the last one all six: 60 connections in all.
C3_TABLE = (
    "X...XXX..XXXX.X",
    "XX...XXX..XXXX.",
    "XXX...XXX..X.XX",
    ".XXX..XXXX..X.X",
    "..XXX..XXXX.XX.",
    "...XXX..XXXX.XX",
)


def _c3_connections() -> torch.Tensor:
    # Pad each row to 16 columns: the last map (column 15) sees every S2 map.
    rows = [row + "X" for row in C3_TABLE]
    # On the CPU even under `with torch.device("meta")`: the table is read, not trained.
    connections = torch.tensor([[cell == "X" for cell in row] for row in rows], device="cpu")
    return connections.T  # (16 out, 6 in)


class PartialConv2d(nn.Module):
    """C3: a 5x5 convolution in which each output map sees only some input maps (Table I).

    Only the 60 connected 5x5 kernels are parameters (1,516 with the biases), so the
    parameter count is the paper's; they are scattered into a full kernel for one conv.
    """

    def __init__(self, connections: torch.Tensor, kernel_size: int = 5) -> None:
        super().__init__()
        out_channels = connections.shape[0]
        self.kernel_size = kernel_size
        self.kernel_shape = (out_channels, connections.shape[1], kernel_size, kernel_size)
        self.register_buffer("connections", connections.clone(), persistent=False)
        self.weight = nn.Parameter(torch.empty(int(connections.sum()), kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels))
        # Each map's fan-in is its number of connected input maps times the kernel area.
        fan_in = connections.sum(dim=1) * kernel_size * kernel_size
        kernel_owner = connections.nonzero()[:, 0]  # output map of each stored kernel
        uniform_fan_in_(self.weight, fan_in[kernel_owner].view(-1, 1, 1))
        uniform_fan_in_(self.bias, fan_in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The stored kernels fill the connected (output, input) pairs in row-major order; a
        # scatter rather than an indexed assignment keeps the forward traceable (torch.fx).
        connected = self.connections[:, :, None, None].expand(*self.kernel_shape)
        kernel = self.weight.new_zeros(self.kernel_shape).masked_scatter(connected, self.weight)
        return F.conv2d(x, kernel, self.bias)


# The output RBF units' parameter vectors: "stylized images of the corresponding character
# class drawn on a 7x12 bitmap" (§II.B, Fig. 3), +1 for ink and -1 for background.
DIGIT_BITMAPS = (
    (
        ".XXXXX.",
        "XX...XX",
        "XX...XX",
        "XX..XXX",
        "XX.X.XX",
        "XX.X.XX",
        "XXX..XX",
        "XX...XX",
        "XX...XX",
        "XX...XX",
        ".XXXXX.",
        ".......",
    ),
    (
        "...XX..",
        "..XXX..",
        ".XXXX..",
        "...XX..",
        "...XX..",
        "...XX..",
        "...XX..",
        "...XX..",
        "...XX..",
        "...XX..",
        ".XXXXXX",
        ".......",
    ),
    (
        ".XXXXX.",
        "XX...XX",
        ".....XX",
        ".....XX",
        "....XX.",
        "...XX..",
        "..XX...",
        ".XX....",
        "XX.....",
        "XX.....",
        "XXXXXXX",
        ".......",
    ),
    (
        "XXXXXXX",
        ".....XX",
        "....XX.",
        "...XX..",
        "..XXXX.",
        ".....XX",
        ".....XX",
        ".....XX",
        ".....XX",
        "XX...XX",
        ".XXXXX.",
        ".......",
    ),
    (
        "....XX.",
        "...XXX.",
        "..XXXX.",
        ".XX.XX.",
        "XX..XX.",
        "XX..XX.",
        "XXXXXXX",
        "....XX.",
        "....XX.",
        "....XX.",
        "....XX.",
        ".......",
    ),
    (
        "XXXXXXX",
        "XX.....",
        "XX.....",
        "XXXXXX.",
        ".....XX",
        ".....XX",
        ".....XX",
        ".....XX",
        ".....XX",
        "XX...XX",
        ".XXXXX.",
        ".......",
    ),
    (
        "..XXXX.",
        ".XX....",
        "XX.....",
        "XX.....",
        "XXXXXX.",
        "XX...XX",
        "XX...XX",
        "XX...XX",
        "XX...XX",
        "XX...XX",
        ".XXXXX.",
        ".......",
    ),
    (
        "XXXXXXX",
        ".....XX",
        ".....XX",
        "....XX.",
        "...XX..",
        "...XX..",
        "..XX...",
        "..XX...",
        "..XX...",
        "..XX...",
        "..XX...",
        ".......",
    ),
    (
        ".XXXXX.",
        "XX...XX",
        "XX...XX",
        "XX...XX",
        ".XXXXX.",
        "XX...XX",
        "XX...XX",
        "XX...XX",
        "XX...XX",
        "XX...XX",
        ".XXXXX.",
        ".......",
    ),
    (
        ".XXXXX.",
        "XX...XX",
        "XX...XX",
        "XX...XX",
        "XX...XX",
        ".XXXXXX",
        ".....XX",
        ".....XX",
        ".....XX",
        "....XX.",
        ".XXXX..",
        ".......",
    ),
)


def rbf_prototypes(num_classes: int) -> torch.Tensor:
    """The fixed +-1 codes of the output units: the digit bitmaps for ten classes, and
    seeded random codes for any other number of classes (the paper had none to give)."""
    if num_classes == len(DIGIT_BITMAPS):
        return torch.tensor(
            [
                [1.0 if cell == "X" else -1.0 for row in bitmap for cell in row]
                for bitmap in DIGIT_BITMAPS
            ]
        )
    generator = torch.Generator().manual_seed(num_classes)
    return torch.randint(0, 2, (num_classes, 84), generator=generator).float() * 2 - 1


class EuclideanRBF(nn.Module):
    """The output layer: y_i = sum_j (x_j - w_ij)^2 with fixed w (§II.B, eq. 7).

    It returns -y as logits; `map_criterion` is the loss the paper trains them with. The
    codes are buffers, not parameters: "chosen by hand and kept fixed".
    """

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.register_buffer("prototypes", rbf_prototypes(num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -(x.unsqueeze(1) - self.prototypes).pow(2).sum(dim=-1)


# Eq. 9's constant j, which the paper leaves unnumbered ("a positive constant"). With j = 10,
# e^-j outweighs the other classes' e^-y_i once they stand more than 10 from F6's output, and
# the criterion then keeps pulling F6 towards the correct prototype, as the MSE term does.
RUBBISH_PENALTY = 10.0


def map_criterion(
    logits: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0
) -> torch.Tensor:
    """The maximum a posteriori criterion of eq. 9, for logits -y_i:

        E = y_D + log(e^-j + sum_i e^-y_i)

    which is cross-entropy over the classes plus a "rubbish" class of constant penalty j.
    Unlike plain cross-entropy it keeps lowering the correct class's penalty y_D even once
    that class wins, and it cannot be lowered by pushing every penalty up at once (§II.C).
    """
    rubbish = logits.new_full((logits.shape[0], 1), -RUBBISH_PENALTY)
    return F.cross_entropy(
        torch.cat([logits, rubbish], dim=1), target, label_smoothing=label_smoothing
    )


def init_dense_fan_in_(module: nn.Module) -> None:
    """Appendix A's uniform +-2.4/F initialisation for a Conv2d or Linear layer."""
    weight = module.weight
    fan_in = math.prod(weight.shape[1:])
    uniform_fan_in_(weight, fan_in)
    uniform_fan_in_(module.bias, fan_in)
