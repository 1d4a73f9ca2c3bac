"""ResNet (He et al. 2015) and pre-activation ResNet (He et al. 2016): the papers' tables as
structure, shortcut options A/B/C, where the stride sits, plain nets, pre-activation units,
initialisation, equivalence with torchvision, and export."""

from __future__ import annotations

import functools

import cnnzoo
import pytest
import torch
import torch.nn.functional as F
import torchvision
from cnnzoo.complexity import count_params
from cnnzoo_resnet import (
    TABLE_1,
    BasicBlock,
    Bottleneck,
    PlainBlock,
    PreActBasicBlock,
    PreActBottleneck,
    PreActResNet,
    Projection,
    ResNet,
    ZeroPadIdentity,
    cifar,
    from_torchvision_state_dict,
    preact,
)
from torch import nn


@functools.cache
def build_on_meta(name: str) -> cnnzoo.ClassifierNet:
    """A variant on the meta device, built once per session (the tests only read it)."""
    with torch.device("meta"):
        return cnnzoo.create_model(name)


def weighted_layers(model: nn.Module) -> int:
    """Layers as the papers count depth: convolutions and fully-connected layers, not the
    projection shortcuts."""
    return sum(
        isinstance(module, nn.Conv2d | nn.Linear) and "shortcut" not in name
        for name, module in model.named_modules()
    )


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("resnet18", 11_689_512),  # torchvision's resnet18
        ("resnet18_a", 11_515_688),
        ("plain18", 11_515_688),  # option A adds no parameter (§4.1)
        ("resnet34", 21_797_672),
        ("resnet34_a", 21_623_848),
        ("plain34", 21_623_848),
        ("resnet34_c", 22_716_840),
        ("resnet50", 25_557_032),
        ("resnet50_v1_5", 25_557_032),  # moving the stride changes no count
        ("resnet101", 44_549_160),
        ("resnet152", 60_192_808),
        ("resnet20", 269_722),  # Table 6: 0.27M
        ("plain20", 269_722),
        ("resnet56", 853_018),  # 0.85M
        ("resnet110", 1_727_962),  # 1.7M
        ("resnet1202", 19_421_274),  # 19.4M
        ("preact_resnet110", 1_727_962),
        ("preact_resnet164", 1_703_258),
        ("preact_resnet1001", 10_327_706),
        ("preact_resnet50", 25_549_352),  # timm's resnetv2_50
        ("preact_resnet200", 64_666_152),
    ],
)
def test_exact_parameter_counts(name, params):
    assert count_params(build_on_meta(name)) == params


def test_preact_resnet1001_without_batchnorm_is_the_papers_10_2m():
    model = build_on_meta("preact_resnet1001")
    convs_and_fc = sum(
        p.numel()
        for module in model.modules()
        if isinstance(module, nn.Conv2d | nn.Linear)
        for p in module.parameters()
    )
    assert convs_and_fc == 10_178_490  # rounds to Table 4's 10.2M; with BN 10,327,706


def test_torchvision_counts_agree():
    for depth in (18, 34, 50):
        ours = build_on_meta(f"resnet{depth}")
        with torch.device("meta"):
            reference = getattr(torchvision.models, f"resnet{depth}")()
        assert count_params(ours) == count_params(reference)


@pytest.mark.parametrize(
    "name",
    [
        "resnet18",
        "resnet34",
        "resnet50",
        "resnet101",
        "resnet152",
        "plain18",
        "plain34",
        "resnet20",
        "resnet56",
        "resnet110",
        "resnet1202",
        "preact_resnet110",
        "preact_resnet164",
        "preact_resnet1001",
        "preact_resnet200",
    ],
)
def test_depth_is_the_number_of_weighted_layers(name):
    depth = int("".join(ch for ch in name.split("_")[-1] if ch.isdigit()))
    assert weighted_layers(build_on_meta(name)) == depth


@pytest.mark.parametrize("depth", sorted(TABLE_1))
def test_table_1_blocks_per_stage(depth):
    block, layers = TABLE_1[depth]
    model = build_on_meta(f"resnet{depth}")
    stages = [model.get_submodule(f"conv{i}_x") for i in (2, 3, 4, 5)]
    assert tuple(len(stage) for stage in stages) == layers
    assert all(type(unit) is block for stage in stages for unit in stage)
    widths = [stage[0].conv1.out_channels for stage in stages]
    assert widths == [64, 128, 256, 512]
    stem = model.conv1.conv
    assert (stem.kernel_size, stem.stride, stem.out_channels) == ((7, 7), (2, 2), 64)


