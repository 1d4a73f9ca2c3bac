"""The timm bridge (cnnzoo-timm): timm's models in our registry as `timm/<name>`, speaking our
protocol, with cards from timm's pretrained configs and timm's weights; namespaces that break
without breaking the zoo; our models in timm's registry as `cnnzoo_<name>`; and timm's
ResNet-18 through the `cnnzoo` trainer on real CIFAR-10 and through the detection app on a
COCO128 image."""

from __future__ import annotations

import csv
import subprocess
import sys
import textwrap
from pathlib import Path

import cnnzoo
import cnnzoo_timm
import huggingface_hub
import numpy as np
import pytest
import timm
import torch
from cnnzoo import ClassifierNet, InputShapeError, ModelNotFoundError, PluginError, model_card
from cnnzoo.pretrained import PretrainedWeightsError, hub_checkpoint_dir
from cnnzoo_timm import TimmClassifier
from conftest import photo, run_cnnzoo
from timm.models import get_arch_pretrained_cfgs, get_pretrained_cfg


def grey_photo(side: int) -> torch.Tensor:
    """scikit-image's cameraman, (1, 1, side, side) in [0, 1]."""
    pixels = photo("camera", short_side=side)[:side, :side, 0]
    return torch.from_numpy(pixels.copy()).float().div(255)[None, None]


def colour_photo(side: int) -> torch.Tensor:
    """Chelsea the cat, (1, 3, side, side), normalised as ImageNet's images are."""
    pixels = photo("chelsea", short_side=side)[:side, :side]
    image = torch.from_numpy(pixels.copy()).permute(2, 0, 1).float().div(255)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    return ((image - mean[:, None, None]) / std[:, None, None])[None]


