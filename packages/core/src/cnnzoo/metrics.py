"""Top-k error, the figure the papers report, as a torchmetrics metric (so DDP syncs it)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import Metric


class TopKError(Metric):
    """1 - top-k accuracy over all samples (micro average), as fractions in [0, 1], for
    several k at once: `compute()` gives one error per k, in the order of `ks` (a 0-d
    tensor for a single k: torchmetrics squeezes one-element results).

    One `topk` of the logits serves every k, and the counts grow in place. torchmetrics'
    MulticlassAccuracy (one metric per k) checks, formats and one-hot encodes its inputs at
    each update: twice that was half of the trainer's own work in a LeNet-5 step on a CPU
    (benchmarks/lenet_mnist_epoch.py).
    """

    full_state_update = False
    higher_is_better = False
    is_differentiable = False

    def __init__(self, ks: Sequence[int] = (1, 5), **kwargs) -> None:
        super().__init__(**kwargs)
        if not ks or any(k < 1 for k in ks):
            raise ValueError(f"ks must be positive ranks, e.g. (1, 5); got {tuple(ks)}")
        self.ks = tuple(ks)
        self._columns = [k - 1 for k in self.ks]
        self.add_state("wrong", torch.zeros(len(self.ks), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(
        self,
        logits: torch.Tensor | None = None,
        target: torch.Tensor | None = None,
        *,
        found: torch.Tensor | None = None,
        total: int = 0,
    ) -> None:
        """Count a batch's (logits, target), or add counts already made: `found` (per k, how
        many targets were among the top k, as `found` gives them) over `total` samples; a
        training step counts on the device and adds many steps' counts in one update."""
        if logits is not None:
            found, total = self.found(logits, target), len(target)
        self.wrong.add_(total - found)
        self.total.add_(total)

    def found(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per k, how many targets are among the k highest logits."""
        ranked = logits.topk(max(self.ks), dim=-1).indices  # (N, max k), best first
        # The true class is at most once in a row: its running count is 1 from its rank on.
        return (ranked == target[:, None]).cumsum(dim=-1)[:, self._columns].sum(dim=0)

    def compute(self) -> torch.Tensor:
        return self.wrong.double().div(self.total.clamp_min(1)).float()
