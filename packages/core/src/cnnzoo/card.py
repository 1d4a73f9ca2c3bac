"""Model cards: what a paper says about a model, kept in code next to the model.

A card holds the paper's own figures (parameters, error rates, input size) so that
every measured figure in cnnzoo can be written next to the published one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# ImageNet's RGB channel means and deviations over [0, 1] pixels: the normalisation of the
# ImageNet data modules and of torchvision's and timm's published weights.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PublishedError:
    """One published error rate: on which data, with which evaluation, and where it is printed."""

    dataset: str
    top1: float | None = None  # percent
    top5: float | None = None  # percent
    evaluation: str = "single crop"
    source: str = ""  # table or section of the paper
    # The recipe that reproduces this row when it is not the dataset's own (LeNet-5's 0.8%
    # with distortions: lenet5_mnist_distorted); `cnnzoo reproduce` compares its run to it.
    recipe: str = ""


@dataclass(frozen=True)
class PretrainedWeights:
    """Weights published for an architecture equal to this variant: another library's, or
    our own, trained with the variant's recipe and shipped inside its plugin.

    `convert` names the function ("module:function") that renames that library's state dict
    into ours: the same mapping the equivalence tests check, logit for logit. Our own weights
    need none; `file` says where the plugin ships them.
    """

    source: str  # "torchvision" (a weights enum), "timm" (a pretrained tag) or "cnnzoo"
    name: str  # "ResNet50_Weights.IMAGENET1K_V1", "inception_v4.tf_in1k", "resnet20.cifar10"
    convert: str = ""  # "cnnzoo_resnet.resnet:from_torchvision_state_dict"
    # The normalisation the weights were trained with: fine-tune with the same.
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    # Our own weights (source "cnnzoo"): a safetensors file inside a plugin package,
    # "package:path/in/package", and the reproduction they come from (docs/results.md).
    file: str = ""
    trained_by: str = ""


@dataclass(frozen=True)
class ModelCard:
    """The facts of one model variant, as its paper reports them."""

    paper: str
    authors: str
    year: int
    url: str
    input_size: tuple[int, int, int]  # (channels, height, width) the paper trains at
    num_classes: int
    published_params: int | None = None  # as printed: 138_000_000 for "138M"
    params_source: str = ""
    # Multiply-adds of one forward pass at `input_size`, as printed (many papers say "FLOPs"
    # for multiply-adds: ResNet's "3.8 x 10^9 FLOPs" are multiply-adds).
    published_macs: int | None = None
    macs_source: str = ""
    # How far our count may stand from the published one beyond the printed figure's own
    # rounding, relative; a card that needs any says why in `notes`.
    params_tolerance: float = 0.0
    macs_tolerance: float = 0.0
    published_errors: tuple[PublishedError, ...] = ()
    recipe: str | None = None  # name of the default recipe (a YAML file of the arch package)
    # Weight of the auxiliary classifiers' losses, where the paper has them (GoogLeNet: 0.3).
    aux_loss_weight: float = 0.0
    fixed_input_size: bool = False  # True where the paper's head only fits its own input size
    min_input_size: int | None = None  # smallest height/width the network accepts
    # Published weights that load into this variant, the default first (`pretrained=True`).
    weights: tuple[PretrainedWeights, ...] = ()
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def best_error(self) -> PublishedError | None:
        return self.published_errors[0] if self.published_errors else None
