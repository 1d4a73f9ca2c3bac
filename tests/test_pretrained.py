"""Published ImageNet weights load into our models: every card's weights exist in the
installed torchvision or timm and fit our variant key for key; `pretrained=True` reads them
from torch hub's folder without the network and gives the publisher's logits; other class
and channel counts keep what fits; offline, the error says where to put the file."""

from __future__ import annotations

import importlib
import socket
import urllib.error
from pathlib import Path

import cnnzoo
import huggingface_hub.constants
import numpy as np
import pytest
import skimage.data
import timm
import torch
import torchvision
from cnnzoo.pretrained import PretrainedWeightsError, hub_checkpoint_dir
from test_resnet import randomise_batchnorm_  # BN statistics away from 0 and 1
from torch import nn
from torch.nn import functional as F

# Other libraries' weights; our own (source "cnnzoo") are checked against their rows.
CARD_WEIGHTS = [
    (name, weights)
    for name in cnnzoo.list_models()
    for weights in cnnzoo.model_card(name).weights
    if weights.source != "cnnzoo"
]

# torchvision's builder of each weights enum ("ResNet50_Weights" -> "resnet50").
TORCHVISION_BUILDERS = {
    torchvision.models.get_model_weights(builder).__name__: builder
    for builder in torchvision.models.list_models(module=torchvision.models)
}
# Builders that turn on transform_input with their weights: the model maps ImageNet-
# normalised input to (x - 0.5) / 0.5 itself, so the weights want that normalisation.
TRANSFORM_INPUT = {"inception_v3", "googlenet"}


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No test here reaches the network: name lookups fail at once, the Hugging Face hub is
    in offline mode (no retries), and torch hub's folder is an empty one under tmp_path."""

    def no_network(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "no network in the tests")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    folder = hub_checkpoint_dir()
    assert folder == tmp_path / "torch" / "hub" / "checkpoints"  # torch hub reads TORCH_HOME
    folder.mkdir(parents=True)
    return folder


def photo(size: int, mean, std, grey: bool = False) -> torch.Tensor:
    """skimage's astronaut (or camera man, grey) as a normalised batch of one."""
    image = skimage.data.camera()[..., None] if grey else skimage.data.astronaut()
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255
    x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
    channels = x.shape[1]
    mean, std = torch.tensor(mean[:channels]), torch.tensor(std[:channels])
    return (x - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)


def reference_on_meta(weights) -> nn.Module:
    """The publisher's architecture for `weights`, on the meta device: no memory, no file."""
    with torch.device("meta"):
        if weights.source == "torchvision":
            enum = torchvision.models.get_weight(weights.name)
            builder = TORCHVISION_BUILDERS[type(enum).__name__]
            kwargs = {"init_weights": False} if builder in TRANSFORM_INPUT else {}
            return torchvision.models.get_model(builder, **kwargs)
        return timm.create_model(weights.name.partition(".")[0])


@pytest.mark.parametrize(
    ("name", "weights"), CARD_WEIGHTS, ids=[f"{n}-{w.name}" for n, w in CARD_WEIGHTS]
)
def test_card_weights_exist_fit_strictly_and_carry_the_publishers_normalisation(name, weights):
    card = cnnzoo.model_card(name)
    if weights.source == "torchvision":
        enum = torchvision.models.get_weight(weights.name)  # raises for an unknown name
        builder = TORCHVISION_BUILDERS[type(enum).__name__]
        transforms = enum.transforms()
        mean, std = tuple(transforms.mean), tuple(transforms.std)
        if builder in TRANSFORM_INPUT:
            mean = std = (0.5, 0.5, 0.5)
        classes = len(enum.meta["categories"])
    else:
        assert weights.source == "timm"
        assert weights.name in timm.list_pretrained(weights.name)
        cfg = timm.models.get_pretrained_cfg(weights.name)
        mean, std, classes = tuple(cfg.mean), tuple(cfg.std), cfg.num_classes
    assert (weights.mean, weights.std) == (mean, std)
    assert classes == card.num_classes == 1000

    module, _, function = weights.convert.partition(":")
    convert = getattr(importlib.import_module(module), function)
    renamed = convert(reference_on_meta(weights).state_dict())
    with torch.device("meta"):
        ours = cnnzoo.create_model(name)
    ours.load_state_dict(renamed, strict=True, assign=True)
    if weights.source == "torchvision":  # the publisher's own count of the weights' model
        assert sum(p.numel() for p in ours.parameters()) == enum.meta["num_params"]


