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
from torch.fx._symbolic_trace import is_fx_symbolic_tracing

from cnnzoo.card import ModelCard
from cnnzoo.errors import InputShapeError


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

    def _set_classifier(self, num_classes: int) -> None:
        classifier = self.new_classifier(num_classes) if num_classes else nn.Identity()
        device = next(self.parameters()).device
        self.set_submodule(self.classifier_name, classifier.to(device))
        self.num_classes = num_classes

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


def check_input(x: torch.Tensor, name: str, in_chans: int, card: ModelCard | None) -> None:
    """Fail early, saying what to do, on input a network `name` of `in_chans` channels and
    this card cannot take.

    Skipped while torch.fx traces the network or TorchScript compiles it: their inputs are
    symbols, not tensors with shapes to check, and a check would be control flow in the
    traced graph (torch.export and torch.jit.trace see real shapes and check)."""
    if is_fx_symbolic_tracing() or torch.jit.is_scripting():
        return
    if x.ndim != 4:
        raise InputShapeError(
            f"{name} takes a batch of images shaped (N, C, H, W); got a tensor of shape "
            f"{tuple(x.shape)}. Add a batch dimension with x.unsqueeze(0) for one image."
        )
    if x.shape[1] != in_chans:
        raise InputShapeError(
            f"{name} was built for {in_chans}-channel images but got {x.shape[1]} "
            f"channels. Build it with in_chans={x.shape[1]}, or convert the images "
            f"(grayscale <-> RGB) to {in_chans}."
        )
    if card is None:
        return
    height, width = x.shape[-2:]
    if card.fixed_input_size and (height, width) != tuple(card.input_size[1:]):
        raise InputShapeError(
            f"{name} only takes {card.input_size[1]}x{card.input_size[2]} images (its "
            f"classifier is sized for them, as in the paper); got {height}x{width}. "
            f"Resize or pad the images to {card.input_size[1]}x{card.input_size[2]}."
        )
    if card.min_input_size is not None and min(height, width) < card.min_input_size:
        raise InputShapeError(
            f"{name} needs images of at least {card.min_input_size}x{card.min_input_size}; "
            f"got {height}x{width}. Resize them up (the paper used "
            f"{card.input_size[1]}x{card.input_size[2]})."
        )
