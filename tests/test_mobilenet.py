"""MobileNet-v1 (2017) and MobileNet-v2 (2018): Table 1 and Table 2 as built, the width and
resolution multipliers against Tables 6 and 7, the blocks, the initialisation, and
equivalence with timm's and torchvision's networks."""

from __future__ import annotations

import cnnzoo
import pytest
import timm
import torch
import torchvision
from cnnzoo.complexity import complexity, count_macs
from cnnzoo_mobilenet import (
    DepthwiseSeparableConv,
    InvertedResidual,
    MobileNetV2,
    from_timm_state_dict,
    from_torchvision_state_dict,
    mobilenet_v1,
)
from torch import nn


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("mobilenet_v1", 4_231_976),
        ("mobilenet_v1_075", 2_585_560),
        ("mobilenet_v1_050", 1_331_592),
        ("mobilenet_v1_025", 470_072),
        ("mobilenet_v2", 3_504_872),
        ("mobilenet_v2_140", 6_108_776),
        ("mobilenet_v2_075", 2_636_424),
        ("mobilenet_v2_050", 1_968_680),
        ("mobilenet_v2_035", 1_677_128),
    ],
)
def test_exact_parameter_counts(name, params):
    assert complexity(name).params == params


# Table 7: 1.0 MobileNet at the resolution multipliers ρ (input 224, 192, 160, 128).
TABLE_7_MULT_ADDS = {224: 569, 192: 418, 160: 290, 128: 186}  # millions


@pytest.mark.parametrize(("size", "mult_adds"), TABLE_7_MULT_ADDS.items())
def test_resolution_multiplier_is_the_input_size(size, mult_adds):
    """One model takes all four of Table 7's sizes; its multiply-adds are Table 7's (within
    one million: 290.7M at 160 is printed 290M)."""
    ours = complexity("mobilenet_v1", (3, size, size))
    assert ours.params == 4_231_976  # ρ leaves the parameters alone (Table 7: 4.2M each)
    assert abs(ours.macs - mult_adds * 1_000_000) < 1_000_000, ours.macs


# Table 6: width multipliers α at 224: (Mult-Adds, parameters), in millions.
TABLE_6 = {
    "mobilenet_v1": (569, 4.2),
    "mobilenet_v1_075": (325, 2.6),
    "mobilenet_v1_050": (149, 1.3),
    "mobilenet_v1_025": (41, 0.5),
}


@pytest.mark.parametrize(("name", "figures"), TABLE_6.items())
def test_width_multiplier_rows_of_table_6(name, figures):
    mult_adds, params = figures
    ours = complexity(name)
    assert round(ours.macs / 1e6) == mult_adds
    assert round(ours.params / 1e6, 1) == params


def on_meta(name: str) -> cnnzoo.ClassifierNet:
    """A model for structure checks only, built without memory or initialisation cost."""
    with torch.device("meta"):
        return cnnzoo.create_model(name)


def test_table_1_layout():
    model = on_meta("mobilenet_v1")
    separable = [m for m in model.features if isinstance(m, DepthwiseSeparableConv)]
    assert len(separable) == 13
    strides = [m.depthwise.stride[0] for m in separable]
    # Stride 2 in the 2nd, 4th, 6th and 12th; 1 in the last, whatever Table 1 prints.
    assert [i for i, s in enumerate(strides, start=1) if s == 2] == [2, 4, 6, 12]
    assert [m.pointwise.out_channels for m in separable] == [
        64, 128, 128, 256, 256, *[512] * 6, 1024, 1024
    ]  # fmt: skip
    for m in separable:
        assert m.depthwise.groups == m.depthwise.in_channels == m.depthwise.out_channels
        assert m.pointwise.kernel_size == (1, 1)
    # Fig. 3: BN and ReLU (not ReLU6) after every convolution.
    assert not any(isinstance(m, nn.ReLU6) for m in model.modules())
    assert sum(isinstance(m, nn.ReLU) for m in model.modules()) == 27
    features = model.eval().forward_features(torch.zeros(1, 3, 224, 224, device="meta"))
    assert features.shape == (1, 1024, 7, 7)