@pytest.fixture
def fake_namespaces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Install distributions with `cnnzoo.namespaces` entry points (and modules they name),
    as pip lays them out; forgotten again after the test (conftest's fake_plugins, for the
    namespace group)."""
    modules = []

    def install(dist: str, entries: dict[str, str], sources: dict[str, str] | None = None):
        folder = tmp_path / dist
        info = folder / f"{dist.replace('-', '_')}-0.1.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        lines = "".join(f"{name} = {value}\n" for name, value in entries.items())
        (info / "entry_points.txt").write_text(f"[{cnnzoo.registry.NAMESPACE_GROUP}]\n{lines}")
        for module, source in (sources or {}).items():
            (folder / f"{module}.py").write_text(textwrap.dedent(source))
            modules.append(module)
        monkeypatch.syspath_prepend(str(folder))
        cnnzoo.refresh()

    yield install
    for module in modules:
        sys.modules.pop(module, None)
    cnnzoo.refresh()


@pytest.fixture
def hub_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub checkpoint folder, and a Hugging Face Hub that is offline (as this
    machine is) with an empty cache: nothing can come from anywhere but the folder."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads its settings once, when imported.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    folder = hub_checkpoint_dir()
    folder.mkdir(parents=True)
    return folder


def test_a_namespace_is_listed_only_when_the_pattern_names_it():
    resnets = cnnzoo.list_models("timm/resnet*")
    assert resnets == sorted(f"timm/{name}" for name in timm.list_models("resnet*"))
    assert {"timm/resnet18", "timm/resnet50", "timm/resnet152d"} <= set(resnets)
    assert cnnzoo.list_models("timm/resnet18") == ["timm/resnet18"]
    assert not any("/" in name for name in cnnzoo.list_models())  # the zoo stays ours
    assert cnnzoo.list_models("*resnet18") == ["preact_resnet18", "resnet18", "se_resnet18"]
    everything = cnnzoo.list_models("timm/*")
    assert len(everything) > 1000
    assert not any(name.startswith("timm/cnnzoo_") for name in everything)  # ours, not timm's


@pytest.mark.slow
def test_listing_the_zoo_imports_no_timm_and_the_bridge_registers_cards_configs():
    """The zoo's own listing never imports timm; naming the timm namespace imports the
    bridge, which registers every cnnzoo model in timm with its card's default config, as
    timm's own models have one (reading the cards imports the plugins' builder modules)."""
    code = textwrap.dedent(
        """
        import sys
        import cnnzoo

        cnnzoo.list_models()
        cnnzoo.model_card("resnet20")
        assert "timm" not in sys.modules and "cnnzoo_timm" not in sys.modules
        assert cnnzoo.list_models("timm/resnet18") == ["timm/resnet18"]
        assert "cnnzoo_timm" in sys.modules  # the pattern named the namespace

        import timm
        cfg = timm.models.get_pretrained_cfg("cnnzoo_densenet100_k12")
        assert cfg.input_size == (3, 32, 32) and cfg.num_classes == 10
        assert timm.create_model("cnnzoo_densenet100_k12").num_classes == 10
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_timm_resnet18_is_timms_network_speaking_our_protocol():
    torch.manual_seed(0)
    model = cnnzoo.create_model("timm/resnet18", num_classes=10, in_chans=1).eval()
    torch.manual_seed(0)
    reference = timm.create_model("resnet18", num_classes=10, in_chans=1).eval()
    assert isinstance(model, ClassifierNet) and isinstance(model, TimmClassifier)
    assert (model.name, model.num_classes, model.in_chans) == ("timm/resnet18", 10, 1)
    assert model.card is cnnzoo.model_card("timm/resnet18")
    assert model.state_dict().keys() == {f"timm.{k}" for k in reference.state_dict()}

    image = grey_photo(96)
    with torch.no_grad():
        logits = model(image)
        assert torch.equal(logits, reference(image))  # same initialisation, same network
        features = model.forward_features(image)
        assert torch.equal(model.forward_head(features), logits)
        assert model.forward_head(features, pre_logits=True).shape == (1, 512)

        maps = {}
        hooks = [
            model.get_submodule(stage.module).register_forward_hook(
                lambda _m, _i, out, key=stage.module: maps.__setitem__(key, out)
            )
            for stage in model.feature_info
        ]
        model(image)
        for hook in hooks:
            hook.remove()
    assert [s.module for s in model.feature_info] == [
        "timm.act1",
        "timm.layer1",
        "timm.layer2",
        "timm.layer3",
        "timm.layer4",
    ]
    for stage in model.feature_info:
        feature_map = maps[stage.module]
        assert feature_map.shape[1] == stage.channels
        assert 96 // feature_map.shape[-1] == stage.stride

    model.reset_classifier(3)
    assert model.num_classes == 3 and model(image).shape == (1, 3)
    with pytest.raises(InputShapeError, match="1-channel images but got 3"):
        model(torch.zeros(1, 3, 96, 96))


def test_cards_come_from_timms_pretrained_configs():
    card = cnnzoo.model_card("timm/resnet18")
    cfg = get_pretrained_cfg("resnet18")  # the default weights' config
    assert card.input_size == cfg.input_size and card.num_classes == cfg.num_classes == 1000
    assert cfg.paper_ids == "arXiv:2110.00476"
    assert card.url == "https://arxiv.org/abs/2110.00476" and card.year == 2021
    published = [name for name, c in get_arch_pretrained_cfgs("resnet18").items() if c.has_weights]
    assert [w.name for w in card.weights] == published
    assert card.weights[0].name == f"resnet18.{cfg.tag}"  # timm's default first
    assert {w.source for w in card.weights} == {"timm"}
    assert card.weights[0].mean == cfg.mean and card.weights[0].std == cfg.std

    tagged = cnnzoo.model_card("timm/resnet18.tv_in1k")
    assert [w.name for w in tagged.weights] == ["resnet18.tv_in1k"]
    assert tagged.url == "https://github.com/pytorch/vision" and tagged.year == 0  # unknown

    vit = cnnzoo.model_card("timm/vit_tiny_patch16_224")
    assert vit.fixed_input_size and vit.weights[0].mean == (0.5, 0.5, 0.5)
    assert cnnzoo.model_card("timm/eca_halonext26ts").min_input_size == 256
    no_weights = cnnzoo.model_card("timm/resnet200")
    assert no_weights.weights == ()
    with pytest.raises(PretrainedWeightsError, match="no published weights"):
        cnnzoo.create_model("timm/resnet200", pretrained=True)


