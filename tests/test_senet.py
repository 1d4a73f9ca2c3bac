"""Squeeze-and-Excitation networks (Hu et al. 2018): the SE block's equations, where it sits
in a residual block (Fig. 3), Table 1's layouts, parameter counts, and equivalence with timm's
port of the authors' Caffe models."""

from __future__ import annotations

import cnnzoo
import pytest
import timm
import torch
from cnnzoo.complexity import count_params, matches_published
from cnnzoo_resnet import ResNet
from cnnzoo_senet import (
    SE_TABLE,
    SEBasicBlock,
    SEBottleneck,
    SEInceptionModule,
    SEResNeXtBottleneck,
    SqueezeExcitation,
    from_timm_state_dict,
    se_bn_inception,
    se_resnet18,
    se_resnet50,
)
from torch import nn


def meta_model(name: str, **kwargs) -> ResNet:
    with torch.device("meta"):
        return cnnzoo.create_model(name, **kwargs)


def timm_legacy(name: str, device: str = "cpu") -> nn.Module:
    # legacy_seresnet50 etc.: the Caffe layout of the authors' release (random weights here).
    with torch.device(device):
        return timm.create_model("legacy_se" + name.removeprefix("se_"))


def se_blocks(model: nn.Module) -> list[SqueezeExcitation]:
    return [m for m in model.modules() if isinstance(m, SqueezeExcitation)]


def test_squeeze_and_excitation_equations():
    """Eq. 2-4: z = mean over H x W; s = sigmoid(W2 relu(W1 z)); output u_c * s_c."""
    torch.manual_seed(0)
    se = SqueezeExcitation(32, reduction=4)
    assert (se.fc1.in_features, se.fc1.out_features, se.fc2.out_features) == (32, 8, 32)
    u = torch.randn(2, 32, 5, 7)
    z = u.sum(dim=(2, 3)) / (5 * 7)  # squeeze
    hidden = torch.relu(z @ se.fc1.weight.T + se.fc1.bias)  # δ(W1 z)
    s = torch.sigmoid(hidden @ se.fc2.weight.T + se.fc2.bias)  # σ(W2 δ(W1 z))
    with torch.no_grad():
        torch.testing.assert_close(se(u), u * s[:, :, None, None])
    with pytest.raises(ValueError, match="reduction ratio"):
        SqueezeExcitation(8, reduction=16)


