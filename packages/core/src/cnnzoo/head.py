"""The head that most networks since Network in Network end with: global average pooling of
the last feature map, dropout where the paper has it, and one linear classifier (ResNet,
DenseNet, the Inception line, MobileNet, ShuffleNet, MnasNet, SENet).

Written once, with timm's conventions, so that every such net can be used as timm's are:

    model.reset_classifier(0)        # no classifier: forward gives the pooled features
    model.reset_classifier(0, "")    # no pooling either: forward gives the feature map
    model.reset_classifier(100, "max")  # a new classifier after global max pooling
    model.get_classifier()           # the classifier module

`num_features` (the channels of the last map) and `head_hidden_size` (what `pre_logits`
gives: the same here) are set. State-dict names stay the paper's: the classifier keeps the
name its family's weights use (`fc`, or DenseNet's `classifier`); the pooling and dropout
hold no weights. (timm's own pooling layer is not used: importing timm would double the time
`cnnzoo.list_models()` takes, which reads the families' model files.)
"""

from __future__ import annotations

import torch
from torch import nn

from cnnzoo.protocol import ClassifierNet

POOL_TYPES = ("avg", "max", "")


class GlobalPool(nn.Module):
    """Pooling over all positions into one vector per image ("avg", "max"), or none ("")."""

    def __init__(self, pool_type: str = "avg") -> None:
        super().__init__()
        if pool_type not in POOL_TYPES:
            raise ValueError(f"global_pool must be one of {POOL_TYPES}, not {pool_type!r}")
        self.pool = {"avg": nn.AdaptiveAvgPool2d(1), "max": nn.AdaptiveMaxPool2d(1)}.get(
            pool_type, nn.Identity()
        )
        self.flatten = nn.Flatten(1) if pool_type else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.flatten(self.pool(x))


class PooledClassifierNet(ClassifierNet):
    """A ClassifierNet whose head is global pooling, dropout and one linear classifier.

    A subclass calls `build_head` in its constructor and, where its paper (or the release
    that trained it) initialises the classifier in its own way, overrides `init_classifier`,
    which a new classifier from `reset_classifier` gets too.
    """

    def build_head(
        self,
        num_features: int,
        num_classes: int,
        drop_rate: float = 0.0,
        bias: bool = True,
        global_pool: str = "avg",
    ) -> None:
        """The pooling, the dropout (`drop_rate` before the classifier) and the classifier
        into `num_classes` (0: none, forward gives the pooled features)."""
        self.num_features = self.head_hidden_size = num_features
        self._classifier_bias = bias
        self.global_pool = GlobalPool(global_pool)
        self.head_drop = nn.Dropout(drop_rate) if drop_rate else nn.Identity()
        self.num_classes = num_classes
        setattr(self, self.classifier_name, self.classifier_or_none(num_classes))

    def init_classifier(self, fc: nn.Linear) -> None:
        """The paper's initialisation of the classifier; torch's own where it states none."""

    def new_classifier(self, num_classes: int) -> nn.Module:
        fc = nn.Linear(self.num_features, num_classes, bias=self._classifier_bias)
        self.init_classifier(fc)
        return fc

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(self.global_pool(x))
        return x if pre_logits else self.get_classifier()(x)

    def set_global_pool(self, global_pool: str) -> None:
        """Pool the last map by "avg" or "max", or not at all (""), keeping the classifier."""
        self.global_pool = GlobalPool(global_pool)

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A new classifier into `num_classes` (0: none); `global_pool` "" leaves the map
        unpooled (forward gives it when there is no classifier), "avg" or "max" pool it."""
        if global_pool is not None:
            self.set_global_pool(global_pool)
        self._set_classifier(num_classes)
