"""A spatial transformer in front of any classifier (§4: "the spatial transformer is always at
the beginning of the network"), speaking the cnnzoo model protocol."""

from __future__ import annotations

from dataclasses import replace

import torch
from cnnzoo import ClassifierNet, FeatureInfo, ModelCard, create_model
from torch import nn

from cnnzoo_stn.transformer import AffineLocalisation, SpatialTransformer


class SpatialTransformerNet(ClassifierNet):
    """U -> spatial transformer -> classifier. The classifier's stages, head and loss are its
    own; the transformer's output V is the first stage of `feature_info` (stride 1 where it
    samples V at U's size), so `features_only=True` gives the transformed images too."""

    def __init__(self, transformer: SpatialTransformer, classifier: ClassifierNet) -> None:
        super().__init__()
        self.transformer = transformer
        self.classifier = classifier
        self.num_classes = classifier.num_classes
        self.in_chans = classifier.in_chans
        self.num_features = classifier.num_features
        self.head_hidden_size = classifier.head_hidden_size
        self.classifier_name = f"classifier.{classifier.classifier_name}"
        self.feature_info = [FeatureInfo("transformer", classifier.in_chans, 1)] + [
            FeatureInfo(f"classifier.{info.module}", info.channels, info.stride)
            for info in classifier.feature_info
        ]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier.forward_features(self.transformer(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.classifier.forward_head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor):
        self.check_input(x)
        # The classifier's own forward: its auxiliary logits too, where it has them.
        return self.classifier(self.transformer(x))

    def new_classifier(self, num_classes: int) -> nn.Module:
        return self.classifier.new_classifier(num_classes)

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.classifier.reset_classifier(num_classes, global_pool)
        self.num_classes = num_classes
        self.__dict__.pop("_intermediate_cuts", None)  # the cut classifier has changed

    def criterion(
        self, logits: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0
    ) -> torch.Tensor:
        return self.classifier.criterion(logits, target, label_smoothing)


def spatial_transformer(
    classifier: str | ClassifierNet,
    num_classes: int | None = None,
    in_chans: int | None = None,
    output_size: tuple[int, int] | None = None,
) -> SpatialTransformerNet:
    """Any classifier with an affine spatial transformer in front: a registered model's name
    (built by `cnnzoo.create_model` with `num_classes` and `in_chans`) or a model.

    The localisation net is the ST-CNN's of Appendix A, which takes any input of 28x28 and
    up. The result carries the classifier's card, less its published figures (they are the
    classifier's alone), and the name `st/<classifier>`, as the registry's `st/` namespace
    builds it (`cnnzoo.create_model("st/lenet5_relu")`).

        model = spatial_transformer("lenet5_relu")   # V at 32x32, then LeNet-5
    """
    if isinstance(classifier, str):
        classifier = create_model(classifier, num_classes=num_classes, in_chans=in_chans)
    elif num_classes is not None or in_chans is not None:
        raise ValueError(
            "num_classes and in_chans build a classifier by name; a model given is taken as it "
            "is (call its reset_classifier for other classes)."
        )
    transformer = SpatialTransformer(AffineLocalisation(classifier.in_chans), output_size)
    model = SpatialTransformerNet(transformer, classifier)
    model.name = f"st/{classifier.name or type(classifier).__name__}"
    if classifier.card is not None:
        model.card = transformed_card(classifier.name, classifier.card)
    return model


def transformed_card(name: str, card: ModelCard) -> ModelCard:
    """The card of `name` with a spatial transformer in front: the classifier's paper and
    input size, less its published figures, which are the classifier's alone."""
    return replace(
        card,
        published_params=None,
        params_source="",
        published_macs=None,
        macs_source="",
        published_errors=(),
        recipe=None,
        weights=(),
        notes=f"{name} with an affine spatial transformer in front (Jaderberg et al. 2015); "
        "the figures of its card are the classifier's alone.",
    )