def test_every_torchvision_and_timm_match_of_the_equivalence_tests_has_weights():
    """The pairings the arch packages' tests prove, and the ones they disprove."""
    with_weights = {name for name, _ in CARD_WEIGHTS}
    proven = """alexnet_owt resnet18 resnet34 resnet50_v1_5 resnet101_v1_5 resnet152_v1_5 vgg11
    vgg11_bn vgg13 vgg16 vgg16_bn vgg19 densenet121 densenet161 densenet169 densenet201
    inception_v3 inception_v4 inception_resnet_v2 mnasnet_a1 mnasnet_b1 mnasnet_b1_050
    mnasnet_b1_075 mnasnet_b1_130 mobilenet_v2 shufflenet_v2_x0_5 shufflenet_v2_x1_0
    shufflenet_v2_x1_5 shufflenet_v2_x2_0 se_resnet50 se_resnet101 se_resnet152
    se_resnext50_32x4d"""
    assert with_weights >= set(proven.split())
    # The same tensors, another function, so a strict load cannot tell: the paper's ResNets
    # stride on the first 1x1 (torchvision's on the 3x3), A-LRN has LRN, timm's MobileNet-v1
    # uses ReLU6 where the paper has ReLU, and its SE-ResNet-18/34 put one ReLU more.
    disproven = "resnet50 resnet101 resnet152 vgg11_lrn mobilenet_v1 se_resnet18 se_resnet34"
    assert not with_weights & set(disproven.split())


def test_mnasnet_b1_075_gives_torchvisions_mnasnet0_75_logits():
    """The one width whose outputs the family tests do not compare (they check 0.5, 1.0 and
    1.3): torchvision rounds the channels at 0.75 as we do."""
    (weights,) = cnnzoo.model_card("mnasnet_b1_075").weights
    torch.manual_seed(0)
    reference = randomise_batchnorm_(torchvision.models.mnasnet0_75())
    ours = cnnzoo.create_model("mnasnet_b1_075").eval()
    convert = importlib.import_module("cnnzoo_mnasnet").from_torchvision_state_dict
    ours.load_state_dict(convert(reference.state_dict()))
    x = photo(97, weights.mean, weights.std)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x))


def test_inception_v3_weights_want_inputs_scaled_to_minus_one_one():
    """torchvision's inception_v3 with its weights' transform_input=True on ImageNet-
    normalised input equals ours on the card's normalisation, (x - 0.5) / 0.5."""
    reference = torchvision.models.inception_v3(
        aux_logits=True, transform_input=True, init_weights=False
    )
    randomise_batchnorm_(reference)
    (weights,) = cnnzoo.model_card("inception_v3").weights
    with torch.device("meta"):
        ours = cnnzoo.create_model("inception_v3")
    convert = importlib.import_module("cnnzoo_inception").from_torchvision_state_dict
    ours.load_state_dict(convert(reference.state_dict()), assign=True)
    imagenet = torchvision.models.get_weight(weights.name).transforms()
    with torch.no_grad():
        expected = reference(photo(107, imagenet.mean, imagenet.std))
        ours_logits = ours.eval()(photo(107, weights.mean, weights.std))
        torch.testing.assert_close(ours_logits, expected, rtol=1e-4, atol=1e-4)
        assert not torch.allclose(ours(photo(107, imagenet.mean, imagenet.std)), expected)


@pytest.fixture
def torchvision_resnet18(offline: Path) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """A random torchvision resnet18 saved where torchvision's weights would be downloaded."""
    torch.manual_seed(0)
    reference = randomise_batchnorm_(torchvision.models.resnet18())
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    torch.save(reference.state_dict(), offline / Path(url).name)
    return reference, reference.state_dict()


