"""DenseNet (Huang et al. 2017): Table 1 and Table 2 sizes, dense connectivity, bottleneck and
compression, dropout, the authors' initialisation, and equivalence with torchvision."""

from __future__ import annotations

import math

import cnnzoo
import pytest
import torch
import torchvision
from cnnzoo.complexity import count_params
from cnnzoo_densenet import (
    CIFAR_TABLE,
    IMAGENET_TABLE,
    DenseBlock,
    DenseNet,
    DenseNetConfig,
    densenet40_k12,
    densenet121,
    densenet_bc100_k12,
    from_torchvision_state_dict,
)
from torch import nn


def meta_model(name: str) -> DenseNet:
    with torch.device("meta"):
        return cnnzoo.create_model(name)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("densenet121", 7_978_856),
        ("densenet169", 14_149_480),
        ("densenet201", 20_013_928),
        ("densenet161", 28_681_000),
        ("densenet264", 33_337_704),
        # Table 2: 1.0M, 7.0M, 27.2M, 0.8M, 15.3M, 25.6M (with 10 classes).
        ("densenet40_k12", 1_019_722),
        ("densenet100_k12", 6_979_642),
        ("densenet100_k24", 27_249_082),
        ("densenet_bc100_k12", 769_162),
        ("densenet_bc250_k24", 15_324_406),
        ("densenet_bc190_k40", 25_624_430),
    ],
)
def test_parameter_counts(name, params):
    assert count_params(meta_model(name)) == params


@pytest.mark.parametrize("name", ["densenet121", "densenet169", "densenet201", "densenet161"])
def test_same_size_as_torchvision(name):
    with torch.device("meta"):
        reference = getattr(torchvision.models, name)()
    assert count_params(meta_model(name)) == count_params(reference)


@pytest.mark.parametrize(
    ("name", "growth_rate", "blocks"),
    [
        ("densenet121", 32, (6, 12, 24, 16)),
        ("densenet169", 32, (6, 12, 32, 32)),
        ("densenet201", 32, (6, 12, 48, 32)),
        ("densenet264", 32, (6, 12, 64, 48)),
        ("densenet161", 48, (6, 12, 36, 24)),
        # Table 2 by depth: (L - 4) / 3 layers per block, (L - 4) / 6 for DenseNet-BC.
        ("densenet40_k12", 12, (12, 12, 12)),
        ("densenet100_k24", 24, (32, 32, 32)),
        ("densenet_bc100_k12", 12, (16, 16, 16)),
        ("densenet_bc250_k24", 24, (41, 41, 41)),
        ("densenet_bc190_k40", 40, (31, 31, 31)),
    ],
)
def test_dense_blocks_follow_the_tables(name, growth_rate, blocks):
    model = meta_model(name)
    found = [m for m in model.features if isinstance(m, DenseBlock)]
    assert tuple(len(block) for block in found) == blocks
    config = model.config
    assert config.growth_rate == growth_rate
    # Depth: two convolutions per bottleneck layer, one per plain layer, plus the first
    # convolution, the transitions and the classifier (Table 1's names count the same way).
    # Table 1's DenseNet-264 column (6, 12, 64, 48) counts 265 such layers: its name is one
    # short, and we keep the blocks as printed.
    convs = sum(isinstance(m, nn.Conv2d) for m in model.modules())
    depth = int("".join(c for c in name.split("_k")[0] if c.isdigit()))
    assert convs + 1 == (265 if name == "densenet264" else depth)
    for block in found:
        for i, layer in enumerate(block.values()):
            # Layer ℓ sees k0 + k(ℓ-1) maps and adds k (§3 Growth rate).
            first = layer.conv1x1 if config.bottleneck else layer.conv3x3
            assert first.conv.in_channels == block.out_chans - (len(block) - i) * growth_rate
            assert layer.conv3x3.conv.out_channels == growth_rate
            if config.bottleneck:  # "each 1x1 convolution produce 4k feature-maps"
                assert layer.conv1x1.conv.out_channels == 4 * growth_rate
            else:
                assert layer.conv1x1 is None


