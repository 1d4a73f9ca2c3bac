"""VGG: Simonyan and Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", ICLR 2015 (arXiv:1409.1556), §2 and Table 1.

Every configuration is a stack of 3x3 convolutions (stride 1, padding 1) in five stages, each
stage closed by 2x2 max pooling with stride 2, then FC-4096, FC-4096, FC-1000 and a soft-max
(§2.1). The configurations differ only in their stages, so they are one table of data,
`TABLE_1`, written as the paper writes it: "conv3-64" is a 3x3 convolution with 64 channels,
"conv1-256" a 1x1 one (configuration C), "LRN" local response normalisation (A-LRN).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

import torch
from cnnzoo import (
    ClassifierNet,
    FeatureInfo,
    ModelCard,
    PretrainedWeights,
    PublishedError,
    variant,
)
from torch import nn

from cnnzoo_vgg.dense import to_fully_convolutional

# Table 1, one tuple of layers per stage; a max pool closes every stage.
TABLE_1: dict[str, tuple[tuple[str, ...], ...]] = {
    "A": (
        ("conv3-64",),
        ("conv3-128",),
        ("conv3-256", "conv3-256"),
        ("conv3-512", "conv3-512"),
        ("conv3-512", "conv3-512"),
    ),
    "A-LRN": (
        ("conv3-64", "LRN"),
        ("conv3-128",),
        ("conv3-256", "conv3-256"),
        ("conv3-512", "conv3-512"),
        ("conv3-512", "conv3-512"),
    ),
    "B": (
        ("conv3-64", "conv3-64"),
        ("conv3-128", "conv3-128"),
        ("conv3-256", "conv3-256"),
        ("conv3-512", "conv3-512"),
        ("conv3-512", "conv3-512"),
    ),
    "C": (
        ("conv3-64", "conv3-64"),
        ("conv3-128", "conv3-128"),
        ("conv3-256", "conv3-256", "conv1-256"),
        ("conv3-512", "conv3-512", "conv1-512"),
        ("conv3-512", "conv3-512", "conv1-512"),
    ),
    "D": (
        ("conv3-64", "conv3-64"),
        ("conv3-128", "conv3-128"),
        ("conv3-256", "conv3-256", "conv3-256"),
        ("conv3-512", "conv3-512", "conv3-512"),
        ("conv3-512", "conv3-512", "conv3-512"),
    ),
    "E": (
        ("conv3-64", "conv3-64"),
        ("conv3-128", "conv3-128"),
        ("conv3-256", "conv3-256", "conv3-256", "conv3-256"),
        ("conv3-512", "conv3-512", "conv3-512", "conv3-512"),
        ("conv3-512", "conv3-512", "conv3-512", "conv3-512"),
    ),
}

# Five 2x2 poolings: 32x32 leaves a 1x1 map after pool5, and the adaptive pool before fc6
# spreads it to 7x7.
MIN_INPUT_SIZE = 32

# §3.1: "we sampled the weights from a normal distribution with the zero mean and 10^-2
# variance". We read 10^-2 as the standard deviation, as Caffe's gaussian filler (the
# paper's toolbox) is given one and as AlexNet used it; a standard deviation of 0.1 would
# make net A's initial logits about 10^5 times its input.
INIT_STD = 0.01


def parse_layer(entry: str) -> tuple[int, int]:
    """'conv3-64' -> (3, 64): Table 1's "conv<receptive field size>-<number of channels>"."""
    kind, channels = entry.split("-")
    return int(kind.removeprefix("conv")), int(channels)


def response_norm() -> nn.LocalResponseNorm:
    """A-LRN's normalisation with AlexNet's parameters (§2.1: "where applicable, the
    parameters for the LRN layer are those of (Krizhevsky et al., 2012)"): n = 5, k = 2,
    alpha = 1e-4, beta = 0.75. torch divides alpha by n, so alpha * n goes in."""
    return nn.LocalResponseNorm(size=5, alpha=5 * 1e-4, beta=0.75, k=2.0)