def test_pretrained_reads_torchvision_weights_from_the_hub_folder(torchvision_resnet18):
    reference, _ = torchvision_resnet18
    (weights,) = cnnzoo.model_card("resnet18").weights
    x = photo(112, weights.mean, weights.std)
    with torch.no_grad():
        expected = reference(x)
        for pretrained in (True, "ResNet18_Weights.IMAGENET1K_V1"):
            ours = cnnzoo.create_model("resnet18", pretrained=pretrained).eval()
            torch.testing.assert_close(ours(x), expected, rtol=1e-5, atol=1e-5)
        assert expected.argmax() == ours(x).argmax()
        assert not torch.allclose(cnnzoo.create_model("resnet18").eval()(x), expected)


def test_pretrained_reads_timm_weights_from_the_hub_folder(offline):
    torch.manual_seed(0)
    reference = randomise_batchnorm_(timm.create_model("semnasnet_100"))
    torch.save(reference.state_dict(), offline / "semnasnet_100.rmsp_in1k.pth")
    (weights,) = cnnzoo.model_card("mnasnet_a1").weights
    x = photo(112, weights.mean, weights.std)
    ours = cnnzoo.create_model("mnasnet_a1", pretrained=True).eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), rtol=1e-5, atol=1e-5)


def test_other_classes_keep_everything_but_the_classifier(torchvision_resnet18):
    reference, saved = torchvision_resnet18
    ours = cnnzoo.create_model("resnet18", pretrained=True, num_classes=10).eval()
    assert ours.fc.weight.shape == (10, 512)
    x = photo(112, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    with torch.no_grad():
        features = nn.Sequential(*list(reference.children())[:-1])(x).flatten(1)
        torch.testing.assert_close(ours.forward_head(ours.forward_features(x), True), features)
    loaded = ours.state_dict()
    renamed = importlib.import_module("cnnzoo_resnet").from_torchvision_state_dict(saved)
    assert sorted(key for key in renamed if not torch.equal(renamed[key], loaded[key])) == [
        "fc.bias",
        "fc.weight",
    ]


def test_one_channel_sums_the_rgb_filters_so_grey_is_seen_as_grey_rgb(torchvision_resnet18):
    """timm's adapt_input_conv: a grey image through the 1-channel model is that image,
    repeated in R, G and B, through the colour one."""
    reference, saved = torchvision_resnet18
    ours = cnnzoo.create_model("resnet18", pretrained=True, in_chans=1).eval()
    conv = next(m for m in ours.modules() if isinstance(m, nn.Conv2d))
    torch.testing.assert_close(conv.weight, saved["conv1.weight"].sum(1, keepdim=True))
    grey = photo(112, (0.45,), (0.226,), grey=True)
    with torch.no_grad():
        torch.testing.assert_close(
            ours(grey), reference(grey.expand(-1, 3, -1, -1)), rtol=1e-4, atol=1e-4
        )


def test_the_models_table_lists_the_weights_pretrained_true_loads():
    from cnnzoo_classify.models_table import model_row

    # The bad-input message below sends users to this column.
    assert model_row("resnet50_v1_5", count=False)["weights"].startswith(
        "ResNet50_Weights.IMAGENET1K_V1 (+1)"
    )
    assert model_row("lenet5", count=False)["weights"] == "—"


@pytest.mark.bad_input
def test_pretrained_without_published_weights_names_the_model():
    with pytest.raises(PretrainedWeightsError, match="lenet5 has no published weights"):
        cnnzoo.create_model("lenet5", pretrained=True)


@pytest.mark.bad_input
def test_unknown_weights_name_lists_the_available_ones():
    with pytest.raises(PretrainedWeightsError) as raised:
        cnnzoo.create_model("resnet50_v1_5", pretrained="IMAGENET1K_V3")
    message = str(raised.value)
    assert "'IMAGENET1K_V3'" in message
    assert "ResNet50_Weights.IMAGENET1K_V1, ResNet50_Weights.IMAGENET1K_V2" in message


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("name", "url", "file"),
    [
        (
            "resnet18",
            "https://download.pytorch.org/models/resnet18-f37072fd.pth",
            "resnet18-f37072fd.pth",
        ),
        (
            "mnasnet_a1",
            "https://huggingface.co/timm/semnasnet_100.rmsp_in1k/resolve/main/model.safetensors",
            "semnasnet_100.rmsp_in1k.safetensors",
        ),
        (
            "se_resnet50",
            "https://github.com/rwightman/pytorch-image-models/releases/download/"
            "v0.1-cadene/se_resnet50-ce0d4300.pth",
            "legacy_seresnet50.in1k.pth",
        ),
    ],
    ids=["torchvision", "timm-hf-hub", "timm-url"],
)
def test_offline_names_the_url_and_where_to_put_the_file(offline, monkeypatch, name, url, file):
    def refuse(url, *args, **kwargs):
        raise urllib.error.URLError("no network in the tests")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    with pytest.raises(PretrainedWeightsError, match=r"Offline\?") as raised:
        cnnzoo.create_model(name, pretrained=True)
    assert f"download {url} and put the file at {offline / file}" in str(raised.value)
    assert not any(offline.iterdir())