def test_cifar_nets_follow_section_4_2():
    model = build_on_meta("resnet56")
    assert model.conv1.conv.kernel_size == (3, 3) and model.conv1.conv.out_channels == 16
    assert isinstance(model.maxpool, nn.Identity)
    stages = [model.conv2_x, model.conv3_x, model.conv4_x]
    assert [len(s) for s in stages] == [9, 9, 9]  # n = 9, 6n + 2 = 56
    assert [s[0].conv1.out_channels for s in stages] == [16, 32, 64]
    assert model.fc.in_features == 64 and model.fc.out_features == 10
    # Option A everywhere: the 3n shortcuts carry no parameter.
    assert not any(isinstance(m, Projection) for m in model.modules())


def feature_shapes(model: cnnzoo.ClassifierNet, size: int) -> list[tuple[int, ...]]:
    shapes = []
    hooks = [
        model.get_submodule(info.module).register_forward_hook(
            lambda _m, _i, out: shapes.append(tuple(out.shape[1:]))
        )
        for info in model.feature_info
    ]
    with torch.no_grad():
        model.eval()(torch.zeros(1, model.in_chans, size, size, device="meta"))
    for hook in hooks:
        hook.remove()
    return shapes


def test_feature_maps_are_table_1s_output_sizes():
    shapes = feature_shapes(build_on_meta("resnet50"), 224)
    assert shapes == [
        (64, 112, 112),
        (256, 56, 56),
        (512, 28, 28),
        (1024, 14, 14),
        (2048, 7, 7),
    ]
    assert feature_shapes(build_on_meta("preact_resnet164"), 32) == [
        (16, 32, 32),
        (64, 32, 32),
        (128, 16, 16),
        (256, 8, 8),
    ]


def test_stride_sits_on_the_first_1x1_in_v1_and_on_the_3x3_in_v1_5():
    v1, v1_5 = build_on_meta("resnet50"), build_on_meta("resnet50_v1_5")
    for stage in ("conv3_x", "conv4_x", "conv5_x"):
        first, later = v1.get_submodule(stage)[0], v1.get_submodule(stage)[1]
        assert (first.conv1.stride, first.conv2.stride) == ((2, 2), (1, 1))
        assert (later.conv1.stride, later.conv2.stride) == ((1, 1), (1, 1))
        first = v1_5.get_submodule(stage)[0]
        assert (first.conv1.stride, first.conv2.stride) == ((1, 1), (2, 2))
        assert first.shortcut.conv.stride == (2, 2)
    assert v1.conv2_x[0].conv1.stride == (1, 1)  # conv2_x is downsampled by the max pool


def shortcut_kinds(model: nn.Module) -> list[str]:
    return [
        type(unit.shortcut).__name__
        for name in ("conv2_x", "conv3_x", "conv4_x", "conv5_x")
        for unit in model.get_submodule(name)
    ]


def test_shortcut_options_of_table_3():
    a, b, c = (build_on_meta(n) for n in ("resnet34_a", "resnet34", "resnet34_c"))
    # conv3_1, conv4_1 and conv5_1 (units 3, 7 and 13) increase the dimensions.
    increasing = {3, 7, 13}
    kinds_a, kinds_b, kinds_c = shortcut_kinds(a), shortcut_kinds(b), shortcut_kinds(c)
    assert len(kinds_a) == 16
    assert {i for i, k in enumerate(kinds_a) if k == "ZeroPadIdentity"} == increasing
    assert {i for i, k in enumerate(kinds_b) if k == "Projection"} == increasing
    assert kinds_c == ["Projection"] * 16  # "many (thirteen) projection shortcuts" more than B
    assert {k for i, k in enumerate(kinds_a + kinds_b) if i % 16 not in increasing} == {"Identity"}


def test_option_a_pads_the_subsampled_identity_with_zeros():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 7, 7)
    out = ZeroPadIdentity(4, 10, stride=2)(x)
    assert out.shape == (2, 10, 4, 4)  # as a 3x3 convolution with stride 2 and padding 1
    torch.testing.assert_close(out[:, :4], x[:, :, ::2, ::2])
    assert torch.all(out[:, 4:] == 0)


def zero_residual_(block: nn.Module) -> nn.Module:
    """Make F(x) = 0 by zeroing the last layer of the residual branch."""
    last = block.conv3 if hasattr(block, "conv3") else block.conv2
    nn.init.zeros_(last.weight)
    for bn_name in ("bn3", "bn2"):
        bn = getattr(block, bn_name, None)
        if isinstance(bn, nn.BatchNorm2d) and bn.num_features == last.out_channels:
            nn.init.zeros_(bn.weight)
            nn.init.zeros_(bn.bias)
            break
    return block.eval()


