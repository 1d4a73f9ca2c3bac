"""The Squeeze-and-Excitation block: Hu, Shen, Albanie, Sun and Wu, "Squeeze-and-Excitation
Networks", CVPR 2018 / TPAMI 2019 (arXiv:1709.01507), §3 and Fig. 1."""

from __future__ import annotations

import torch
from torch import nn


class SqueezeExcitation(nn.Module):
    """An SE block on C channels with reduction ratio r (§3, Fig. 1):

    - squeeze (§3.1, Eq. 2): global average pooling gives one statistic z_c per channel;
    - excitation (§3.2, Eq. 3): s = σ(W2 δ(W1 z)), a bottleneck of two fully-connected
      layers, W1 reducing C to C/r, a ReLU δ, W2 restoring C, then a sigmoid σ;
    - scale (Eq. 4): each channel u_c is multiplied by its s_c.

    The fully-connected layers have biases, as in the authors' released Caffe models (Eq. 3
    omits them "to simplify the notation"). r = 16 is the paper's default (ablation of r: Table 5).
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        if reduction < 1 or channels // reduction < 1:
            raise ValueError(
                f"reduction ratio r must leave at least one unit: C = {channels}, r = {reduction}"
            )
        self.reduction = reduction
        self.fc1 = nn.Linear(channels, channels // reduction)  # W1
        self.relu = nn.ReLU(inplace=True)  # δ
        self.fc2 = nn.Linear(channels // reduction, channels)  # W2
        self.sigmoid = nn.Sigmoid()  # σ

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        z = u.mean(dim=(2, 3))  # F_sq
        s = self.sigmoid(self.fc2(self.relu(self.fc1(z))))  # F_ex
        return u * s[:, :, None, None]  # F_scale

    def extra_repr(self) -> str:
        return f"reduction={self.reduction}"
