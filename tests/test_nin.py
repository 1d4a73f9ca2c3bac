"""Network in Network (2013): mlpconv layers as in the authors' released models, global
average pooling in place of fully-connected layers, and the release's initialisation."""

from __future__ import annotations

import cnnzoo
import pytest
import torch
from cnnzoo.complexity import complexity
from cnnzoo_nin import NIN, MlpConv, nin_cifar10
from torch import nn


@pytest.fixture(scope="module")
def cifar_net() -> NIN:
    torch.manual_seed(0)
    return nin_cifar10().eval()


@pytest.mark.parametrize(
    ("name", "params"), [("nin_cifar10", 966_986), ("nin_imagenet", 7_595_176)]
)
def test_parameter_counts(name, params):
    assert complexity(name).params == params


def mlpconv_shapes(model: NIN) -> list[tuple[int, ...]]:
    return [
        (
            block.conv.kernel_size[0],
            block.conv.stride[0],
            *(c.out_channels for c in (block.conv, block.cccp1, block.cccp2)),
        )
        for block in model.features
        if isinstance(block, MlpConv)
    ]


def test_cifar10_layers(cifar_net):
    assert mlpconv_shapes(cifar_net) == [
        (5, 1, 192, 160, 96),
        (5, 1, 192, 192, 192),
        (3, 1, 192, 192, 10),
    ]
    assert [type(m).__name__ for m in cifar_net.features] == [
        "MlpConv", "MaxPool2d", "Dropout", "MlpConv", "AvgPool2d", "Dropout", "MlpConv",
    ]  # fmt: skip
    assert not any(isinstance(m, nn.Linear) for m in cifar_net.modules())  # no FC layer


def test_imagenet_layers():
    with torch.device("meta"):
        model = cnnzoo.create_model("nin_imagenet")
    assert mlpconv_shapes(model) == [
        (11, 4, 96, 96, 96),
        (5, 1, 256, 256, 256),
        (3, 1, 384, 384, 384),
        (3, 1, 1024, 1024, 1000),
    ]
    assert [name for name, m in model.features.named_children() if isinstance(m, nn.Dropout)] == [
        "dropout3"
    ]
    maps = []
    x = torch.zeros(1, 3, 224, 224, device="meta")
    for module in model.features:
        x = module(x)
        maps.append(x.shape[-1])
    assert maps == [54, 27, 27, 13, 13, 6, 6, 6]  # Caffe's rounded-up pooling


def test_global_average_pooling_of_class_maps(cifar_net):
    torch.manual_seed(1)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        maps = cifar_net.forward_features(x)
        assert maps.shape == (2, 10, 8, 8)  # one confidence map per class (§3.2)
        logits = cifar_net(x)
        torch.testing.assert_close(logits, maps.mean(dim=(2, 3)))
        torch.testing.assert_close(cifar_net.forward_head(maps, pre_logits=True), logits)
    assert torch.all(logits >= 0)  # the release puts a ReLU on the class maps too


def test_caffe_average_pooling_at_the_border():
    """The last window of the CIFAR model's 3x3/2 average pool over 16x16 covers only 2x2
    pixels, and Caffe divides by 4 there, not 9."""
    pool = nin_cifar10().features.pool2
    x = torch.arange(256.0).view(1, 1, 16, 16)
    assert pool(x).shape[-1] == 8
    assert pool(x)[0, 0, 7, 7].item() == x[0, 0, 14:, 14:].mean().item()


def test_released_initialisation(cifar_net):
    for name, param in cifar_net.named_parameters():
        if name.endswith("bias"):
            assert torch.all(param == 0), name
        elif param.numel() > 1000:
            assert param.std().item() == pytest.approx(0.05, rel=0.1), name
    imagenet = cnnzoo.create_model("nin_imagenet", num_classes=100)
    stds = {
        name: round(param.std().item(), 3)
        for name, param in imagenet.named_parameters()
        if name.endswith("weight")
    }
    assert stds["features.mlpconv1.conv.weight"] == pytest.approx(0.01, abs=1e-3)
    assert stds["features.mlpconv3.conv.weight"] == pytest.approx(0.01, abs=1e-3)
    assert stds["features.mlpconv2.cccp1.weight"] == pytest.approx(0.05, abs=2e-3)
    assert stds["features.mlpconv4.cccp2.weight"] == pytest.approx(0.01, abs=1e-3)


def test_reset_classifier_replaces_the_last_1x1_convolution():
    model = nin_cifar10()
    kept = model.features.mlpconv3.cccp1.weight
    model.reset_classifier(100)
    assert model.features.mlpconv3.cccp2.out_channels == 100
    assert model.features.mlpconv3.cccp1.weight is kept
    assert model.feature_info[-1].channels == 100
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 100)


def test_min_input_size_is_honest(cifar_net):
    size = cifar_net.card.min_input_size
    with torch.no_grad():
        assert cifar_net(torch.randn(1, 3, size, size)).shape == (1, 10)
        with pytest.raises(RuntimeError):
            cifar_net.forward_features(torch.randn(1, 3, size - 1, size - 1))


def test_torch_export(cifar_net):
    x = torch.randn(1, 3, 32, 32)
    exported = torch.export.export(cifar_net, (x,))
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(x), cifar_net(x))


def test_cards():
    card = cnnzoo.model_card("nin_cifar10")
    assert {(e.top1, e.source.split(":")[0]) for e in card.published_errors} == {
        (8.81, "Table 1"),
        (10.41, "Table 1"),
    }
    assert card.input_size == (3, 32, 32) and card.num_classes == 10