@pytest.mark.bad_input
def test_a_fixed_size_timm_model_refuses_other_sizes_through_its_card():
    vit = cnnzoo.create_model("timm/vit_tiny_patch16_224", num_classes=10)
    with pytest.raises(InputShapeError, match="only takes 224x224 images"):
        vit(torch.zeros(1, 3, 160, 160))


@pytest.mark.bad_input
@pytest.mark.parametrize("lookup", [cnnzoo.create_model, cnnzoo.model_card])
def test_an_unknown_timm_name_suggests_timms_close_names(lookup):
    with pytest.raises(ModelNotFoundError) as info:
        lookup("timm/resnt18")
    message = str(info.value)
    assert "no model named 'timm/resnt18' is registered" in message
    assert "Did you mean: timm/resnet18" in message
    assert "`cnnzoo models 'timm/*'` lists its" in message
    with pytest.raises(ModelNotFoundError, match=r"timm/resnet18\.no_such_tag"):
        lookup("timm/resnet18.no_such_tag")
    with pytest.raises(ModelNotFoundError, match="'timm/cnnzoo_resnet20'"):
        lookup("timm/cnnzoo_resnet20")  # ours, registered in timm: not one of timm's
    with pytest.raises(ModelNotFoundError) as info:
        lookup("tim/resnet18")
    assert "No namespace 'tim/' is installed (installed: st/, timm/)" in str(info.value)
    assert "Did you mean: resnet18" in str(info.value)


NAMESPACE_MODULE = """
    import cnnzoo

    class Exploding:
        def names(self):
            raise RuntimeError("the other library's registry is corrupt")

        def builder(self, name):
            raise RuntimeError("the other library's registry is corrupt")

    class Uncarded:
        def names(self):
            return ["plainnet"]

        def builder(self, name):
            return (lambda num_classes=None, in_chans=None: None) if name == "plainnet" else None

    exploding, uncarded, not_a_namespace = Exploding(), Uncarded(), object()
"""


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("cnnzoo_no_such_namespace:namespace", "failed to load the namespace 'broken/'"),
        ("cnnzoo_fake_namespace:not_a_namespace", "not a cnnzoo.registry.Namespace"),
        ("cnnzoo_fake_namespace:exploding", "registry is corrupt"),
    ],
)
def test_a_broken_namespace_plugin_names_its_distribution(fake_namespaces, value, expected):
    fake_namespaces(
        "cnnzoo-broken-namespace",
        {"broken": value},
        {"cnnzoo_fake_namespace": NAMESPACE_MODULE},
    )
    for call in (
        lambda: cnnzoo.list_models("broken/*"),
        lambda: cnnzoo.create_model("broken/plainnet"),
        lambda: cnnzoo.model_card("broken/plainnet"),
    ):
        with pytest.raises(PluginError) as info:
            call()
        assert "'cnnzoo-broken-namespace'" in str(info.value)
        assert expected in str(info.value)
    # The zoo and the other namespaces stay as they were.
    assert "resnet20" in cnnzoo.list_models() and not any("/" in n for n in cnnzoo.list_models())
    assert cnnzoo.create_model("lenet5")(torch.zeros(1, 1, 32, 32)).shape == (1, 10)
    assert cnnzoo.list_models("timm/resnet18") == ["timm/resnet18"]


@pytest.mark.bad_input
def test_a_namespace_builder_without_card_or_a_prefix_claimed_twice_is_refused(fake_namespaces):
    fake_namespaces(
        "cnnzoo-uncarded",
        {"plain": "cnnzoo_fake_namespace:uncarded"},
        {"cnnzoo_fake_namespace": NAMESPACE_MODULE},
    )
    assert cnnzoo.list_models("plain/*") == ["plain/plainnet"]
    with pytest.raises(PluginError, match=r"'cnnzoo-uncarded' registers 'plain/plainnet'"):
        cnnzoo.create_model("plain/plainnet")
    fake_namespaces("cnnzoo-timm-fork", {"timm": "cnnzoo_fake_namespace:uncarded"})
    with pytest.raises(PluginError, match="'timm/' is claimed by more than one") as info:
        cnnzoo.create_model("timm/resnet18")
    assert "cnnzoo-timm-fork (cnnzoo_fake_namespace:uncarded)" in str(info.value)
    assert "cnnzoo-timm (cnnzoo_timm.namespace:namespace)" in str(info.value)
    assert cnnzoo.create_model("lenet5").num_classes == 10