@pytest.mark.parametrize("block", [SEBasicBlock, SEBottleneck, SEResNeXtBottleneck])
def test_se_recalibrates_the_residual_before_the_sum(block):
    """Fig. 3: x + SE(F(x)), then ReLU. With the excitation shut (s = 0) the block gives
    relu(x): the SE scales the residual branch only, not the identity nor the sum."""
    torch.manual_seed(0)
    unit = block(256 // block.expansion * block.expansion, 256 // block.expansion).eval()
    x = torch.randn(2, unit.se.fc2.out_features, 6, 6)
    with torch.no_grad():
        assert not torch.allclose(unit(x), torch.relu(x))
        unit.se.fc2.bias.fill_(-1e4)  # sigmoid -> 0
        torch.testing.assert_close(unit(x), torch.relu(x))


@pytest.mark.parametrize(
    ("name", "block", "layers"),
    [
        ("se_resnet18", SEBasicBlock, (2, 2, 2, 2)),
        ("se_resnet34", SEBasicBlock, (3, 4, 6, 3)),
        ("se_resnet50", SEBottleneck, (3, 4, 6, 3)),
        ("se_resnet101", SEBottleneck, (3, 4, 23, 3)),
        ("se_resnet152", SEBottleneck, (3, 8, 36, 3)),
        ("se_resnext50_32x4d", SEResNeXtBottleneck, (3, 4, 6, 3)),
    ],
)
def test_one_se_block_per_residual_block(name, block, layers):
    model = meta_model(name)
    stages = [model.get_submodule(stage) for stage in model.stage_names]
    assert tuple(len(stage) for stage in stages) == layers
    assert all(isinstance(unit, block) for stage in stages for unit in stage)
    assert len(se_blocks(model)) == sum(layers)
    # Table 1: "fc, [16, 256]" ... "fc, [128, 2048]" (r = 16) on the bottleneck nets.
    for stage, width in zip(stages, (64, 128, 256, 512), strict=True):
        out = width * block.expansion
        assert (stage[0].se.fc1.in_features, stage[0].se.fc1.out_features) == (out, out // 16)


def test_se_resnext_layout():
    """Table 1, right column: [1x1, 128; 3x3, 128, C = 32; 1x1, 256] in conv2_x, doubling
    per stage; the stride on the grouped 3x3."""
    model = meta_model("se_resnext50_32x4d")
    for stage, inner in zip(model.stage_names, (128, 256, 512, 1024), strict=True):
        first = model.get_submodule(stage)[0]
        assert first.conv2.in_channels == first.conv2.out_channels == inner
        assert first.conv2.groups == 32 and first.conv3.out_channels == inner * 2
        stride = 1 if stage == "conv2_x" else 2
        assert (first.conv1.stride, first.conv2.stride) == ((1, 1), (stride, stride))


def test_se_resnet_strides_on_the_first_1x1():
    """The authors' Caffe SE-ResNets (like He et al.'s ResNets) stride on conv1 of the block."""
    model = meta_model("se_resnet50")
    first = model.conv3_x[0]
    assert (first.conv1.stride, first.conv2.stride) == ((2, 2), (1, 1))
    assert model.maxpool.ceil_mode and model.maxpool.padding == 0


def test_parameters():
    # Table 5 (and §4): SE-ResNet-50 with r = 16 has 28.1M parameters.
    assert count_params(meta_model("se_resnet50")) == 28_088_024
    assert matches_published(28_088_024, 28_100_000)
    for name in SE_TABLE:
        assert count_params(meta_model(name)) == count_params(timm_legacy(name, "meta")), name
    # The SE blocks add 2C^2/r + C/r + C each: ~2.5M on ResNet-50 (§4).
    extra = count_params(meta_model("se_resnet50")) - count_params(meta_model("resnet50"))
    assert 2_400_000 < extra < 2_600_000
    # r is the paper's own knob (Table 5): r = 8 widens every SE block's hidden layer.
    narrow = se_blocks(meta_model("se_resnet50", reduction=8))
    assert narrow[0].fc1.out_features == 256 // 8


def paper_basic_block_forward(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """timm's legacy SEResNetBlock without the ReLU it puts between bn2 and the SE block;
    Fig. 3 (and timm's own bottlenecks) recalibrate the residual as it leaves its last BN."""
    out = block.relu(block.bn1(block.conv1(x)))
    out = block.bn2(block.conv2(out))
    shortcut = x if block.downsample is None else block.downsample(x)
    return block.relu(block.se_module(out) + shortcut)


@pytest.mark.parametrize("name", ["se_resnet18", "se_resnet50", "se_resnext50_32x4d"])
def test_loads_timm_legacy_weights(name):
    torch.manual_seed(1)
    reference = timm_legacy(name).eval()
    for module in reference.modules():  # random BN statistics, so that any swap shows
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
        if type(module).__name__ == "SEResNetBlock":  # 18 and 34 layers only
            module.forward = paper_basic_block_forward.__get__(module)
    ours = cnnzoo.create_model(name).eval()
    ours.load_state_dict(from_timm_state_dict(reference.state_dict()))
    # 65 pixels: odd map sizes, where a padded and a ceil-mode max pool would differ.
    x = torch.randn(2, 3, 65, 65)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x))


def test_from_timm_state_dict_rejects_other_models():
    with pytest.raises(KeyError, match="legacy SE-ResNet"):
        from_timm_state_dict({"conv1.weight": torch.zeros(1)})


def test_initialisation():
    torch.manual_seed(0)
    model = se_resnet18()
    for se in se_blocks(model):
        for fc in (se.fc1, se.fc2):
            assert torch.all(fc.bias == 0)
            assert fc.weight.std().item() == pytest.approx((2 / fc.in_features) ** 0.5, rel=0.25)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            assert torch.all(module.weight == 1) and torch.all(module.bias == 0)


def test_se_bn_inception_recalibrates_every_inception_module():
    """Fig. 2: an SE block on the concatenated output of each of the ten Inception modules."""
    model = meta_model("se_bn_inception")
    modules = [m for m in model.features if isinstance(m, SEInceptionModule)]
    assert len(modules) == len(se_blocks(model)) == 10
    for module in modules:
        assert module.se.fc1.in_features == module.inception.out_chans
        assert module.se.fc1.out_features == module.inception.out_chans // 16
    extra = count_params(model) - count_params(meta_model("bn_inception"))
    assert extra == sum(count_params(se) for se in se_blocks(model))
    torch.manual_seed(0)
    module = se_bn_inception().features.inception3a.eval()
    x = torch.randn(1, 192, 9, 9)
    with torch.no_grad():
        module.se.fc2.bias.fill_(-1e4)  # excitation shut: the whole module output is scaled to 0
        assert module.inception(x).abs().sum() > 0
        torch.testing.assert_close(module(x), torch.zeros_like(module(x)))


def test_torch_export():
    torch.manual_seed(0)
    model = se_resnet18().eval()
    x = torch.randn(1, 3, 64, 64)
    exported = torch.export.export(model, (x,))
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(x), model(x))


def test_cards():
    card = se_resnet50.card
    assert card.published_macs == 3_870_000_000 and card.published_params == 28_100_000
    assert (card.best_error().top1, card.best_error().top5) == (23.29, 6.62)
    assert cnnzoo.model_card("se_resnext50_32x4d").best_error().top1 == 21.10
    assert set(cnnzoo.list_models("se_*")) == {*SE_TABLE, "se_bn_inception"}
    assert cnnzoo.model_card("se_bn_inception").best_error().top1 == 24.23
