"""The frame every Inception network shares: a stack of named stages (`features`), global
average pooling, dropout and one linear classifier, with auxiliary classifiers hanging off
some stages while training (GoogLeNet §5, Rethinking §7)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping

import torch
from cnnzoo import AuxLogits, FeatureInfo, PooledClassifierNet
from torch import nn

LinearInit = Callable[[nn.Linear], None]


def default_linear_init(layer: nn.Linear) -> None:
    """torch's own initialisation, for papers that state none."""


class AuxClassifier(nn.Module):
    """Base of the auxiliary heads: `fc` is their last linear layer, on `head_hidden_size`
    features."""

    fc: nn.Linear
    head_hidden_size: int
    linear_init: LinearInit = staticmethod(default_linear_init)

    def reset_classifier(self, num_classes: int) -> None:
        """A new last layer into `num_classes`; 0 leaves the head's features unclassified,
        as the main classifier's `reset_classifier(0)` does."""
        fc = nn.Linear(self.head_hidden_size, num_classes) if num_classes else nn.Identity()
        if num_classes:
            self.linear_init(fc)
        self.fc = fc.to(next(self.parameters()).device)


class InceptionNet(PooledClassifierNet):
    """`features` (the paper's stages in order) -> global average pool -> dropout -> `fc`.

    `aux` maps a stage's name to the auxiliary classifier fed by that stage's output; they
    answer only in training mode, as `AuxLogits`.
    """

    def __init__(
        self,
        stages: Iterable[tuple[str, nn.Module]],
        num_features: int,
        num_classes: int,
        in_chans: int,
        dropout: float,
        feature_info: list[FeatureInfo],
        aux: Mapping[str, AuxClassifier] | None = None,
        linear_init: LinearInit = default_linear_init,
    ) -> None:
        super().__init__()
        self.in_chans = in_chans
        self.feature_info = feature_info
        self.features = nn.Sequential(OrderedDict(stages))
        self.aux = nn.ModuleDict(aux or {})
        self.linear_init = linear_init
        self.build_head(num_features, num_classes, drop_rate=dropout)

    def init_classifier(self, fc: nn.Linear) -> None:
        self.linear_init(fc)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor | AuxLogits:
        self.check_input(x)
        if not (self.training and len(self.aux)):
            return self.forward_head(self.forward_features(x))
        aux_logits = []
        for name, stage in self.features.named_children():
            x = stage(x)
            if name in self.aux:
                aux_logits.append(self.aux[name](x))
        return AuxLogits(self.forward_head(x), tuple(aux_logits))

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        super().reset_classifier(num_classes, global_pool)
        for head in self.aux.values():
            head.reset_classifier(num_classes)


def rename_in_order(
    state_dict: Mapping[str, torch.Tensor], our_keys: list[str], reference: str
) -> dict[str, torch.Tensor]:
    """A reference implementation's state dict under our names, matched in order.

    Our modules are built from the paper's figures branch by branch in the same order as the
    reference's, so the i-th tensor of one is the i-th of the other; the kind of each tensor
    (weight, bias, running mean...) must agree, and `load_state_dict` then checks shapes.
    """
    theirs = list(state_dict)
    if len(theirs) != len(our_keys):
        raise KeyError(
            f"this state dict has {len(theirs)} tensors, {reference} has {len(our_keys)}; "
            f"is it the state dict of another model?"
        )
    renamed = {}
    for their_key, our_key in zip(theirs, our_keys, strict=True):
        if their_key.rpartition(".")[2] != our_key.rpartition(".")[2]:
            raise KeyError(
                f"{their_key!r} does not line up with {our_key!r}: is this the state dict "
                f"of {reference}?"
            )
        renamed[our_key] = state_dict[their_key]
    return renamed


def our_state_keys(build: Callable[..., nn.Module], num_classes: int) -> list[str]:
    """The state-dict keys of a variant, built on the meta device (no memory, no time)."""
    with torch.device("meta"):
        return list(build(num_classes=num_classes).state_dict())
