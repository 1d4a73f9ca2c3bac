"""The network to look into: a registered model (random weights) or a cnnzoo checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch
from cnnzoo import ClassifierNet, create_model

from cnnzoo_explain.errors import CheckpointError


def load_checkpoint(path: str, device: str = "cpu") -> ClassifierNet:
    """The trained model of a cnnzoo checkpoint (`cnnzoo fit` writes them); the arch is read
    from the checkpoint, and the class names of its data, where it has them, are the model's
    `classes`."""
    file = Path(path)
    if not file.is_file():
        raise CheckpointError(
            f"checkpoint {path!r} does not exist. `cnnzoo fit` writes them to "
            f"runs/<arch>/checkpoints/ (last.ckpt, and the best by validation error)."
        )
    try:
        saved = torch.load(file, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise CheckpointError(
            f"{path} is not a checkpoint torch can read ({type(exc).__name__}: {exc})."
        ) from exc
    arch = saved.get("hyper_parameters", {}).get("arch") if isinstance(saved, dict) else None
    if arch is None or "state_dict" not in saved:
        raise CheckpointError(
            f"{path} is not a cnnzoo checkpoint: it has no hyper_parameters.arch and "
            f"state_dict. Give one that `cnnzoo fit` wrote, or name a model with --model."
        )
    from cnnzoo import ImageClassifier

    module = ImageClassifier.from_checkpoint(str(file), map_location=device)
    module.model.classes = module.classes
    return module.model


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
        model = load_checkpoint(checkpoint, device)
    else:
        model = create_model(name or "lenet5", num_classes=num_classes, in_chans=in_chans)
    return model.to(device).eval()


def input_size(model: ClassifierNet) -> int:
    """The side of the images the paper fed the model (its card), 224 without a card."""
    card = model.card
    return card.input_size[-1] if card is not None else 224
