"""The model registry: listing without importing plugins, building, cards, and plugins that
are broken or clash (ARCHITECTURE.md §1)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import cnnzoo
import pytest
import torch
from cnnzoo import ModelNotFoundError, PluginError

PAPER_MODELS = {"lenet5", "lenet5_relu", "alexnet", "alexnet_owt"}

# A well-formed plugin module whose one variant has an argument of its own.
TINY_PLUGIN = """
    import torch
    from torch import nn
    import cnnzoo

    CARD = cnnzoo.ModelCard(
        paper="A tiny test network", authors="A. Tester", year=2024, url="",
        input_size=(1, 8, 8), num_classes=3,
    )

    class Tiny(cnnzoo.ClassifierNet):
        def __init__(self, num_classes=3, in_chans=1, width=4):
            super().__init__()
            self.num_classes, self.in_chans = num_classes, in_chans
            self.feature_info = [cnnzoo.FeatureInfo("conv", width, 1)]
            self.conv = nn.Conv2d(in_chans, width, 3, padding=1)
            self.fc = nn.Linear(width, num_classes)

        def forward_features(self, x):
            return self.conv(x)

        def forward_head(self, x, pre_logits=False):
            x = x.mean(dim=(2, 3))
            return x if pre_logits else self.fc(x)

    @cnnzoo.variant(CARD)
    def tinynet(num_classes=3, in_chans=1, width=4):
        return Tiny(num_classes, in_chans, width)

    def not_a_variant(num_classes=3, in_chans=1):
        return Tiny(num_classes, in_chans)
