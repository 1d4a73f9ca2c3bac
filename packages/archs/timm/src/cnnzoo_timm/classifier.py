"""A timm model speaking cnnzoo's protocol (ARCHITECTURE.md §2) through timm's own methods.

The timm model sits whole under `timm`, so its state dict is timm's with that one prefix
added, and timm's weights load into it by renaming alone (`from_timm_state_dict`).
"""

from __future__ import annotations

import torch
from cnnzoo import ClassifierNet, FeatureInfo
from torch import nn

PREFIX = "timm."  # where the timm model sits inside the wrapper


class TimmClassifier(ClassifierNet):
    """A timm classifier as a cnnzoo `ClassifierNet`.

    `feature_info` is timm's, its module names made valid inside the wrapper, so that a
    detection neck cuts the network where timm's own `features_only` mode would.
    """

    def __init__(self, model: nn.Module, in_chans: int) -> None:
        super().__init__()
        self.timm = model
        self.in_chans = in_chans
        self.feature_info = [
            FeatureInfo(PREFIX + info["module"], info["num_chs"], info["reduction"])
            for info in getattr(model, "feature_info", None) or []
        ]

    @property
    def num_classes(self) -> int:  # timm's, so that it follows reset_classifier
        return self.timm.num_classes

    @property
    def num_features(self) -> int:
        return self.timm.num_features

    @property
    def head_hidden_size(self) -> int:
        return getattr(self.timm, "head_hidden_size", self.timm.num_features)

    def get_classifier(self) -> nn.Module:
        return self.timm.get_classifier()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.timm.forward_features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.timm.forward_head(x, pre_logits=pre_logits)

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        if global_pool is None:
            self.timm.reset_classifier(num_classes)
        else:
            self.timm.reset_classifier(num_classes, global_pool)


def from_timm_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm's state dict renamed into the wrapper's: the same keys under `timm.`."""
    return {PREFIX + key: value for key, value in state.items()}