def test_pretrained_weights_are_timms_read_from_the_hub_folder(hub_folder):
    torch.manual_seed(1)
    published = timm.create_model("resnet18").eval()  # stands in for the published weights
    torch.save(published.state_dict(), hub_folder / "resnet18.a1_in1k.pth")
    image = colour_photo(128)

    model = cnnzoo.create_model("timm/resnet18", pretrained=True).eval()
    with torch.no_grad():
        assert torch.equal(model(image), published(image))

    # Fine-tuning: grey images, ten classes. The trunk is timm's, the first convolution
    # summed over colours (timm's adapt_input_conv), the classifier left new.
    grey = cnnzoo.create_model("timm/resnet18", num_classes=10, in_chans=1, pretrained=True)
    weights = grey.state_dict()
    assert torch.equal(weights["timm.layer4.1.conv2.weight"], published.layer4[1].conv2.weight)
    assert torch.allclose(weights["timm.conv1.weight"], published.conv1.weight.sum(1, True))
    assert weights["timm.fc.weight"].shape == (10, 512)


@pytest.mark.bad_input
def test_offline_without_the_weights_file_says_where_to_put_it(hub_folder):
    with pytest.raises(PretrainedWeightsError) as info:
        cnnzoo.create_model("timm/resnet18", pretrained="resnet18.tv_in1k")
    message = str(info.value)
    assert "could not fetch timm's resnet18.tv_in1k" in message
    assert "Offline?" in message
    assert "https://huggingface.co/timm/resnet18.tv_in1k" in message
    assert str(hub_folder / "resnet18.tv_in1k.safetensors") in message


# A plugin whose card lists timm's weights, to show that timm's `pretrained=True` loads
# a cnnzoo model's published weights through cnnzoo's loader.
TWIN_PLUGIN = """
    import dataclasses

    import cnnzoo
    import timm
    from cnnzoo_timm import TimmClassifier, timm_card

    @cnnzoo.variant(dataclasses.replace(timm_card("resnet18"), paper="A twin of ResNet-18"))
    def resnet18_twin(num_classes=1000, in_chans=3):
        return TimmClassifier(timm.create_model("resnet18", num_classes=num_classes), in_chans)
"""


def test_our_models_in_timm(fake_plugins, hub_folder):
    assert set(timm.list_models("cnnzoo_*")) == {f"cnnzoo_{n}" for n in cnnzoo.list_models()}
    torch.manual_seed(0)
    model = timm.create_model("cnnzoo_resnet20", num_classes=7)
    torch.manual_seed(0)
    ours = cnnzoo.create_model("resnet20", num_classes=7)
    assert type(model) is type(ours) and model.name == "resnet20" and model.num_classes == 7
    image = colour_photo(32)
    assert torch.equal(model.eval()(image), ours.eval()(image))
    assert timm.data.resolve_data_config({}, model=model) == {
        "input_size": (3, 32, 32),  # its card's
        "interpolation": "bilinear",
        "mean": (0.485, 0.456, 0.406),
        "std": (0.229, 0.224, 0.225),
        "crop_pct": 1.0,  # small images are taken whole
        "crop_mode": "center",
    }
    lenet = timm.create_model("cnnzoo_lenet5")
    config = timm.data.resolve_data_config({}, model=lenet)
    assert config["input_size"] == (1, 32, 32) and len(config["mean"]) == 1
    assert timm.data.resolve_data_config({}, model=timm.create_model("cnnzoo_alexnet"))[
        "crop_pct"
    ] == pytest.approx(224 / 256)

    with pytest.raises(PretrainedWeightsError, match="resnet20 has no published weights"):
        timm.create_model("cnnzoo_resnet20", pretrained=True)  # cnnzoo's loader answers
    fake_plugins(
        "cnnzoo-twin",
        {"resnet18_twin": "cnnzoo_twin_plugin:resnet18_twin"},
        {"cnnzoo_twin_plugin": TWIN_PLUGIN},
    )
    assert cnnzoo_timm.register_in_timm() == ["cnnzoo_resnet18_twin"]
    assert cnnzoo_timm.register_in_timm() == []  # once only
    torch.manual_seed(2)
    published = timm.create_model("resnet18").eval()
    torch.save(published.state_dict(), hub_folder / "resnet18.a1_in1k.pth")
    twin = timm.create_model("cnnzoo_resnet18_twin", pretrained=True).eval()
    with torch.no_grad():
        assert torch.equal(twin(image), published(image))