"""


def test_list_models_matches_shell_patterns():
    names = cnnzoo.list_models()
    assert names == sorted(names)
    assert set(names) >= PAPER_MODELS
    assert cnnzoo.list_models("lenet5*") == ["lenet5", "lenet5_relu"]
    assert cnnzoo.list_models("alex*") == ["alexnet", "alexnet_owt"]
    assert cnnzoo.list_models("*_relu") == ["lenet5_relu"]
    assert cnnzoo.list_models("lenet") == []  # a pattern, not a prefix search


@pytest.mark.bad_input
@pytest.mark.parametrize("lookup", [cnnzoo.create_model, cnnzoo.model_card])
def test_unknown_name_suggests_close_names(lookup):
    with pytest.raises(ModelNotFoundError) as info:
        lookup("lenet")
    message = str(info.value)
    assert "'lenet'" in message
    assert "Did you mean" in message
    assert "lenet5" in message
    assert isinstance(info.value, KeyError)  # callers that catch KeyError still work


def test_create_model_defaults_to_the_papers_setup():
    model = cnnzoo.create_model("lenet5")
    assert (model.num_classes, model.in_chans) == (10, 1)
    assert model.name == "lenet5"
    assert model.card is cnnzoo.model_card("lenet5")
    assert model(torch.zeros(2, 1, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("name", ["lenet5", "lenet5_relu"])
@pytest.mark.parametrize(("num_classes", "in_chans"), [(3, 1), (100, 3)])
def test_create_model_num_classes_and_in_chans(name, num_classes, in_chans):
    model = cnnzoo.create_model(name, num_classes=num_classes, in_chans=in_chans)
    assert (model.num_classes, model.in_chans) == (num_classes, in_chans)
    assert model(torch.zeros(2, in_chans, 32, 32)).shape == (2, num_classes)


@pytest.mark.bad_input
@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "10"])
@pytest.mark.parametrize("argument", ["num_classes", "in_chans"])
def test_bad_class_or_channel_counts_are_refused(argument, bad):
    if argument == "num_classes" and bad == 0:  # timm's "no classifier"
        assert cnnzoo.create_model("lenet5", num_classes=0).num_classes == 0
        return
    with pytest.raises(ValueError, match=f"{argument} must be a positive integer"):
        cnnzoo.create_model("lenet5", **{argument: bad})


@pytest.mark.parametrize("name", ["resnet20", "densenet40_k12", "lenet5"])
def test_num_classes_0_and_global_pool_as_in_timm(name):
    """`num_classes=0`: forward gives the classifier's input features; with
    `global_pool=""` (where the head pools globally), the last feature map."""
    torch.manual_seed(0)
    model = cnnzoo.create_model(name).eval()
    x = torch.randn(1, *cnnzoo.model_card(name).input_size)
    features = cnnzoo.create_model(name, num_classes=0)
    features.load_state_dict(model.state_dict(), strict=False)
    with torch.no_grad():
        pre_logits = model.forward_head(model.forward_features(x), pre_logits=True)
        torch.testing.assert_close(features.eval()(x), pre_logits)
        if isinstance(model, cnnzoo.PooledClassifierNet):
            unpooled = cnnzoo.create_model(name, num_classes=0, global_pool="")
            unpooled.load_state_dict(model.state_dict(), strict=False)
            torch.testing.assert_close(unpooled.eval()(x), model.forward_features(x))
            maxed = cnnzoo.create_model(name, global_pool="max")
            maxed.load_state_dict(model.state_dict())
            expected = model.get_classifier()(model.forward_features(x).amax((2, 3)))
            torch.testing.assert_close(maxed.eval()(x), expected)


@pytest.mark.bad_input
def test_global_pool_is_refused_where_the_head_does_not_pool_or_the_kind_is_unknown():
    with pytest.raises(ValueError, match="vgg11's head does not end in a global pooling"):
        cnnzoo.create_model("vgg11", global_pool="")
    with pytest.raises(ValueError, match=r"global_pool must be one of \('avg', 'max', ''\)"):
        cnnzoo.create_model("resnet20", global_pool="catavgmax")


@pytest.mark.bad_input
def test_unknown_keyword_is_refused_naming_the_accepted_ones(fake_plugins):
    with pytest.raises(TypeError, match=r"'width'.*its own arguments are: none"):
        cnnzoo.create_model("lenet5", width=2)
    fake_plugins(
        "cnnzoo-tiny",
        {"tinynet": "cnnzoo_tiny_plugin:tinynet"},
        {"cnnzoo_tiny_plugin": TINY_PLUGIN},
    )
    assert cnnzoo.create_model("tinynet", width=6).conv.out_channels == 6
    with pytest.raises(TypeError, match=r"'depth'.*its own arguments are: width"):
        cnnzoo.create_model("tinynet", depth=2)


def test_model_card_holds_the_papers_facts():
    card = cnnzoo.model_card("lenet5")
    assert card.year == 1998
    assert card.paper == "Gradient-Based Learning Applied to Document Recognition"
    assert card.input_size == (1, 32, 32)
    assert card.num_classes == 10
    assert card.published_params == 60_000
    assert card.best_error().dataset == "MNIST"
    assert card.best_error().top1 == 0.95  # percent, §III.C
    assert card.to_dict()["published_errors"][0]["top1"] == 0.95
    assert cnnzoo.model_card("alexnet").year == 2012


@pytest.mark.bad_input
def test_a_plugin_that_fails_to_import_names_its_distribution(fake_plugins):
    fake_plugins("cnnzoo-broken", {"brokennet": "cnnzoo_no_such_module:brokennet"})
    assert "brokennet" in cnnzoo.list_models()  # listing reads metadata only
    for lookup in (cnnzoo.create_model, cnnzoo.model_card):
        with pytest.raises(PluginError, match="'cnnzoo-broken'") as info:
            lookup("brokennet")
        assert "ModuleNotFoundError" in str(info.value)
        assert "cnnzoo_no_such_module" in str(info.value)
    # Every other model stays usable.
    assert cnnzoo.create_model("lenet5_relu")(torch.zeros(1, 1, 32, 32)).shape == (1, 10)


@pytest.mark.bad_input
def test_two_distributions_claiming_one_name_are_both_named(fake_plugins):
    fake_plugins("cnnzoo-lenet-fork", {"lenet5": "cnnzoo_lenet.lenet5:lenet5_relu"})
    with pytest.raises(PluginError, match="claimed by more than one distribution") as info:
        cnnzoo.create_model("lenet5")
    message = str(info.value)
    assert "cnnzoo-lenet-fork (cnnzoo_lenet.lenet5:lenet5_relu)" in message
    assert "cnnzoo-lenet (cnnzoo_lenet.lenet5:lenet5)" in message
    assert cnnzoo.list_models("lenet5") == ["lenet5"]
    assert cnnzoo.create_model("lenet5_relu").num_classes == 10  # the others still build


def test_one_distribution_seen_twice_on_sys_path_is_one_claim(fake_plugins):
    entries = {"tinynet": "cnnzoo_tiny_plugin:tinynet"}
    fake_plugins("cnnzoo-tiny", entries, {"cnnzoo_tiny_plugin": TINY_PLUGIN}, site="editable")
    fake_plugins("cnnzoo-tiny", entries, site="site-packages")
    model = cnnzoo.create_model("tinynet", num_classes=5)
    assert model.card.paper == "A tiny test network"
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 5)


@pytest.mark.bad_input
def test_a_builder_without_variant_decorator_is_refused(fake_plugins):
    fake_plugins(
        "cnnzoo-plain",
        {
            "plainnet": "cnnzoo_plain_plugin:not_a_variant",
            "notcallable": "cnnzoo_plain_plugin:CARD",
        },
        {"cnnzoo_plain_plugin": TINY_PLUGIN},
    )
    for name in ("plainnet", "notcallable"):
        with pytest.raises(
            PluginError, match=r"not a builder decorated with cnnzoo\.variant"
        ) as info:
            cnnzoo.create_model(name)
        assert "'cnnzoo-plain'" in str(info.value)


def test_listing_imports_no_plugin_and_a_card_imports_only_its_own():
    code = textwrap.dedent(
        """
        import sys
        import cnnzoo

        assert {"lenet5", "alexnet"} <= set(cnnzoo.list_models())
        loaded = [m for m in ("cnnzoo_lenet", "cnnzoo_alexnet", "lightning") if m in sys.modules]
        assert not loaded, f"list_models imported {loaded}"
        cnnzoo.model_card("lenet5")
        assert "cnnzoo_lenet" in sys.modules
        assert "cnnzoo_alexnet" not in sys.modules
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