def test_width_multiplier_thins_every_layer():
    thin, full = on_meta("mobilenet_v1_025"), on_meta("mobilenet_v1")
    for a, b in zip(thin.modules(), full.modules(), strict=True):
        if isinstance(a, nn.Conv2d):
            assert b.out_channels == 4 * a.out_channels
            assert a.in_channels in (3, b.in_channels // 4)


def test_depthwise_separable_cost_is_equation_5():
    """D_K²·M·D_F² + M·N·D_F² multiply-adds (Eq. 5)."""
    layer = DepthwiseSeparableConv(32, 64, stride=1)
    kernel, m, n, size = 3, 32, 64, 14
    assert count_macs(layer, (m, size, size)) == kernel**2 * m * size**2 + m * n * size**2


def test_v1_initialisation_is_tf_slims():
    model = mobilenet_v1()
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            weight = module.weight
            assert weight.abs().max() <= 0.18  # truncated at two standard deviations
            if weight.numel() > 10_000:
                assert weight.std().item() == pytest.approx(0.09 * 0.88, rel=0.05)


def _relu_to_relu6(model: nn.Module) -> None:
    for module in model.modules():
        for name, child in module.named_children():
            if type(child) is nn.ReLU:
                setattr(module, name, nn.ReLU6(inplace=True))


def test_timm_mobilenetv1_differs_only_by_relu6():
    """timm's mobilenetv1_100 has our layers and weights but ReLU6 where the paper has ReLU:
    the same after swapping the activation, different as the paper builds it."""
    torch.manual_seed(0)
    reference = timm.create_model("mobilenetv1_100").eval()
    model = mobilenet_v1().eval()
    model.load_state_dict(from_timm_state_dict(reference.state_dict()))
    x = torch.randn(2, 3, 64, 64) * 10  # large enough for activations above 6
    with torch.no_grad():
        expected = reference(x)
        assert not torch.allclose(model(x), expected, atol=1e-3)
        _relu_to_relu6(model)
        torch.testing.assert_close(model(x), expected)


def test_v2_inverted_residuals():
    model = on_meta("mobilenet_v2")
    blocks = [m for m in model.modules() if isinstance(m, InvertedResidual)]
    assert len(blocks) == 17  # Table 2: 1 + 2 + 3 + 4 + 3 + 3 + 1
    assert sum(b.use_shortcut for b in blocks) == 10  # all but each row's first
    for block in blocks:
        assert not any(isinstance(m, nn.ReLU6 | nn.ReLU) for m in block.project.modules())
        hidden = block.depthwise.conv.in_channels
        assert block.depthwise.conv.groups == hidden
        inputs = block.expand.conv.in_channels if hasattr(block.expand, "conv") else hidden
        assert hidden == inputs * (6 if hasattr(block.expand, "conv") else 1)
    # Table 2's first bottleneck has t = 1 and no expansion layer.
    assert isinstance(blocks[0].expand, nn.Identity)
    # The shortcut is an addition: zeroing the block's last BN leaves the input.
    block = InvertedResidual(24, 24, stride=1, expansion=6).eval()  # as row 2's second
    nn.init.zeros_(block.project.bn.weight)
    nn.init.zeros_(block.project.bn.bias)
    x = torch.randn(1, 24, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(block(x), x)


def test_v2_width_multiplier_keeps_the_last_layer():
    assert on_meta("mobilenet_v2_035").features.conv_last.conv.out_channels == 1280
    assert on_meta("mobilenet_v2_140").features.conv_last.conv.out_channels == 1792


@pytest.mark.parametrize("width", [1.0, 1.4, 0.35])
def test_v2_equals_torchvision(width):
    torch.manual_seed(1)
    reference = torchvision.models.mobilenet_v2(width_mult=width).eval()
    model = MobileNetV2(width).eval()
    model.load_state_dict(from_torchvision_state_dict(reference.state_dict()))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x))


def test_from_torchvision_state_dict_rejects_other_models():
    with pytest.raises(KeyError, match="mobilenet_v2"):
        from_torchvision_state_dict({"fc.weight": torch.zeros(1)})
    with pytest.raises(KeyError, match="mobilenetv1_100"):
        from_timm_state_dict({"layer1.0.conv1.weight": torch.zeros(1)})


@pytest.mark.parametrize("name", ["mobilenet_v1_025", "mobilenet_v2_035"])
def test_torch_export(name):
    model = cnnzoo.create_model(name).eval()
    x = torch.randn(1, 3, 96, 96)
    exported = torch.export.export(model, (x,))
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(x), model(x))


def test_cards():
    card = cnnzoo.model_card("mobilenet_v1")
    assert card.published_errors[0].top1 == pytest.approx(29.4)  # 70.6% accuracy
    assert cnnzoo.model_card("mobilenet_v1_025").published_errors[0].top1 == pytest.approx(49.4)
    assert cnnzoo.model_card("mobilenet_v2").published_errors[0].top1 == pytest.approx(28.0)
    assert cnnzoo.model_card("mobilenet_v2_140").published_macs == 585_000_000