def conv_layer(
    in_chans: int, channels: int, kernel_size: int, batch_norm: bool, lrn: bool
) -> nn.Sequential:
    """One convolutional layer of Table 1 with its ReLU (§2.1: "all hidden layers are
    equipped with the rectification non-linearity"); padding keeps the map's size."""
    layer: OrderedDict[str, nn.Module] = OrderedDict(
        conv=nn.Conv2d(in_chans, channels, kernel_size, padding=kernel_size // 2)
    )
    if batch_norm:
        layer["bn"] = nn.BatchNorm2d(channels)
    layer["relu"] = nn.ReLU(inplace=True)
    if lrn:
        layer["lrn"] = response_norm()
    return nn.Sequential(layer)


def make_features(
    config: str, in_chans: int, batch_norm: bool
) -> tuple[nn.Sequential, list[FeatureInfo]]:
    """The convolutional part of one column of Table 1: layers conv<stage>_<index>, and pool
    <stage> after each stage; feature_info names each stage's last layer (before its pool)."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    info = []
    channels = in_chans
    for stage, entries in enumerate(TABLE_1[config], start=1):
        index = 0
        for position, entry in enumerate(entries):
            if entry == "LRN":
                continue
            index += 1
            kernel_size, width = parse_layer(entry)
            lrn = entries[position + 1 : position + 2] == ("LRN",)
            layers[f"conv{stage}_{index}"] = conv_layer(
                channels, width, kernel_size, batch_norm, lrn
            )
            channels = width
        info.append(FeatureInfo(f"features.conv{stage}_{index}", channels, 2 ** (stage - 1)))
        layers[f"pool{stage}"] = nn.MaxPool2d(kernel_size=2, stride=2)
    return nn.Sequential(layers), info


class VGG(ClassifierNet):
    """One configuration of Table 1 (§2.1–2.2): `features` ends with pool5 (7x7x512 at
    224x224), then fc6 and fc7 (4096 units, ReLU, dropout 0.5, §3.1) and fc8."""

    classifier_name = "fc8"
    num_features = 512  # pool5's maps
    head_hidden_size = 4096  # fc7's units

    def __init__(
        self,
        config: str,
        num_classes: int = 1000,
        in_chans: int = 3,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        if config not in TABLE_1:
            raise ValueError(f"unknown VGG configuration {config!r}; Table 1 has {list(TABLE_1)}")
        self.config = config
        self.batch_norm = batch_norm
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.features, self.feature_info = make_features(config, in_chans, batch_norm)
        # Identity at 224x224 (pool5 is 7x7); lets other sizes reach fc6, as in torchvision.
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.fc6 = self._hidden_layer(512 * 7 * 7)
        self.fc7 = self._hidden_layer(4096)
        self.fc8 = nn.Linear(4096, num_classes)
        self._init_weights()

    @staticmethod
    def _hidden_layer(in_features: int) -> nn.Sequential:
        # §3.1: "dropout regularisation for the first two fully-connected layers (dropout
        # ratio set to 0.5)", on their outputs.
        return nn.Sequential(
            OrderedDict(
                fc=nn.Linear(in_features, 4096),
                relu=nn.ReLU(inplace=True),
                dropout=nn.Dropout(0.5),
            )
        )

    def _init_weights(self) -> None:
        for module in self.modules():
            if self.batch_norm and isinstance(module, nn.Conv2d):
                # The BatchNorm variants are not in the paper; torchvision's init.
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Conv2d | nn.Linear):
                # §3.1: random initialisation, zero biases.
                nn.init.normal_(module.weight, mean=0.0, std=INIT_STD)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.fc7(self.fc6(self.avgpool(x).flatten(1)))
        return x if pre_logits else self.fc8(x)

    def dense(self) -> nn.Module:
        """The fully convolutional net of §3.2 (`cnnzoo_vgg.dense`) with this net's weights,
        for the core's dense and multi-scale evaluation."""
        return to_fully_convolutional(self)

    def new_classifier(self, num_classes: int) -> nn.Module:
        fc8 = nn.Linear(4096, num_classes)
        nn.init.normal_(fc8.weight, mean=0.0, std=INIT_STD)
        nn.init.zeros_(fc8.bias)
        return fc8


# §3.1: "we initialised the first four convolutional layers and the last three fully-connected
# layers with the layers of net A". Net A's first four are conv1_1, conv2_1, conv3_1 and
# conv3_2, and they go to the deeper net's layers of the same name (the only reading in which
# the shapes agree: the deeper nets' conv1_2 is 64 -> 64, A's conv2_1 is 64 -> 128).
LAYERS_FROM_A = ("conv1_1", "conv2_1", "conv3_1", "conv3_2")
FC_LAYERS = ("fc6", "fc7", "fc8")


def init_from_shallower(deep: VGG, trained_a: VGG) -> list[str]:
    """Initialise a deeper net (B to E) from a trained net A, in place, as §3.1 did before
    Glorot initialisation: the first four convolutional layers and fc6, fc7, fc8 are copied
    from A; the intermediate layers keep their random initialisation. Returns the names of
    the copied layers."""
    if trained_a.config not in ("A", "A-LRN"):
        raise ValueError(f"the paper initialises from net A; got configuration {trained_a.config}")
    if deep.batch_norm != trained_a.batch_norm:
        raise ValueError("both nets must have BatchNorm, or neither")
    names = [f"features.{layer}" for layer in LAYERS_FROM_A] + list(FC_LAYERS)
    for name in names:
        source, target = trained_a.get_submodule(name), deep.get_submodule(name)
        try:
            target.load_state_dict(source.state_dict())
        except RuntimeError as exc:
            raise ValueError(f"cannot copy {name} from net A: {exc}") from exc
    return names


def torchvision_keys(config: str, batch_norm: bool) -> dict[str, str]:
    """torchvision's module names (features.<i>, classifier.<i>) -> ours, for configurations
    A, B, D and E (torchvision's vgg11, vgg13, vgg16, vgg19 and their _bn versions)."""
    keys = {}
    index = 0
    for stage, entries in enumerate(TABLE_1[config], start=1):
        convs = [entry for entry in entries if entry != "LRN"]
        for position in range(1, len(convs) + 1):
            keys[f"features.{index}"] = f"features.conv{stage}_{position}.conv"
            if batch_norm:
                keys[f"features.{index + 1}"] = f"features.conv{stage}_{position}.bn"
            index += 3 if batch_norm else 2
        index += 1  # the stage's max pool
    keys |= {"classifier.0": "fc6.fc", "classifier.3": "fc7.fc", "classifier.6": "fc8"}
    return keys


# torchvision's four depths, by their number of convolutional layers.
TORCHVISION_CONFIGS = {8: "A", 10: "B", 13: "D", 16: "E"}


def from_torchvision_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict of torchvision's vgg11/13/16/19 (or _bn) renamed for our vgg11/13/16/19
    (or _bn); the configuration is read from the number of convolutional layers, e.g.

        model = vgg16()
        model.load_state_dict(from_torchvision_state_dict(VGG16_Weights.DEFAULT.get_state_dict()))
    """
    conv_count = sum(
        1 for key, value in state_dict.items() if key.startswith("features.") and value.ndim == 4
    )
    if conv_count not in TORCHVISION_CONFIGS:
        raise KeyError(
            f"a state dict with {conv_count} convolutional layers under 'features.' is not "
            f"torchvision's vgg11/13/16/19 (8, 10, 13 or 16 layers); is it another model's?"
        )
    batch_norm = any(key.endswith("running_mean") for key in state_dict)
    keys = torchvision_keys(TORCHVISION_CONFIGS[conv_count], batch_norm)
    renamed = {}
    for key, value in state_dict.items():
        module, _, param = key.rpartition(".")
        if module not in keys:
            raise KeyError(f"{key!r} is not a parameter of torchvision's VGG")
        renamed[f"{keys[module]}.{param}"] = value
    return renamed


PAPER = "Very Deep Convolutional Networks for Large-Scale Image Recognition"
AUTHORS = "K. Simonyan, A. Zisserman"
URL = "https://arxiv.org/abs/1409.1556"
VAL = "ILSVRC-2012 val"


def table_3(train_scale: str, test_scale: str, top1: float, top5: float) -> PublishedError:
    return PublishedError(
        VAL,
        top1=top1,
        top5=top5,
        evaluation=f"dense, single test scale Q={test_scale}, trained at S={train_scale}",
        source="Table 3",
    )


def table_4(train_scale: str, test_scales: str, top1: float, top5: float) -> PublishedError:
    return PublishedError(
        VAL,
        top1=top1,
        top5=top5,
        evaluation=f"dense, test scales Q={{{test_scales}}}, trained at S={train_scale}",
        source="Table 4",
    )


PAPER_NOTES = (
    "An adaptive 7x7 average pool before fc6 (identity at 224x224, as torchvision) lets "
    "the net take other sizes; the paper's dense evaluation (§3.2) is "
    "cnnzoo_vgg.to_fully_convolutional. §3.1's '10^-2 variance' init is read as std 0.01."
)


# torchvision ships ImageNet weights for configurations A, B, D and E, with and without BN.
TORCHVISION_WEIGHTS = {"A": "VGG11", "B": "VGG13", "D": "VGG16", "E": "VGG19"}


def torchvision_weights(config: str, batch_norm: bool) -> tuple[PretrainedWeights, ...]:
    if config not in TORCHVISION_WEIGHTS:
        return ()
    name = TORCHVISION_WEIGHTS[config] + ("_BN" if batch_norm else "")
    return (
        PretrainedWeights(
            "torchvision",
            f"{name}_Weights.IMAGENET1K_V1",
            "cnnzoo_vgg.vgg:from_torchvision_state_dict",
        ),
    )


def paper_card(
    config: str, params: int, errors: tuple[PublishedError, ...], notes: str = ""
) -> ModelCard:
    return ModelCard(
        paper=PAPER,
        authors=AUTHORS,
        year=2014,
        url=URL,
        input_size=(3, 224, 224),
        num_classes=1000,
        published_params=params,
        params_source=f"Table 2: {params // 1_000_000} million (configuration {config})",
        published_errors=errors,
        min_input_size=MIN_INPUT_SIZE,
        weights=torchvision_weights(config, batch_norm=False),
        notes=" ".join(part for part in (notes, PAPER_NOTES) if part),
    )


# torchvision's model zoo: ImageNet-1K top-1/top-5 accuracy of its _bn weights, one centre
# crop 224 of 256.
TORCHVISION_BN = {
    "vgg11_bn": (132_868_840, 70.370, 89.810),
    "vgg13_bn": (133_053_736, 71.586, 90.374),
    "vgg16_bn": (138_365_992, 73.360, 91.516),
    "vgg19_bn": (143_678_248, 74.218, 91.842),
}


def bn_card(name: str, config: str) -> ModelCard:
    params, top1_acc, top5_acc = TORCHVISION_BN[name]
    return ModelCard(
        paper=PAPER,
        authors=AUTHORS,
        year=2014,
        url=URL,
        input_size=(3, 224, 224),
        num_classes=1000,
        published_params=params,
        params_source=f"torchvision {name} (the paper has no BatchNorm variant)",
        published_errors=(
            PublishedError(
                VAL,
                top1=round(100 - top1_acc, 3),
                top5=round(100 - top5_acc, 3),
                evaluation="1 centre crop 224 of 256",
                source=f"torchvision model zoo ({name})",
            ),
        ),
        min_input_size=MIN_INPUT_SIZE,
        weights=torchvision_weights(config, batch_norm=True),
        notes=f"Modern variant, not in the paper: configuration {config} with BatchNorm "
        "(Ioffe and Szegedy 2015) after every convolution, as torchvision's "
        f"{name}, with torchvision's initialisation (Kaiming normal, fan-out); its weights "
        "load through from_torchvision_state_dict.",
    )


@variant(paper_card("A", 133_000_000, (table_3("256", "256", 29.6, 10.4),)))
def vgg11(num_classes: int = 1000, in_chans: int = 3) -> VGG:
    """Configuration A (Table 1): 8 convolutional and 3 fully-connected layers, 132,863,336
    parameters with 1000 classes (Table 2: 133 million)."""
    return VGG("A", num_classes, in_chans)


@variant(
    paper_card(
        "A-LRN",
        133_000_000,
        (table_3("256", "256", 29.7, 10.5),),
        notes="Local response normalisation after conv1_1's ReLU with AlexNet's "
        "parameters (§2.1); §4.1 found it does not help.",
    )
)
def vgg11_lrn(num_classes: int = 1000, in_chans: int = 3) -> VGG:
    """Configuration A-LRN (Table 1): A with local response normalisation after its first
    layer; the same 132,863,336 parameters."""
    return VGG("A-LRN", num_classes, in_chans)


@variant(
    paper_card(
        "B",
        133_000_000,
        (table_4("256", "224,256,288", 28.2, 9.6), table_3("256", "256", 28.7, 9.9)),
    )
)
def vgg13(num_classes: int = 1000, in_chans: int = 3) -> VGG:
    """Configuration B (Table 1): 10 convolutional layers, 133,047,848 parameters."""
    return VGG("B", num_classes, in_chans)


@variant(
    paper_card(
        "C",
        134_000_000,
        (
            table_4("[256;512]", "256,384,512", 26.3, 8.2),
            table_4("256", "224,256,288", 27.7, 9.2),
            table_4("384", "352,384,416", 27.8, 9.2),
            table_3("[256;512]", "384", 27.3, 8.8),
            table_3("256", "256", 28.1, 9.4),
            table_3("384", "384", 28.1, 9.3),
        ),
        notes="Configuration C: a 1x1 convolution closes stages 3, 4 and 5 (Table 1).",
    )
)
def vgg16_c(num_classes: int = 1000, in_chans: int = 3) -> VGG:
    """Configuration C (Table 1): 16 weight layers, of which three 1x1 convolutions ("conv1")
    at the end of stages 3, 4 and 5; 133,638,952 parameters (Table 2: 134 million)."""
    return VGG("C", num_classes, in_chans)


@variant(
    paper_card(
        "D",
        138_000_000,
        (
            table_4("[256;512]", "256,384,512", 24.8, 7.5),
            table_4("256", "224,256,288", 26.6, 8.6),
            table_4("384", "352,384,416", 26.5, 8.6),
            table_3("[256;512]", "384", 25.6, 8.1),
            table_3("256", "256", 27.0, 8.8),
            table_3("384", "384", 26.8, 8.7),
        ),
    )
)
def vgg16(num_classes: int = 1000, in_chans: int = 3) -> VGG:
    """Configuration D (Table 1), "VGG-16": 13 convolutional layers, 138,357,544 parameters
    (Table 2: 138 million)."""
    return VGG("D", num_classes, in_chans)


@variant(
    paper_card(
        "E",
        144_000_000,
        (
            table_4("[256;512]", "256,384,512", 24.8, 7.5),
            table_4("256", "224,256,288", 26.9, 8.7),
            table_4("384", "352,384,416", 26.7, 8.6),
            table_3("[256;512]", "384", 25.5, 8.0),
            table_3("256", "256", 27.3, 9.0),
            table_3("384", "384", 26.9, 8.7),
        ),
    )
)
def vgg19(num_classes: int = 1000, in_chans: int = 3) -> VGG:
    """Configuration E (Table 1), "VGG-19": 16 convolutional layers, 143,667,240 parameters
    (Table 2: 144 million)."""
    return VGG("E", num_classes, in_chans)


@variant(bn_card("vgg11_bn", "A"))
def vgg11_bn(num_classes: int = 1000, in_chans: int = 3) -> VGG:
    """Configuration A with BatchNorm after each convolution (torchvision's vgg11_bn)."""
    return VGG("A", num_classes, in_chans, batch_norm=True)


@variant(bn_card("vgg13_bn", "B"))
def vgg13_bn(num_classes: int = 1000, in_chans: int = 3) -> VGG:
    """Configuration B with BatchNorm after each convolution (torchvision's vgg13_bn)."""
    return VGG("B", num_classes, in_chans, batch_norm=True)


@variant(bn_card("vgg16_bn", "D"))
def vgg16_bn(num_classes: int = 1000, in_chans: int = 3) -> VGG:
    """Configuration D with BatchNorm after each convolution (torchvision's vgg16_bn)."""
    return VGG("D", num_classes, in_chans, batch_norm=True)


@variant(bn_card("vgg19_bn", "E"))
def vgg19_bn(num_classes: int = 1000, in_chans: int = 3) -> VGG:
    """Configuration E with BatchNorm after each convolution (torchvision's vgg19_bn)."""
    return VGG("E", num_classes, in_chans, batch_norm=True)