def test_residual_block_adds_its_input_and_plain_block_does_not():
    torch.manual_seed(0)
    x = torch.randn(1, 8, 6, 6)
    with torch.no_grad():
        residual = zero_residual_(BasicBlock(8, 8))(x)
        plain = zero_residual_(PlainBlock(8, 8))(x)
    torch.testing.assert_close(residual, torch.relu(x))  # Fig. 2: ReLU after the addition
    assert torch.all(plain == 0)
    assert not hasattr(PlainBlock(8, 8), "shortcut")


def test_pre_activation_unit_is_an_identity_when_its_residual_is_zero():
    """Eq. (8) of Identity Mappings: x_{l+1} = x_l + F(x_l); nothing after the addition, so
    negative inputs pass unchanged (the original unit's ReLU would cut them)."""
    torch.manual_seed(0)
    x = torch.randn(1, 16, 6, 6)
    for unit in (PreActBasicBlock(16, 16), PreActBottleneck(16, 4)):
        with torch.no_grad():
            torch.testing.assert_close(zero_residual_(unit)(x), x)
    with torch.no_grad():
        assert torch.all(zero_residual_(Bottleneck(16, 4))(x) >= 0)


def test_projection_shortcut_takes_the_pre_activated_input():
    torch.manual_seed(0)
    unit = PreActBottleneck(16, 8, stride=2).eval()
    assert isinstance(unit.shortcut, nn.Conv2d) and unit.shortcut_takes_preactivation
    nn.init.normal_(unit.bn1.running_mean)
    x = torch.randn(1, 16, 8, 8)
    with torch.no_grad():
        preact = torch.relu(unit.bn1(x))
        torch.testing.assert_close(unit(x), unit.residual(preact) + unit.shortcut(preact))


def test_pre_activation_network_layout():
    model = build_on_meta("preact_resnet50")
    first, second = model.conv2_x[0], model.conv2_x[1]
    assert first.bn1 is None  # conv1's BN-ReLU is its pre-activation (Fig. 5)
    assert isinstance(second.bn1, nn.BatchNorm2d)
    assert isinstance(model.final_bn_relu[0], nn.BatchNorm2d)  # after the last addition
    assert model.feature_info[-1].module == "final_bn_relu"
    # Projections where the dimensions change, as bare 1x1 convolutions (BN precedes them).
    projections = [
        name
        for name, module in model.named_modules()
        if name.endswith("shortcut") and isinstance(module, nn.Conv2d)
    ]
    assert projections == [
        "conv2_x.0.shortcut",
        "conv3_x.0.shortcut",
        "conv4_x.0.shortcut",
        "conv5_x.0.shortcut",
    ]
    assert model.conv3_x[0].conv1.stride == (2, 2)  # as [1], on the first 1x1
    preact200 = build_on_meta("preact_resnet200")
    assert [len(preact200.get_submodule(f"conv{i}_x")) for i in (2, 3, 4, 5)] == [3, 24, 36, 3]
    cifar = build_on_meta("preact_resnet110")
    assert isinstance(cifar.conv3_x[0].shortcut, ZeroPadIdentity)


def conv_std_ratio(model: nn.Module, mode: str) -> list[float]:
    """Each big convolution's weight std over sqrt(2 / fan)."""
    ratios = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d) and module.weight.numel() >= 100_000:
            k = module.kernel_size[0] * module.kernel_size[1]
            fan = k * (module.in_channels if mode == "fan_in" else module.out_channels)
            ratios.append(module.weight.std().item() / (2 / fan) ** 0.5)
    return ratios


def test_he_initialisation():
    torch.manual_seed(0)
    model = cnnzoo.create_model("resnet34")
    ratios = conv_std_ratio(model, "fan_in")  # [13] Eq. (10), cited in §3.4
    assert ratios and all(abs(r - 1) < 0.05 for r in ratios)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            assert torch.all(module.weight == 1) and torch.all(module.bias == 0)
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            assert module.bias is None
    # The pre-activation nets follow the authors' code: n = k^2 x output channels.
    preact = PreActResNet(PreActBasicBlock, (1, 1, 1, 1))
    ratios = conv_std_ratio(preact, "fan_out")
    assert ratios and all(abs(r - 1) < 0.05 for r in ratios)
    # A projection doubles the channels: fan-out 128, fan-in 64.
    proj = preact.conv3_x[0].shortcut
    assert abs(proj.weight.std().item() / (2 / 128) ** 0.5 - 1) < 0.05


