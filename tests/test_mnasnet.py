"""MnasNet (2019): Fig. 7(a) as built, squeeze-and-excitation, the release's
initialisation, and equivalence with timm's MnasNet-A1 and torchvision's MnasNet-B1."""

from __future__ import annotations

import math

import cnnzoo
import pytest
import timm
import torch
import torchvision
from cnnzoo.complexity import complexity
from cnnzoo_mnasnet import (
    MNASNET_B1,
    MBConv,
    MnasNet,
    SqueezeExcitation,
    from_timm_state_dict,
    from_torchvision_state_dict,
    mnasnet_a1,
)
from torch import nn


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("mnasnet_a1", 3_887_038),
        ("mnasnet_b1", 4_383_312),
        ("mnasnet_b1_050", 2_218_512),
        ("mnasnet_b1_075", 3_170_208),
        ("mnasnet_b1_130", 6_282_256),
    ],
)
def test_exact_parameter_counts(name, params):
    assert complexity(name).params == params


def test_a1_multiply_adds():
    assert complexity("mnasnet_a1").macs == 311_579_072  # Table 1: 312M


def describe(model: MnasNet) -> list[tuple]:
    """Each block as Fig. 7 writes it: (MBConv expansion, kernel, SE, layers, channels,
    stride of its first layer), read from the built layers."""
    rows = []
    for index in range(1, 7):
        block = model.features.get_submodule(f"block{index}")
        first: MBConv = block[0]
        rows.append(
            (
                first.depthwise.conv.in_channels // first.expand.conv.in_channels,
                first.depthwise.conv.kernel_size[0],
                isinstance(first.se, SqueezeExcitation),
                len(block),
                first.project.conv.out_channels,
                first.depthwise.conv.stride[0],
            )
        )
    return rows


def test_figure_7a():
    with torch.device("meta"):
        model = mnasnet_a1()
    assert model.features.conv1.conv.out_channels == 32
    assert model.features.sepconv.pointwise.conv.out_channels == 16
    assert describe(model) == [
        (6, 3, False, 2, 24, 2),  # MBConv6 (k3x3) x2
        (3, 5, True, 3, 40, 2),  # MBConv3 (k5x5), SE x3
        (6, 3, False, 4, 80, 2),  # MBConv6 (k3x3) x4
        (6, 3, True, 2, 112, 1),  # MBConv6 (k3x3), SE x2
        (6, 5, True, 3, 160, 2),  # MBConv6 (k5x5), SE x3
        (6, 3, False, 1, 320, 1),  # MBConv6 (k3x3) x1
    ]
    # ReLU, not ReLU6 or swish, and no ReLU after the projections or the SepConv's 1x1.
    assert not any(isinstance(m, nn.ReLU6 | nn.SiLU | nn.Hardswish) for m in model.modules())
    assert not any(isinstance(m, nn.ReLU) for m in model.features.sepconv.pointwise)
    shortcuts = [m.use_shortcut for m in model.modules() if isinstance(m, MBConv)]
    # No shortcut in each block's first layer, nor where the width changes at stride 1.
    first_layers = [0, 2, 5, 9, 11, 14]
    assert shortcuts == [i not in first_layers for i in range(15)]


def test_squeeze_excitation():
    with torch.device("meta"):
        model = mnasnet_a1()
    block = model.features.block2[0]  # 24 -> 40 channels, expanded to 72
    assert (block.se.reduce.in_channels, block.se.reduce.out_channels) == (72, 6)  # 24 / 4
    se = SqueezeExcitation(8, 2).eval()
    x = torch.rand(2, 8, 5, 5) + 0.1
    with torch.no_grad():
        gate = se(x) / x
    # One weight per channel, between 0 and 1, the same at every position.
    assert torch.all((gate > 0) & (gate < 1))
    torch.testing.assert_close(gate, gate[..., :1, :1].expand_as(gate))


def test_width_multiplier_keeps_the_head():
    with torch.device("meta"):
        small = cnnzoo.create_model("mnasnet_b1_050")
    assert small.features.conv1.conv.out_channels == 16
    assert small.features.block6[0].project.conv.out_channels == 160
    assert small.num_features == 1280


def test_release_initialisation():
    model = mnasnet_a1()
    conv = model.features.block3[1].expand.conv  # 80 -> 480, 1x1
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / 480), rel=0.05)
    depthwise = model.features.block5[1].depthwise.conv  # 960 channels, 5x5, fan-out 25
    assert depthwise.weight.std().item() == pytest.approx(math.sqrt(2 / 25), rel=0.05)
    assert model.fc.weight.abs().max() <= 1 / math.sqrt(1000)
    assert model.features.conv1.bn.momentum == 0.01


def test_a1_equals_timm_semnasnet():
    torch.manual_seed(0)
    reference = timm.create_model("semnasnet_100").eval()
    model = mnasnet_a1().eval()
    model.load_state_dict(from_timm_state_dict(reference.state_dict()))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x))


def test_b1_equals_timm_mnasnet():
    torch.manual_seed(0)
    reference = timm.create_model("mnasnet_100").eval()
    model = cnnzoo.create_model("mnasnet_b1").eval()
    model.load_state_dict(from_timm_state_dict(reference.state_dict()))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x))


@pytest.mark.parametrize(
    ("width", "torchvision_name"),
    [(1.0, "mnasnet1_0"), (0.5, "mnasnet0_5"), (1.3, "mnasnet1_3")],
)
def test_b1_equals_torchvision(width, torchvision_name):
    torch.manual_seed(1)
    reference = getattr(torchvision.models, torchvision_name)().eval()
    model = MnasNet(MNASNET_B1, width).eval()
    model.load_state_dict(from_torchvision_state_dict(reference.state_dict()))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x))


def test_state_dict_mappings_reject_other_models():
    with pytest.raises(KeyError, match="torchvision's mnasnet"):
        from_torchvision_state_dict({"features.0.weight": torch.zeros(1)})
    with pytest.raises(KeyError, match="timm's semnasnet"):
        from_timm_state_dict({"layer1.0.conv1.weight": torch.zeros(1)})


def test_torch_export():
    model = mnasnet_a1().eval()
    x = torch.randn(1, 3, 96, 96)
    exported = torch.export.export(model, (x,))
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(x), model(x))


def test_cards():
    card = cnnzoo.model_card("mnasnet_a1")
    assert (card.published_params, card.published_macs) == (3_900_000, 312_000_000)
    assert (card.published_errors[0].top1, card.published_errors[0].top5) == (24.8, 7.5)
    assert "torchvision" in cnnzoo.model_card("mnasnet_b1").params_source
