"""Capsules and the routing between them: Sabour, Frosst and Hinton, "Dynamic Routing Between
Capsules", NIPS 2017, §2-3.

A capsule is a group of neurons whose activity vector stands for an entity: its length for
the probability that the entity is there, its orientation for the entity's instantiation
parameters. Lower capsules vote for the pose of each higher capsule (û_j|i = W_ij u_i, eq. 2),
and routing-by-agreement (Procedure 1) couples each lower capsule more strongly to the higher
capsules whose output agrees with its vote.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# §3, eq. 4: "m+ = 0.9 and m- = 0.1", "λ = 0.5"
M_PLUS = 0.9
M_MINUS = 0.1
ABSENT_WEIGHT = 0.5  # λ, the down-weighting of the loss for absent digit classes


def squash(s: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Eq. 1: v = |s|² / (1 + |s|²) · s / |s|, shrinking short vectors to almost zero length
    and long ones to just below 1, so that a capsule's length can be a probability."""
    squared_norm = s.pow(2).sum(dim, keepdim=True)
    # s / |s| is taken as s * rsqrt(|s|²): finite at s = 0, where the scale is 0 anyway.
    return squared_norm / (1 + squared_norm) * s * torch.rsqrt(squared_norm + 1e-12)


def dynamic_routing(votes: torch.Tensor, iterations: int = 3) -> torch.Tensor:
    """Procedure 1, routing-by-agreement, for a batch of votes û_j|i of shape
    (batch, lower capsules i, higher capsules j, pose dimensions); gives v_j,
    (batch, j, dimensions).

        b_ij <- 0
        for r iterations:
            c_i <- softmax(b_i)             over the higher capsules j (eq. 3)
            s_j <- Σ_i c_ij û_j|i           (eq. 2)
            v_j <- squash(s_j)              (eq. 1)
            b_ij <- b_ij + û_j|i · v_j      the agreement
    """
    if iterations < 1:
        raise ValueError(f"routing takes at least one iteration; got {iterations}.")
    logits = votes.new_zeros(votes.shape[:3])  # b_ij: the log prior of coupling i to j
    for iteration in range(iterations):
        coupling = logits.softmax(dim=2)  # c_ij; each lower capsule's couplings sum to 1
        v = squash((coupling.unsqueeze(-1) * votes).sum(dim=1))
        if iteration < iterations - 1:  # the last update would be read by nobody
            logits = logits + (votes * v.unsqueeze(1)).sum(dim=-1)
    return v


class PrimaryCaps(nn.Module):
    """§4: "a convolutional capsule layer with 32 channels of convolutional 8D capsules (i.e.
    each primary capsule contains 8 convolutional units with a 9 × 9 kernel and a stride
    of 2)". One 9x9 convolution into 32 x 8 maps; the capsules of a channel share their
    weights across the grid. Gives the 6 x 6 x 32 = 1152 capsules' squashed poses,
    (batch, 1152, 8), the capsules of each grid position together."""

    def __init__(self, in_channels: int = 256, channels: int = 32, dims: int = 8) -> None:
        super().__init__()
        self.channels = channels
        self.dims = dims
        self.conv = nn.Conv2d(in_channels, channels * dims, kernel_size=9, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.capsules(self.conv(x))

    def capsules(self, maps: torch.Tensor) -> torch.Tensor:
        """The convolution's maps (batch, 32 x 8, 6, 6) as squashed capsule poses
        (batch, 1152, 8)."""
        batch, _, height, width = maps.shape
        poses = maps.view(batch, self.channels, self.dims, height, width)
        return squash(poses.permute(0, 3, 4, 1, 2).reshape(batch, -1, self.dims))


class DigitCaps(nn.Module):
    """§4: "one 16D capsule per digit class and each of these capsules receives input from
    all the capsules in the layer below". Each lower capsule i votes for each digit capsule j
    through its own 8 x 16 weight matrix W_ij (eq. 2); routing between PrimaryCaps and
    DigitCaps only, 3 iterations. No biases."""

    def __init__(
        self,
        in_capsules: int = 1152,
        in_dims: int = 8,
        capsules: int = 10,
        dims: int = 16,
        iterations: int = 3,
    ) -> None:
        super().__init__()
        self.capsules = capsules
        self.dims = dims
        self.iterations = iterations
        # W_ij, stored (i, j, out dims, in dims). The paper states no initialisation; a
        # normal of std 0.01 keeps the first votes, and so the first poses, small.
        self.weight = nn.Parameter(0.01 * torch.randn(in_capsules, capsules, dims, in_dims))

    def votes(self, u: torch.Tensor) -> torch.Tensor:
        """û_j|i = W_ij u_i for a batch of lower poses u (batch, i, in dims)."""
        return torch.einsum("ijdk,bik->bijd", self.weight, u)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return dynamic_routing(self.votes(u), self.iterations)


def margin_loss(lengths: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 4, summed over the classes and averaged over the batch:
    L_k = T_k max(0, m+ - |v_k|)² + λ (1 - T_k) max(0, |v_k| - m-)²."""
    present = F.one_hot(target, lengths.shape[1]).to(lengths.dtype)
    loss = present * F.relu(M_PLUS - lengths).pow(2)
    loss = loss + ABSENT_WEIGHT * (1 - present) * F.relu(lengths - M_MINUS).pow(2)
    return loss.sum(dim=1).mean()
