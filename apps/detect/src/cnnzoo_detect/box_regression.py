"""R-CNN's bounding-box regression (Girshick et al. 2014, appendix C): class-specific ridge
regression from pool5 features to the offsets of the ground-truth box."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

# Appendix C: "we assign P to the ground-truth box G with which it has maximum IoU overlap
# ... if and only if the overlap is greater than a threshold (which we set to 0.6)";
# "we set lambda = 1000".
REGRESSION_IOU = 0.6
RIDGE_LAMBDA = 1000.0
# A class's regression samples are capped (uniformly sampled over the pass) to bound memory:
# at 9,216 pool5 features in float16, 5,000 samples take 92 MB a class.
REGRESSION_SAMPLES_PER_CLASS = 5000


@dataclass
class RegressionSamples:
    """One class's samples for box regression: pool5 features of proposals and their
    targets t, a uniform sample of at most `capacity` of those the pass offered (each gets a
    random priority; the lowest are kept)."""

    capacity: int
    features: list[torch.Tensor] = field(default_factory=list)
    targets: list[torch.Tensor] = field(default_factory=list)
    priorities: list[torch.Tensor] = field(default_factory=list)

    def add(self, features: torch.Tensor, targets: torch.Tensor) -> None:
        self.features.append(features.detach().cpu().half())
        self.targets.append(targets.detach().cpu().float())
        self.priorities.append(torch.rand(len(features)))
        priorities = torch.cat(self.priorities)
        if len(priorities) > self.capacity:
            keep = priorities.topk(self.capacity, largest=False).indices
            self.features = [torch.cat(self.features)[keep]]
            self.targets = [torch.cat(self.targets)[keep]]
            self.priorities = [priorities[keep]]

    def __len__(self) -> int:
        return sum(len(p) for p in self.priorities)


def regression_targets(proposals: torch.Tensor, ground_truth: torch.Tensor) -> torch.Tensor:
    """Appendix C's targets: t_x = (G_x - P_x) / P_w, t_y = (G_y - P_y) / P_h,
    t_w = log(G_w / P_w), t_h = log(G_h / P_h), with centres (x, y) and sides (w, h)."""
    p_size = proposals[:, 2:] - proposals[:, :2]
    p_centre = proposals[:, :2] + p_size / 2
    g_size = ground_truth[:, 2:] - ground_truth[:, :2]
    g_centre = ground_truth[:, :2] + g_size / 2
    return torch.cat([(g_centre - p_centre) / p_size, torch.log(g_size / p_size)], dim=1)


def apply_regression(proposals: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Appendix C's transformation of proposals P (..., 4) by targets t (..., 4):
    G_x = P_w t_x + P_x, G_y = P_h t_y + P_y, G_w = P_w exp(t_w), G_h = P_h exp(t_h)."""
    p_size = proposals[..., 2:] - proposals[..., :2]
    p_centre = proposals[..., :2] + p_size / 2
    centre = p_size * t[..., :2] + p_centre
    # exp overflows to inf on wild predictions: the 1000:16 cap torchvision's BoxCoder uses.
    size = p_size * torch.exp(t[..., 2:].clamp(max=math.log(1000 / 16)))
    return torch.cat([centre - size / 2, centre + size / 2], dim=-1)


def ridge_regression(
    features: torch.Tensor, targets: torch.Tensor, lam: float = RIDGE_LAMBDA
) -> torch.Tensor:
    """Regularised least squares w = argmin sum (t - w^T [phi, 1])^2 + lam ||w||^2 for each
    of the 4 targets (appendix C): (4, D + 1), the bias last.

    As rcnn_train_bbox_regressor.m: the features get a constant 1 for the bias, and the
    targets are centred (their means come back as the bias; scaling them as well, as that
    code does, would change nothing, ridge being linear in its targets). Solved in the dual,
    w = X^T (X X^T + lam I)^-1 T, when there are fewer samples than dimensions, else in the
    primal, w = (X^T X + lam I)^-1 X^T T: the smaller of the two systems.
    """
    x = torch.cat([features.double(), features.new_ones(len(features), 1).double()], dim=1)
    mean = targets.double().mean(dim=0)
    centred = targets.double() - mean
    samples, dims = x.shape
    if samples < dims:
        gram = x @ x.T + lam * torch.eye(samples, dtype=x.dtype)
        weights = x.T @ torch.linalg.solve(gram, centred)
    else:
        gram = x.T @ x + lam * torch.eye(dims, dtype=x.dtype)
        weights = torch.linalg.solve(gram, x.T @ centred)
    weights[-1] += mean
    return weights.T.float()