def test_our_models_in_timm_cut_into_feature_maps_as_timms_are():
    """timm's features_only and out_indices reach cnnzoo's cut; the maps are described by
    timm's FeatureInfo, and are cnnzoo's own."""
    torch.manual_seed(0)
    features = timm.create_model("cnnzoo_resnet50", features_only=True, out_indices=(1, 2, 3, 4))
    assert features.feature_info.channels() == [256, 512, 1024, 2048]
    assert features.feature_info.reduction() == [4, 8, 16, 32]
    assert features.feature_info.module_name() == ["conv2_x", "conv3_x", "conv4_x", "conv5_x"]
    assert timm.data.resolve_data_config({}, model=features)["input_size"] == (3, 224, 224)
    torch.manual_seed(0)
    ours = cnnzoo.create_model("resnet50", features_only=True, out_indices=(1, 2, 3, 4))
    image = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        maps, expected = features.eval()(image), ours.eval()(image)
    assert isinstance(maps, list) and [m.shape[-1] for m in maps] == [24, 12, 6, 3]
    assert all(torch.equal(a, b) for a, b in zip(maps, expected, strict=True))


# timm's own model tests (tests/test_models.py of pytorch-image-models) that some cnnzoo
# models cannot pass, by model, with the reason; the bridge's README has the same table.
AUX_LOGITS = (
    "in training mode it gives AuxLogits(logits, aux_logits), the main logits and a tuple "
    "of auxiliary ones, as its paper trains it; the test's torch.cat(outputs) cannot join them"
)
EXCLUDED_FROM_TIMMS_BACKWARD_TESTS = {
    "cnnzoo_googlenet": AUX_LOGITS,
    "cnnzoo_inception_v3": AUX_LOGITS,
}


NO_GLOBAL_POOL = (
    "its classifier takes a map of a fixed size (LeNet-5's F6, AlexNet's, ZFNet's and VGG's "
    "fc6 and fc7, the RTS CNN's classifier, CapsNet's DigitCaps over the 6x6 grid of primary "
    "capsules) or comes before the pooling (NIN's last mlpconv gives one map per class): "
    "after the head there is no unpooled map for reset_classifier(0, '') to give, as for "
    "timm's own VGG and the other nets of its EARLY_POOL_MODELS"
)
EXCLUDED_FROM_TIMMS_DEFAULT_CFGS_TEST = {
    f"cnnzoo_{name}": NO_GLOBAL_POOL
    for name in (
        "alexnet",
        "alexnet_owt",
        "capsnet",
        "cnn_mnist_rts",
        "lenet5",
        "lenet5_relu",
        "nin_cifar10",
        "nin_imagenet",
        "st_cnn_aff_mnist_rts",
        "vgg11",
        "vgg11_bn",
        "vgg11_lrn",
        "vgg13",
        "vgg13_bn",
        "vgg16",
        "vgg16_bn",
        "vgg16_c",
        "vgg19",
        "vgg19_bn",
        "zfnet",
    )
}


def test_timms_default_cfgs_test_excludes_exactly_the_nets_without_a_global_pool():
    """The nets timm's head test cannot take are those whose head is not global pooling then
    one classifier; each refuses `global_pool`, saying why."""
    unpooled = set()
    for name in cnnzoo.list_models():
        with torch.device("meta"):
            model = timm.create_model(f"cnnzoo_{name}")
        if not isinstance(model, cnnzoo.PooledClassifierNet):
            unpooled.add(f"cnnzoo_{name}")
            with pytest.raises(ValueError, match="does not end in a global pooling"):
                model.reset_classifier(0, "")
    assert set(EXCLUDED_FROM_TIMMS_DEFAULT_CFGS_TEST) == unpooled