def randomise_batchnorm_(model: nn.Module) -> nn.Module:
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            nn.init.uniform_(module.weight, 0.5, 1.5)
            nn.init.normal_(module.bias, std=0.1)
            nn.init.normal_(module.running_mean, std=0.1)
            nn.init.uniform_(module.running_var, 0.5, 2.0)
    return model.eval()


def assert_same_outputs(ours: nn.Module, reference: nn.Module, size: int = 64) -> None:
    ours.load_state_dict(from_torchvision_state_dict(reference.state_dict()))
    ours.eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        expected = reference(x)
        torch.testing.assert_close(
            ours(x), expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item()
        )


@pytest.mark.parametrize(
    ("ours", "theirs"), [("resnet18", "resnet18"), ("resnet50_v1_5", "resnet50")]
)
def test_loads_torchvision_weights(ours, theirs):
    torch.manual_seed(1)
    reference = randomise_batchnorm_(getattr(torchvision.models, theirs)())  # no download
    assert_same_outputs(cnnzoo.create_model(ours), reference)


def test_v1_is_torchvision_with_the_stride_moved_back():
    """torchvision's resnet50 with each downsampling stride moved to the first 1x1 is the
    paper's ResNet-50; with it left on the 3x3 the outputs differ."""
    torch.manual_seed(2)
    reference = randomise_batchnorm_(torchvision.models.resnet50())
    ours = cnnzoo.create_model("resnet50")
    x = torch.randn(1, 3, 64, 64)
    ours.load_state_dict(from_torchvision_state_dict(reference.state_dict()))
    with torch.no_grad():
        assert not torch.allclose(ours.eval()(x), reference(x), rtol=1e-2)
    for layer in (reference.layer2, reference.layer3, reference.layer4):
        layer[0].conv1.stride, layer[0].conv2.stride = (2, 2), (1, 1)
    assert_same_outputs(ours, reference)


def test_from_torchvision_state_dict_rejects_other_models():
    with pytest.raises(KeyError, match="not a parameter of a torchvision ResNet"):
        from_torchvision_state_dict({"features.0.weight": torch.zeros(1)})


def test_a_new_block_builds_on_the_public_skeleton():
    """What SE-ResNet will do: subclass a block, override the residual, pass the class."""

    class HalvedBottleneck(Bottleneck):
        def residual(self, x: torch.Tensor) -> torch.Tensor:
            return super().residual(x) / 2

    model = ResNet(HalvedBottleneck, (1, 1, 1, 1), num_classes=10)
    assert all(isinstance(m, HalvedBottleneck) for m in model.conv2_x)
    assert model.feature_info[-1].channels == 2048 and model.fc.in_features == 2048
    block = HalvedBottleneck(8, 2).eval()
    x = torch.randn(2, 8, 5, 5)
    with torch.no_grad():
        half = torch.relu(Bottleneck.residual(block, x) / 2 + x)
        torch.testing.assert_close(block(x), half)
        assert not torch.allclose(block(x), torch.relu(Bottleneck.residual(block, x) + x))


@pytest.mark.parametrize(
    "model",
    [
        pytest.param(lambda: cnnzoo.create_model("resnet20"), id="resnet20"),
        pytest.param(
            lambda: PreActResNet(PreActBottleneck, (1, 2, 1), num_classes=10, dataset="cifar"),
            id="preact",
        ),
    ],
)
def test_torch_export(model):
    torch.manual_seed(3)
    net = randomise_batchnorm_(model())
    x = torch.randn(1, 3, 32, 32)
    exported = torch.export.export(net, (x,))
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(x), net(x))


def test_cards_quote_the_tables():
    def errors(name):
        return {(e.source, e.top1, e.top5) for e in cnnzoo.model_card(name).published_errors}

    assert ("Table 3: ResNet-34 A", 25.03, 7.76) in errors("resnet34_a")
    assert ("Table 3: ResNet-34 C", 24.19, 7.40) in errors("resnet34_c")
    assert ("Table 4: ResNet-152", 19.38, 4.49) in errors("resnet152")
    assert ("Table 6: ResNet 56 layers", 6.97, None) in errors("resnet56")
    assert ("Table 2: plain-18", 27.94, None) in errors("plain18")
    assert ("Table 5: ResNet-200, pre-act Residual Unit", 20.7, 5.3) in errors("preact_resnet200")
    macs = {n: cnnzoo.model_card(n).published_macs for n in ("resnet18", "resnet50", "resnet152")}
    assert macs == {"resnet18": 1.8e9, "resnet50": 3.8e9, "resnet152": 11.3e9}
    assert cnnzoo.model_card("resnet1202").published_params == 19_400_000
    assert cnnzoo.model_card("preact_resnet1001").input_size == (3, 32, 32)


