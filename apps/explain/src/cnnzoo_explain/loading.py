"""The network to look into: a registered model (random weights) or a cnnzoo checkpoint."""

from __future__ import annotations

from cnnzoo import ClassifierNet, ImageClassifier, create_model


def load_checkpoint(path: str, arch: str | None = None, device: str = "cpu") -> ClassifierNet:
    """The trained model of a cnnzoo checkpoint (`cnnzoo fit` writes them), with the class
    names of its data as its `classes` where it has them; `arch`: the model expected."""
    return ImageClassifier.from_checkpoint(path, map_location=device, arch=arch).model


def load_model(
    name: str | None,
    checkpoint: str | None,
    num_classes: int | None = None,
    in_chans: int | None = None,
    device: str = "cpu",
) -> ClassifierNet:
    """The model in evaluation mode: from the checkpoint, or built by name with random
    weights (the dataset's classes and channels when one is named, else the paper's)."""
    if checkpoint is not None:
        model = load_checkpoint(checkpoint, device=device)
    else:
        model = create_model(name or "lenet5", num_classes=num_classes, in_chans=in_chans)
    return model.to(device).eval()


def input_size(model: ClassifierNet) -> int:
    """The side of the images the paper fed the model (its card), 224 without a card."""
    card = model.card
    return card.input_size[-1] if card is not None else 224
