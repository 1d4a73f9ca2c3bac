"""AlexNet's local response normalisation (§3.3), within each GPU's half of the kernels."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LocalResponseNorm(nn.Module):
    """§3.3: b^i = a^i / (k + alpha * sum_j (a^j)^2)^beta, the sum over the n kernel maps
    j = max(0, i - n/2) .. min(N - 1, i + n/2) adjacent to map i at the same position.

    With `groups=2` the maps are split into two halves, each normalised on its own: a GPU
    saw only its own kernels, so the sum stops at the boundary between the halves.

    The paper's alpha multiplies the sum itself. torch's (and Caffe's) LRN divides alpha by
    n, so alpha * n goes to `F.local_response_norm` to get the paper's formula.
    """

    def __init__(
        self,
        size: int = 5,
        alpha: float = 1e-4,
        beta: float = 0.75,
        k: float = 2.0,
        groups: int = 1,
    ) -> None:
        super().__init__()
        self.size = size
        self.alpha = alpha
        self.beta = beta
        self.k = k
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        halves = x.reshape(batch * self.groups, channels // self.groups, height, width)
        normed = F.local_response_norm(
            halves, self.size, alpha=self.alpha * self.size, beta=self.beta, k=self.k
        )
        return normed.reshape(batch, channels, height, width)

    def extra_repr(self) -> str:
        return (
            f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}, "
            f"groups={self.groups}"
        )