@pytest.mark.parametrize("name", ["densenet121", "densenet40_k12", "densenet_bc100_k12"])
def test_transitions_compress(name):
    model = meta_model(name)
    theta = 0.5 if model.config.bottleneck else 1.0
    transitions = [m for n, m in model.features.named_children() if n.startswith("transition")]
    assert len(transitions) == len(model.config.block_layers) - 1
    for transition in transitions:
        assert transition.conv.out_channels == math.floor(theta * transition.conv.in_channels)
        assert transition.conv.kernel_size == (1, 1)
        assert isinstance(transition.pool, nn.AvgPool2d) and transition.pool.kernel_size == 2


def test_stems():
    """ImageNet: 7x7/2 conv of 2k maps and 3x3/2 max pool (Table 1). CIFAR: one 3x3 conv of
    16 maps, or 2k for DenseNet-BC (§3 Implementation Details)."""
    stem = meta_model("densenet161").features.stem
    assert (stem.conv.out_channels, stem.conv.kernel_size, stem.conv.stride) == (96, (7, 7), (2, 2))
    assert isinstance(stem.pool, nn.MaxPool2d)
    assert meta_model("densenet40_k12").features.stem.conv.out_channels == 16
    assert meta_model("densenet100_k24").features.stem.conv.out_channels == 16
    assert meta_model("densenet_bc250_k24").features.stem.conv.out_channels == 48
    assert len(meta_model("densenet_bc100_k12").features.stem) == 1  # no BN-ReLU-pool


def test_dense_connectivity():
    """A dense block passes its input and every layer's output on unchanged: the first maps
    of its output are its input, and each layer's k maps depend only on the maps before."""
    torch.manual_seed(0)
    block = DenseBlock(8, num_layers=3, growth_rate=4, bottleneck=True).eval()
    x = torch.randn(2, 8, 5, 5)
    with torch.no_grad():
        out = block(x)
        assert out.shape == (2, 8 + 3 * 4, 5, 5)
        torch.testing.assert_close(out[:, :8], x)
        layer2 = block["layer2"](out[:, :12])
        torch.testing.assert_close(out[:, 12:16], layer2)


def test_dropout_after_every_convolution_but_the_first():
    """§4.2: dropout 0.2 after each convolution except the first, on the data sets trained
    without augmentation; none by default."""
    assert not any(isinstance(m, nn.Dropout) for m in densenet_bc100_k12().modules())
    torch.manual_seed(0)
    model = densenet_bc100_k12(drop_rate=0.2)
    modules = list(model.modules())
    convs = [i for i, m in enumerate(modules) if isinstance(m, nn.Conv2d)]
    dropouts = [m for m in modules if isinstance(m, nn.Dropout)]
    assert len(dropouts) == len(convs) - 1 and all(d.p == 0.2 for d in dropouts)
    assert not isinstance(modules[convs[0] + 1], nn.Dropout)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert not torch.equal(model.train()(x), model(x))
        torch.testing.assert_close(model.eval()(x), model(x))
    assert (
        cnnzoo.create_model("densenet40_k12", drop_rate=0.2).config == CIFAR_TABLE["densenet40_k12"]
    )
    with pytest.raises(TypeError, match="drop_rate"):
        cnnzoo.create_model("densenet121", drop_rate=0.2)  # the paper used none on ImageNet


def test_authors_initialisation():
    torch.manual_seed(0)
    model = densenet40_k12()
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            # N(0, 2/n), n = k * k * output maps (fb.resnet.torch, as the authors' code).
            n = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
            assert module.weight.std().item() == pytest.approx(math.sqrt(2 / n), rel=0.1)
        elif isinstance(module, nn.BatchNorm2d):
            assert torch.all(module.weight == 1) and torch.all(module.bias == 0)
    assert torch.all(model.classifier.bias == 0)
    model.reset_classifier(100)
    assert torch.all(model.classifier.bias == 0) and model.classifier.out_features == 100