def test_our_models_answer_timms_head_conventions():
    """What timm's test_model_default_cfgs asks, on one net of each head: the config names
    the first convolution and the classifier, and gives the last map's size."""
    for name, pool_size in (("cnnzoo_resnet20", (8, 8)), ("cnnzoo_densenet121", (7, 7))):
        model = timm.create_model(name).eval()
        cfg, state = model.default_cfg, model.state_dict()
        assert f"{cfg['first_conv']}.weight" in state and f"{cfg['classifier']}.weight" in state
        x = torch.randn(1, *cfg["input_size"])
        with torch.no_grad():
            assert model.forward_features(x).shape[-2:] == pool_size == cfg["pool_size"]
            unpooled = timm.create_model(name, num_classes=0, global_pool="").eval()
            assert unpooled(x).shape == (1, model.num_features, *pool_size)


def test_timms_backward_tests_exclude_exactly_the_nets_with_auxiliary_classifiers():
    """The exclusion cannot grow silently: it names the nets whose cards weigh an auxiliary
    loss, and each does give timm's test what it cannot join."""
    auxiliary = {
        f"cnnzoo_{name}" for name in cnnzoo.list_models() if model_card(name).aux_loss_weight
    }
    assert set(EXCLUDED_FROM_TIMMS_BACKWARD_TESTS) == auxiliary
    for name in EXCLUDED_FROM_TIMMS_BACKWARD_TESTS:
        with torch.device("meta"):
            model = timm.create_model(name, num_classes=42).train()
        outputs = model(torch.zeros(2, *model.default_cfg["input_size"], device="meta"))
        assert isinstance(outputs, tuple) and isinstance(outputs[1], tuple)
        with pytest.raises(TypeError):
            torch.cat(outputs)


def test_timm_cannot_script_our_models_so_its_torchscript_tests_exclude_them():
    """TorchScript compiles Python source, and the model files are written for readers (the
    card a dataclass, stages looked up by the paper's names): torch.jit.script refuses them,
    which is why timm's TorchScript tests exclude every cnnzoo model. Export goes through
    torch.jit.trace, torch.export and ONNX instead (tests/test_export.py)."""
    with pytest.raises(Exception, match="ModelCard"):
        torch.jit.script(timm.create_model("cnnzoo_resnet20").eval())


@pytest.mark.bad_input
def test_timm_options_cnnzoo_models_cannot_take_are_refused():
    with pytest.raises(ValueError, match="takes its weights from its cnnzoo card"):
        timm.create_model("cnnzoo_resnet20", pretrained_cfg_overlay={"file": "weights.pth"})
    with pytest.raises(TypeError, match=r"'drop_rate'.*its own arguments are: none"):
        timm.create_model("cnnzoo_resnet20", drop_rate=0.1)