@pytest.mark.parametrize(
    ("name", "build_unmeasured"),
    [
        ("resnet1202", lambda: cifar._build(1202, 10, 3)),
        ("preact_resnet1001", lambda: preact._cifar(1001, 10, 3)),
    ],
)
def test_the_deepest_nets_are_finite_in_eval_mode_as_built(name, build_unmeasured):
    """With torch's placeholder running statistics, eval-mode BatchNorm is the identity and
    hundreds of He-initialised units overflow float32 to NaN; the builders measure the
    statistics on noise instead, leaving the weights and the global random state alone."""
    torch.manual_seed(0)
    unmeasured = build_unmeasured()
    drawn_next = torch.rand(1)
    torch.manual_seed(0)
    model = cnnzoo.create_model(name)
    assert torch.equal(torch.rand(1), drawn_next), "measuring draws nothing from torch's seed"
    weights = unmeasured.state_dict()
    assert all(
        torch.equal(value, weights[key])
        for key, value in model.state_dict().items()
        if not key.endswith(("running_mean", "running_var"))
    )
    assert model.training
    image = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        logits = model.eval()(image)
        assert torch.isfinite(logits).all() and logits.abs().max() < 1e3
        assert torch.isnan(unmeasured.eval()(image)).any()  # why the builders measure


# Stochastic depth (Huang et al. 2016), built on the CIFAR ResNet-110.


def _sd_blocks(model):
    from cnnzoo_resnet.stochastic_depth import StochasticDepthBlock

    return [m for m in model.modules() if isinstance(m, StochasticDepthBlock)]


def test_stochastic_depth_survival_follows_the_linear_decay_rule():
    """§3, linear decay: p_l = 1 - (l/L)(1 - p_L), l = 1 ... 54, p_L = 0.5."""
    blocks = _sd_blocks(cnnzoo.create_model("resnet110_sd"))
    assert len(blocks) == 54
    for index, block in enumerate(blocks, start=1):
        assert block.survival == pytest.approx(1 - index / 54 * 0.5)
    assert blocks[-1].survival == 0.5 and blocks[0].survival == pytest.approx(107 / 108)


def test_a_stochastic_depth_block_is_its_shortcut_when_dropped_and_scaled_at_test():
    """Training: ReLU(f(x) + id(x)) with probability p, ReLU(id(x)) otherwise; test:
    ReLU(p f(x) + id(x)), the same at every call. The downsampling shortcut averages 2x2 and
    appends zero maps (the authors' release)."""
    from cnnzoo_resnet.stochastic_depth import StochasticDepthBlock

    torch.manual_seed(0)
    block = StochasticDepthBlock(16, 32, stride=2, survival=0.7)
    x = torch.rand(4, 16, 8, 8)
    shortcut = torch.cat([F.avg_pool2d(x, 2), torch.zeros(4, 16, 4, 4)], 1)
    torch.testing.assert_close(block.shortcut(x), shortcut)
    with torch.no_grad():
        residual = block.train().residual(x)
        kept, dropped = F.relu(residual + shortcut), F.relu(shortcut)
        outputs = [block(x) for _ in range(2000)]
        assert all(torch.equal(y, kept) or torch.equal(y, dropped) for y in outputs)
        survived = sum(torch.equal(y, kept) for y in outputs) / len(outputs)
        assert survived == pytest.approx(0.7, abs=0.04)  # 2000 draws: sd 0.01
        block.eval()
        expected = F.relu(0.7 * block.residual(x) + shortcut)
        torch.testing.assert_close(block(x), expected)
        assert torch.equal(block(x), block(x))


def test_a_dropped_block_gets_zero_gradients_so_weight_decay_reaches_it():
    """The authors' SGD decays and moves every weight at every step; a dropped block's
    weights get a zero gradient, not none, so the optimiser does the same here."""
    from cnnzoo_resnet.stochastic_depth import StochasticDepthBlock

    torch.manual_seed(0)
    block = StochasticDepthBlock(16, 16, stride=1, survival=1e-9).train()  # always dropped
    block(torch.rand(2, 16, 8, 8)).sum().backward()
    grads = [p.grad for p in block.parameters()]
    assert all(g is not None and not g.any() for g in grads)


@pytest.mark.bad_input
def test_stochastic_depth_refuses_a_survival_outside_0_to_1():
    from cnnzoo_resnet.stochastic_depth import linear_decay

    with pytest.raises(ValueError, match=r"survival p_L must be in \(0, 1\]; got 1.5"):
        linear_decay(54, 1.5)
