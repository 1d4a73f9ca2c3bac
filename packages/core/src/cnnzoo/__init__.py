"""cnnzoo: faithful, runnable reproductions of the landmark CNN papers."""

from cnnzoo.card import ModelCard, PretrainedWeights, PublishedError
from cnnzoo.errors import (
    CnnzooError,
    DatasetError,
    FeatureMapsError,
    InputShapeError,
    ModelNotFoundError,
    PluginError,
)
from cnnzoo.head import PooledClassifierNet
from cnnzoo.protocol import AuxLogits, ClassifierNet, FeatureInfo
from cnnzoo.registry import create_model, list_models, model_card, refresh, variant

__all__ = [
    "AuxLogits",
    "ClassifierNet",
    "CnnzooError",
    "DatasetError",
    "FeatureInfo",
    "FeatureMaps",
    "FeatureMapsError",
    "ImageClassifier",
    "InputShapeError",
    "ModelCard",
    "ModelNotFoundError",
    "PluginError",
    "PooledClassifierNet",
    "PretrainedWeights",
    "PublishedError",
    "create_model",
    "list_models",
    "model_card",
    "refresh",
    "variant",
]


def __getattr__(name: str):
    # The Lightning module is imported on first use: plugins and `list_models` never pay
    # for importing Lightning.
    if name == "ImageClassifier":
        from cnnzoo.module import ImageClassifier

        return ImageClassifier
    if name == "FeatureMaps":  # torchvision's fx feature extraction, imported when used
        from cnnzoo.features import FeatureMaps

        return FeatureMaps
    raise AttributeError(f"module 'cnnzoo' has no attribute {name!r}")