def test_models_table_lists_timms_resnets(capsys, monkeypatch):
    from cnnzoo_classify.cli import main

    monkeypatch.setenv("COLUMNS", "300")
    assert main(["models", "timm/resnet1*", "--markdown"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = [c.strip() for c in lines[0].strip("| ").split("|")]
    assert header == ["model", "paper", "year", "input", "classes", "weights"]
    cells = [[c.strip() for c in line.strip("| ").split("|")] for line in lines[2:]]
    rows = {row[0]: dict(zip(header, row, strict=True)) for row in cells}
    assert set(rows) == set(cnnzoo.list_models("timm/resnet1*"))
    assert rows["timm/resnet18"]["weights"] == "resnet18.a1_in1k (+6)"
    assert rows["timm/resnet18"]["input"] == "3x224x224"
    assert main(["models", "timm/resnet18", "--count", "--markdown"]) == 0
    (row,) = capsys.readouterr().out.splitlines()[2:]
    assert "| 11.690M | 1.81G |" in row  # ResNet-18's 11.7M parameters, 1.8G multiply-adds


@pytest.mark.slow
def test_fit_trains_timm_resnet18_on_cifar10(shared_data, tmp_path):
    archive = shared_data / "cifar10-jpg.tar.gz"
    if not archive.is_file():
        pytest.skip(f"CIFAR-10 is not at {archive}")
    root = tmp_path / "runs"
    args = [
        "fit",
        "--model.arch=timm/resnet18",
        "--data=CIFAR10DataModule",
        f"--data.root={archive}",
        "--data.image_size=32",  # CIFAR's own size, not timm's 224
        "--data.batch_size=32",
        "--data.num_workers=0",
        "--model.optimizer.name=adamw",  # learns within the few steps a test can afford
        "--model.optimizer.lr=0.001",
        "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=60",
        "--trainer.limit_val_batches=8",
        "--trainer.log_every_n_steps=1",
        "--test_after_fit=false",
        f"--trainer.default_root_dir={root}",
    ]
    run_cnnzoo(args, tmp_path)
    checkpoint = root / "timm" / "resnet18" / "checkpoints" / "last.ckpt"
    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    assert saved["cnnzoo"]["arch"] == "timm/resnet18"
    assert "model.timm.layer4.1.conv2.weight" in saved["state_dict"]
    (metrics_file,) = (root / "timm" / "resnet18").glob("version_*/metrics.csv")
    with open(metrics_file, newline="") as file:
        metrics = list(csv.DictReader(file))
    losses = [float(row["train/loss_step"]) for row in metrics if row.get("train/loss_step")]
    assert len(losses) == 60
    assert np.mean(losses[-15:]) < np.mean(losses[:15]) - 0.05  # from about 2.35 to 2.2
    (val_error,) = [float(row["val/top1_error"]) for row in metrics if row.get("val/top1_error")]
    assert val_error < 0.85  # chance is 0.9 (0.76 measured on 256 held-out images)


@pytest.fixture(scope="module")
def coco_image(shared_data: Path):
    """A COCO128 image (000000000009, eight objects) with its boxes, at a 128-pixel side."""
    from cnnzoo_detect import CocoDataModule

    root = shared_data / "coco128"
    if not (root / "annotations" / "instances_train2017.json").is_file():
        pytest.skip(f"COCO128 is not at {root}")
    data = CocoDataModule(
        root,
        val_split="train2017",
        num_workers=0,
        empty_images="skip",
        batch_size=1,
        min_size=128,
        max_size=224,
        max_images=1,
        hflip_prob=0.0,
    )
    data.setup("fit")
    return data.num_classes, next(iter(data.train_dataloader()))


@pytest.mark.slow
def test_timm_resnet18_is_a_detection_backbone_cut_where_timm_cuts_it(coco_image):
    from cnnzoo_detect import Detector

    num_classes, (images, targets) = coco_image
    torch.manual_seed(0)
    few = {"rpn_pre_nms_top_n_train": 64, "rpn_post_nms_top_n_train": 32}
    detector = Detector("timm/resnet18", "fpn", num_classes=num_classes, faster_rcnn=few)
    model = detector.model
    # The trunk's maps are timm's own feature maps (features_only) at strides 4 to 32.
    trunk = model.backbone.body.eval()
    reference = timm.create_model("resnet18", features_only=True, out_indices=(1, 2, 3, 4))
    reference.load_state_dict(
        {
            key.removeprefix("model.timm."): value
            for key, value in trunk.state_dict().items()
            if key.startswith("model.timm.")
        }
    )
    image = images[0][None].float() / 255
    with torch.no_grad():
        ours = list(trunk(image).values())
        theirs = reference.eval()(image)
    assert [m.shape for m in ours] == [m.shape for m in theirs]
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(ours, theirs, strict=True))

    model.train()
    losses = model(detector._floats(images), targets)
    assert all(torch.isfinite(loss) for loss in losses.values())
    sum(losses.values()).backward()
    conv1 = model.backbone.body.get_submodule("model.timm.conv1").weight
    assert conv1.grad is not None and conv1.grad.abs().sum() > 0  # the cut is connected
    model.eval()
    (detection,) = detector.detect(images, targets)
    assert detection["boxes"].shape[1:] == (4,)
