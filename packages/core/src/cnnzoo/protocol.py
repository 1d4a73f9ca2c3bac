"""The one protocol every cnnzoo model speaks (ARCHITECTURE.md §2).

`forward(x)` gives logits; a model with auxiliary classifiers (GoogLeNet, Inception-v3)
gives `AuxLogits` while training. `forward_features` gives the last feature map,
`forward_head` turns it into logits, `reset_classifier` swaps the classifier, and
`feature_info` names each stage's module with its channels and stride, which is all a
detection neck or a visualisation needs to know of a network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from cnnzoo.card import ModelCard
from cnnzoo.errors import InputShapeError
from cnnzoo.input_check import check_input

_CUTS = "_intermediate_cuts"  # forward_intermediates' cuts of the network, made once


@dataclass(frozen=True)
class FeatureInfo:
    """One stage's output: the module that produces it, its channels and its stride."""

    module: str  # dotted name inside the model, e.g. "features.c3"
    channels: int
    stride: int  # total downsampling from the input


class AuxLogits(NamedTuple):
    """Training-time output of models with auxiliary classifiers."""

    logits: torch.Tensor
    aux_logits: tuple[torch.Tensor, ...]


class ClassifierNet(nn.Module):
    """Base class of every cnnzoo model.

    Subclasses set `num_classes`, `in_chans`, `feature_info`, `num_features` and
    `head_hidden_size`, name their classifier (`classifier_name`), and implement
    `forward_features`, `forward_head` and `new_classifier`. The registry attaches the
    variant's `card` and `name`.
    """

    num_classes: int
    in_chans: int
    feature_info: list[FeatureInfo]
    num_features: int  # the channels of the last feature map (forward_features)
    head_hidden_size: int  # the features the classifier takes (forward_head's pre_logits)
    classifier_name: ClassVar[str] = "fc"  # the classifier's module, as the weights name it
    card: ModelCard | None = None
    name: str = ""
    # The class names of the data it learned, where known (a checkpoint that `cnnzoo fit`
    # wrote keeps them): predict, explain and export name outputs by them.
    classes: list[str] | None = None

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        raise NotImplementedError

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | tuple[int, ...] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """timm's: the maps of the `feature_info` stages that `indices` names (None: all;
        n: the last n) and the last feature map (`forward_features`), or the maps alone with
        `intermediates_only`. One pass, through the same cut of the traced network as
        `create_model(..., features_only=True)`; `stop_early` computes nothing after the
        last stage asked for. `norm` (a final norm layer applied to the maps) and other
        output formats than NCHW have nothing to act on in these networks."""
        from cnnzoo.features import intermediates  # torchvision's fx tooling, when used

        if norm or output_fmt != "NCHW":
            raise ValueError(
                f"{self.name or type(self).__name__} gives its intermediate maps as they are, "
                f"NCHW: norm=True and output_fmt={output_fmt!r} are not supported."
            )
        # The cuts kept in the instance's dict, not as submodules: they hold no state.
        cuts = self.__dict__.setdefault(_CUTS, {})
        return intermediates(self, x, indices, stop_early, intermediates_only, cuts)

    def new_classifier(self, num_classes: int) -> nn.Module:
        """A classifier into `num_classes`, initialised as the paper initialises it."""
        raise NotImplementedError

    def get_classifier(self) -> nn.Module:
        return self.get_submodule(self.classifier_name)

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A new classifier into `num_classes` (timm's convention); 0 takes it out, so that
        forward gives the `head_hidden_size` features it would have taken. `global_pool` is
        for the nets whose head pools globally (`cnnzoo.PooledClassifierNet`)."""
        if global_pool is not None:
            raise no_global_pool(self.name or type(self).__name__)
        self._set_classifier(num_classes)

    def classifier_or_none(self, num_classes: int) -> nn.Module:
        """`new_classifier(num_classes)`, or none (an identity) for 0, timm's no classifier."""
        return self.new_classifier(num_classes) if num_classes else nn.Identity()

    def _set_classifier(self, num_classes: int) -> None:
        device = next(self.parameters()).device
        self.set_submodule(self.classifier_name, self.classifier_or_none(num_classes).to(device))
        self.num_classes = num_classes
        self.__dict__.pop(_CUTS, None)  # a classifier inside the features changes the cuts

    def criterion(
        self, logits: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0
    ) -> torch.Tensor:
        """The loss the paper trains with: cross-entropy, unless a paper defines its own
        (LeNet-5's MAP criterion, eq. 9). The trainer calls it on every classifier's logits."""
        return F.cross_entropy(logits, target, label_smoothing=label_smoothing)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.forward_head(self.forward_features(x))

    def dense(self) -> nn.Module:
        """This net for dense evaluation (VGG §3.2): a module that takes a whole image of any
        size, from the card's input size up, and gives its class scores averaged over
        positions. A net whose head pools globally (ResNet, NIN, GoogLeNet, ...) is that
        module already: its forward on a larger image is dense evaluation. A net with fully
        connected layers over a fixed-size map returns its fully convolutional form (VGG's
        fc layers as convolutions), or has none and says so."""
        if self.head_pools_globally():
            return self
        name = self.name or type(self).__name__
        raise InputShapeError(
            f"{name} has no dense form: its head is neither a global pooling (whose forward "
            f"on a whole image would be dense evaluation) nor convertible by a `dense()` of "
            f"its own. Evaluate it on crops (test_crops: center, ten or googlenet144)."
        )

    def head_pools_globally(self) -> bool:
        """Whether `forward_head` pools its map over all positions first: then the map tiled
        2x2 gives the same logits (an adaptive pool to a fixed grid, as VGG's and AlexNet's
        before their fc layers, does not; a flatten of a fixed-size map refuses it)."""
        reference = next(self.parameters())
        maps = torch.rand(
            1, self.feature_info[-1].channels, 3, 3, generator=torch.Generator().manual_seed(0)
        )
        maps = maps.to(reference)
        training = self.training
        self.eval()
        try:
            with torch.no_grad():
                logits, tiled = self.forward_head(maps), self.forward_head(maps.repeat(1, 1, 2, 2))
        except (RuntimeError, ValueError):  # a head that only takes its own map size
            return False
        finally:
            self.train(training)
        return torch.allclose(logits, tiled, rtol=1e-4, atol=1e-5)

    def check_input(self, x: torch.Tensor) -> None:
        """Fail early, saying what to do, on input the network cannot take."""
        check_input(x, self.name or type(self).__name__, self.in_chans, self.card)


def no_global_pool(name: str) -> ValueError:
    """The error for `global_pool` given to a net whose head has no global pooling to set."""
    return ValueError(
        f"{name}'s head does not end in a global pooling (its classifier takes a map of a "
        "fixed size, or comes before the pooling): global_pool applies to the nets whose "
        "head does (ResNet, DenseNet, the Inception line, MobileNet, ...)."
    )