@pytest.mark.bad_input
def test_a_truncated_weights_file_is_named_with_what_to_do(offline, torchvision_resnet18):
    file = next(offline.iterdir())
    file.write_bytes(file.read_bytes()[:1000])
    with pytest.raises(PretrainedWeightsError, match="is there but does not load") as raised:
        cnnzoo.create_model("resnet18", pretrained=True)
    assert f"{file} is there" in str(raised.value)
    assert "Delete it and download https://download.pytorch.org/" in str(raised.value)


@pytest.mark.bad_input
def test_weights_for_other_layer_shapes_are_refused_naming_the_tensor(offline):
    """SE-ResNet-50 built with r = 8 has SE layers twice as wide as the published r = 16:
    refused, naming a tensor, rather than half loaded."""
    with torch.device("meta"):
        reference = timm.create_model("legacy_seresnet50")
    torch.save(
        reference.to_empty(device="cpu").state_dict(), offline / "legacy_seresnet50.in1k.pth"
    )
    with pytest.raises(PretrainedWeightsError, match="does not fit se_resnet50") as raised:
        cnnzoo.create_model("se_resnet50", pretrained=True, reduction=8)
    assert "se.fc1.weight is (16, 256) there and (32, 256) here" in str(raised.value)


def test_our_own_weights_load_from_the_package_that_ships_them(tmp_path, monkeypatch):
    """Weights trained by a reproduction ship as safetensors inside their plugin, and load
    with no network and no renaming; a package without its file says to reinstall it."""
    from cnnzoo.card import PretrainedWeights
    from cnnzoo.pretrained import load_pretrained
    from safetensors.torch import save_file

    package = tmp_path / "shipping_plugin"
    (package / "weights").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    torch.manual_seed(1)
    trained = cnnzoo.create_model("resnet20")
    randomise_batchnorm_(trained)
    save_file(trained.state_dict(), package / "weights" / "resnet20.safetensors")
    monkeypatch.syspath_prepend(str(tmp_path))

    weights = PretrainedWeights(
        "cnnzoo", "resnet20.test", file="shipping_plugin:weights/resnet20.safetensors"
    )
    torch.manual_seed(2)
    model = cnnzoo.create_model("resnet20")
    load_pretrained(model, weights)
    for key, value in trained.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key

    gone = PretrainedWeights("cnnzoo", "resnet20.gone", file="shipping_plugin:weights/gone.st")
    with pytest.raises(PretrainedWeightsError, match="missing from the installed shipping_plugin"):
        load_pretrained(model, gone)
    (package / "weights" / "broken.safetensors").write_bytes(b"\x00" * 12)
    broken = PretrainedWeights(
        "cnnzoo", "resnet20.broken", file="shipping_plugin:weights/broken.safetensors"
    )
    with pytest.raises(PretrainedWeightsError, match="does not load"):
        load_pretrained(model, broken)
