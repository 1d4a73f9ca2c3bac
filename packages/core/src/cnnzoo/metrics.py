"""Top-k error, the figure the papers report, through torchmetrics (so DDP syncs it)."""

from __future__ import annotations

import torch
from torchmetrics.classification import MulticlassAccuracy


class TopKError(MulticlassAccuracy):
    """1 - top-k accuracy over all samples (micro average), as a fraction in [0, 1]."""

    def __init__(self, num_classes: int, top_k: int = 1, **kwargs) -> None:
        super().__init__(num_classes=num_classes, top_k=top_k, average="micro", **kwargs)

    def compute(self) -> torch.Tensor:
        return 1.0 - super().compute()