@pytest.mark.parametrize("name", ["densenet121", "densenet161"])  # k = 32 and k = 48
def test_loads_torchvision_weights(name):
    torch.manual_seed(1)
    reference = getattr(torchvision.models, name)(memory_efficient=False).eval()
    # Random BN statistics, so that a swapped normalisation could not pass unnoticed.
    for module in reference.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    ours = cnnzoo.create_model(name).eval()
    ours.load_state_dict(from_torchvision_state_dict(reference.state_dict()))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x))
        pre_logits = ours.forward_head(ours.forward_features(x), pre_logits=True)
        assert pre_logits.shape == (2, reference.classifier.in_features)


@pytest.mark.parametrize("name", ["densenet169", "densenet201"])
def test_torchvision_state_dicts_map_key_for_key(name):
    """The same renaming fits every depth: every tensor finds its place, shaped alike."""
    with torch.device("meta"):
        reference = getattr(torchvision.models, name)()
    ours = meta_model(name).state_dict()
    renamed = from_torchvision_state_dict(reference.state_dict())
    assert renamed.keys() == ours.keys()
    assert all(renamed[key].shape == ours[key].shape for key in ours)


def test_torchvision_weight_files_old_key_spelling():
    """torchvision's weight files spell "denselayer1.norm.1.weight" (its loader renames)."""
    value = torch.ones(3)
    old = {"features.denseblock1.denselayer1.norm.1.weight": value}
    new = {"features.denseblock1.layer1.conv1x1.norm.weight": value}
    assert from_torchvision_state_dict(old) == new
    old = {"features.denseblock2.denselayer10.conv.2.weight": value}
    assert list(from_torchvision_state_dict(old)) == [
        "features.denseblock2.layer10.conv3x3.conv.weight"
    ]


def test_from_torchvision_state_dict_rejects_other_models():
    with pytest.raises(KeyError, match="not a parameter of a torchvision DenseNet"):
        from_torchvision_state_dict({"fc.weight": torch.zeros(1)})


def test_min_input_size_is_honest():
    torch.manual_seed(0)
    model = DenseNet(
        DenseNetConfig(4, (1, 1, 1, 1), True, 0.5, imagenet_stem=True)
    ).eval()  # a small network of densenet121's shape
    model.card = densenet121.card
    size = densenet121.card.min_input_size
    with torch.no_grad():
        assert model.forward_features(torch.randn(1, 3, size, size)).shape[-2:] == (1, 1)
        with pytest.raises(RuntimeError):
            model.forward_features(torch.randn(1, 3, size - 1, size - 1))
    with pytest.raises(cnnzoo.InputShapeError, match=f"at least {size}x{size}"):
        model(torch.randn(1, 3, size - 1, size - 1))
    cifar = densenet40_k12().eval()
    with torch.no_grad():
        assert cifar(torch.randn(1, 3, 4, 4)).shape == (1, 10)
        with pytest.raises(RuntimeError):
            cifar.forward_features(torch.randn(1, 3, 3, 3))


def test_torch_export():
    torch.manual_seed(0)
    model = densenet40_k12().eval()
    x = torch.randn(1, 3, 32, 32)
    exported = torch.export.export(model, (x,))
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(x), model(x))


def test_cards():
    assert set(IMAGENET_TABLE) | set(CIFAR_TABLE) == set(cnnzoo.list_models("densenet*"))
    card = cnnzoo.model_card("densenet121")
    assert card.input_size == (3, 224, 224) and card.num_classes == 1000
    assert {(e.evaluation, e.top1, e.top5) for e in card.published_errors} == {
        ("single crop 224", 25.02, 7.71),
        ("10 crops 224", 23.61, 6.66),
    }
    cifar = cnnzoo.model_card("densenet_bc190_k40")
    assert cifar.input_size == (3, 32, 32) and cifar.num_classes == 10
    assert cifar.best_error().top1 == 3.46 and cifar.published_params == 25_600_000
