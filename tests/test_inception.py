"""GoogLeNet, BN-Inception, Inception-v3, Inception-v4 and Inception-ResNet: the papers'
tables, the auxiliary classifiers, residual scaling, and equivalence with torchvision's
Inception-v3 and timm's Inception-v4 and Inception-ResNet-v2."""

from __future__ import annotations

import cnnzoo
import pytest
import timm
import torch
import torchvision
from cnnzoo.complexity import count_macs, count_params
from cnnzoo_inception import (
    TABLE_1,
    BNInception,
    Conv,
    InceptionModule,
    InceptionResNetModule,
    bn_inception,
    from_timm_state_dict,
    from_torchvision_state_dict,
    googlenet,
    inception_resnet_v1,
    inception_resnet_v2,
    inception_v3,
    inception_v4,
)
from cnnzoo_inception.googlenet import inference_params
from torch import nn


def on_meta(build, **kwargs) -> nn.Module:
    with torch.device("meta"):
        return build(**kwargs)


def randomise_batch_norm(model: nn.Module) -> None:
    """Give every BN layer statistics and affine terms far from the identity, so that a
    mis-mapped BN cannot go unnoticed."""
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            size = module.num_features
            module.running_mean.copy_(torch.randn(size, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(size, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(size, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(size, generator=generator) * 0.1)


# --- GoogLeNet -----------------------------------------------------------------------------

# Table 1's params (in K of 1,024 weights) and ops (in M multiply-adds) columns.
TABLE_1_COSTS = {
    "inception3a": (159, 128),
    "inception3b": (380, 304),
    "inception4a": (364, 73),
    "inception4b": (437, 88),
    "inception4c": (463, 100),
    "inception4d": (580, 119),
    "inception4e": (840, 170),
    "inception5a": (1072, 54),
    "inception5b": (1388, 71),
}


# Rows where Table 1 disagrees with its own filter counts: 4c's 463K against the 100M ops its
# filters give (ours: 497.5K, 99.9M), and 5a's 1072K/54M against its filters' 1018K/51M.
TABLE_1_SLIPS = {"inception4c": "params", "inception5a": "both"}


def test_googlenet_matches_table_1_row_by_row():
    model = on_meta(googlenet)
    sizes = {"inception3": 28, "inception4": 14, "inception5": 7}
    for name, (params_k, ops_m) in TABLE_1_COSTS.items():
        module = model.features.get_submodule(name)
        weights = sum(p.numel() for n, p in module.named_parameters() if n.endswith("weight"))
        grid = sizes[name[:10]]
        ours_k, ours_ops = weights / 1024, weights * grid * grid / 1e6
        slip = TABLE_1_SLIPS.get(name)
        if slip is None:
            assert ours_k == pytest.approx(params_k, rel=0.02), name
        else:
            assert ours_k != pytest.approx(params_k, rel=0.02), name
        if slip != "both":
            assert ours_ops == pytest.approx(ops_m, rel=0.02), name
    # conv2 row: 112K, 360M.
    conv2 = (
        model.features.conv2_reduce.conv.weight.numel() + model.features.conv2.conv.weight.numel()
    )
    assert conv2 / 1024 == pytest.approx(112, rel=0.01)
    assert conv2 * 56 * 56 / 1e6 == pytest.approx(360, rel=0.01)


def test_googlenet_counts():
    model = on_meta(googlenet)
    assert count_params(model) == 13_378_280 == model.card.published_params
    assert inference_params(model) == 6_998_552
    # §5: "1.5 billion multiply-adds"; 1.58 with a plain 7x7 conv1 (see the card's notes).
    assert count_macs(model, (3, 224, 224)) == 1_582_671_872


def test_googlenet_structure():
    model = on_meta(googlenet)
    names = [name for name, _ in TABLE_1 if name.startswith("inception")]
    assert len(names) == 9
    kernels = {m.kernel_size for n, m in model.features.named_modules() if isinstance(m, nn.Conv2d)}
    assert (5, 5) in kernels  # real 5x5 convolutions, not torchvision's 3x3
    branch_5x5 = model.features.inception3a.branches[2][1].conv
    assert branch_5x5.kernel_size == (5, 5) and branch_5x5.out_channels == 32
    stem = [name for name, _ in model.features.named_children()][:7]
    assert stem == ["conv1", "pool1", "norm1", "conv2_reduce", "conv2", "norm2", "pool2"]
    assert isinstance(model.features.norm1, nn.LocalResponseNorm)
    assert list(model.aux) == ["inception4a", "inception4d"]
    assert model.head_drop.p == 0.4 and model.aux["inception4a"].dropout.p == 0.7
    assert model.card.aux_loss_weight == 0.3
    assert "torchvision" in model.card.notes


def test_googlenet_aux_heads_only_in_training():
    torch.manual_seed(0)
    model = googlenet(num_classes=10)
    x = torch.randn(2, 3, 80, 80)
    out = model.train()(x)
    assert isinstance(out, cnnzoo.AuxLogits) and len(out.aux_logits) == 2
    assert all(a.shape == (2, 10) for a in out.aux_logits)
    with torch.no_grad():
        assert model.eval()(x).shape == (2, 10)
    model.reset_classifier(4)
    assert all(a.shape == (2, 4) for a in model.train()(x).aux_logits)


def test_googlenet_min_input_size():
    model = googlenet(num_classes=3).train()
    assert model.card.min_input_size == 79
    model(torch.randn(2, 3, 79, 79))
    with pytest.raises(cnnzoo.InputShapeError, match="at least 79x79"):
        model(torch.randn(2, 3, 78, 78))


def test_googlenet_initialisation():
    torch.manual_seed(0)
    model = googlenet()
    assert torch.all(model.features.inception4c.branches[1][1].conv.bias == 0.2)
    assert torch.all(model.fc.bias == 0) and torch.all(model.aux["inception4d"].fc.bias == 0)
    weight = model.features.inception4c.branches[1][1].conv.weight
    fan_in, fan_out = weight.shape[1] * 9, weight.shape[0] * 9
    assert weight.std().item() == pytest.approx((2 / (fan_in + fan_out)) ** 0.5, rel=0.05)


# --- BN-Inception --------------------------------------------------------------------------


def test_bn_inception_figure_5():
    model = on_meta(bn_inception)
    assert count_params(model) == 11_285_224
    assert count_macs(model, (3, 224, 224)) == 2_032_600_064
    widths = {
        name: m.out_chans
        for name, m in model.features.named_children()
        if isinstance(m, InceptionModule)
    }
    assert widths == {
        "inception3a": 256,
        "inception3b": 320,
        "inception3c": 576,
        "inception4a": 576,
        "inception4b": 576,
        "inception4c": 608,
        "inception4d": 608,
        "inception4e": 1056,
        "inception5a": 1024,
        "inception5b": 1024,
    }
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.kernel_size != (5, 5) for c in convs)  # 5x5 replaced by two 3x3
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == len(convs)
    # 3c and 4e halve the grid: stride 2 in their 3x3, double-3x3 and pass-through pooling.
    for name in ("inception3c", "inception4e"):
        branches = model.features.get_submodule(name).branches
        assert len(branches) == 3 and len(branches[2]) == 1  # pool passes through
        assert branches[0][1].conv.stride == (2, 2) and branches[1][2].conv.stride == (2, 2)
        assert branches[2][0].stride == 2


def test_bn_inception_module_hook():
    """An SE variant wraps each module and changes nothing else."""

    class Wrapped(nn.Module):
        def __init__(self, chans, branches):
            super().__init__()
            self.inception = InceptionModule(chans, branches, 1e-3)

        def forward(self, x):
            return self.inception(x) * 0.5

    torch.manual_seed(0)
    model = BNInception(num_classes=5, module=Wrapped).eval()
    assert isinstance(model.features.inception5b, Wrapped)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 5)


def test_bn_inception_min_input_size():
    model = bn_inception(num_classes=3).eval()
    with torch.no_grad():
        model.forward_features(torch.randn(1, 3, 7, 7))
        with pytest.raises(RuntimeError):
            model.forward_features(torch.randn(1, 3, 6, 6))


def test_torch_export_bn_inception():
    torch.manual_seed(0)
    model = bn_inception(num_classes=10).eval()
    x = torch.randn(1, 3, 32, 32)
    exported = torch.export.export(model, (x,))
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(x), model(x))


# --- Inception-v3 --------------------------------------------------------------------------


def test_inception_v3_counts():
    model = on_meta(inception_v3)
    assert count_params(model) == 27_161_264
    assert inference_params(model) == 23_834_568 < 25_000_000  # "less than 25 million"
    assert model.card.aux_loss_weight == 0.4


def test_inception_v3_equals_torchvision():
    torch.manual_seed(1)
    reference = torchvision.models.inception_v3(
        weights=None, aux_logits=True, transform_input=False, init_weights=False
    ).eval()
    randomise_batch_norm(reference)
    model = on_meta(inception_v3).eval()  # no time spent initialising: every tensor is loaded
    model.load_state_dict(from_torchvision_state_dict(reference.state_dict()), assign=True)
    x = torch.randn(2, 3, 107, 107)
    features = torch.randn(2, 768, 17, 17)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x))
        # The auxiliary head at the paper's 17x17 map.
        torch.testing.assert_close(model.aux["mixed_6e"](features), reference.AuxLogits(features))


def test_from_torchvision_state_dict_needs_the_aux_head():
    reference = on_meta(
        torchvision.models.inception_v3, weights=None, aux_logits=False, init_weights=False
    )
    with pytest.raises(KeyError, match="aux_logits=True"):
        from_torchvision_state_dict(reference.state_dict())


# --- Inception-v4 and Inception-ResNet -----------------------------------------------------


@pytest.mark.parametrize(
    ("name", "build"),
    [("inception_v4", inception_v4), ("inception_resnet_v2", inception_resnet_v2)],
)
def test_equals_timm(name, build):
    torch.manual_seed(2)
    reference = timm.create_model(name, pretrained=False).eval()
    randomise_batch_norm(reference)
    model = on_meta(build).eval()
    model.load_state_dict(from_timm_state_dict(reference.state_dict(), name), assign=True)
    x = torch.randn(1, 3, 107, 107)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x))


def test_from_timm_state_dict_rejects_other_models():
    with pytest.raises(KeyError, match="another model"):
        from_timm_state_dict({"fc.weight": torch.zeros(3, 2)}, "inception_v4")


def stage_counts(model: nn.Module) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name, _ in model.features.named_children():
        kind = name.rstrip("0123456789")
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def test_inception_v4_table():
    model = on_meta(inception_v4)
    assert count_params(model) == 42_679_816
    assert stage_counts(model) == {
        "stem": 1,
        "inception_a": 4,
        "reduction_a": 1,
        "inception_b": 7,
        "reduction_b": 1,
        "inception_c": 3,
    }
    assert model.features.stem.mixed_5a.out_chans == 384
    assert model.head_drop.p == pytest.approx(0.2)  # keep 0.8


def test_inception_resnet_v1_figures():
    model = on_meta(inception_resnet_v1)
    assert count_params(model) == 22_756_328
    assert stage_counts(model) == {
        "stem": 1,
        "inception_resnet_a": 5,
        "reduction_a": 1,
        "inception_resnet_b": 10,
        "reduction_b": 1,
        "inception_resnet_c": 5,
    }
    widths = {n: m.out_chans for n, m in model.features.named_children() if n != "stem"}
    assert widths["inception_resnet_a5"] == 256
    assert widths["reduction_a"] == widths["inception_resnet_b1"] == 896
    assert widths["reduction_b"] == widths["inception_resnet_c5"] == 1792
    scales = {m.scale for m in model.modules() if isinstance(m, InceptionResNetModule)}
    assert scales == {0.17, 0.10, 0.20} and all(0.1 <= s <= 0.3 for s in scales)


def test_inception_resnet_v2_release_table():
    model = on_meta(inception_resnet_v2)
    counts = stage_counts(model)
    assert counts["inception_resnet_a"] == 10 and counts["inception_resnet_b"] == 20
    assert counts["inception_resnet_c"] == 10 and counts["conv2d_7b"] == 1
    last = model.features.inception_resnet_c10
    assert last.scale == 1.0 and isinstance(last.relu, nn.Identity)
    assert model.features.inception_resnet_c9.scale == 0.2


def test_residual_module_is_scaled_sum():
    """§3.2-3.3: relu(x + scale * linear_1x1(concat(branches)))."""
    torch.manual_seed(3)
    module = InceptionResNetModule(8, ((Conv(4, 1),), (Conv(4, 3),)), 0.1, 1e-3).eval()
    x = torch.randn(1, 8, 5, 5)
    with torch.no_grad():
        expected = torch.relu(x + 0.1 * module.up(module.inception(x)))
        torch.testing.assert_close(module(x), expected)
        nn.init.zeros_(module.up.weight)
        nn.init.zeros_(module.up.bias)
        torch.testing.assert_close(module(x), torch.relu(x))


def test_all_six_registered():
    assert set(cnnzoo.list_models("*incep*") + cnnzoo.list_models("googlenet")) >= {
        "googlenet",
        "bn_inception",
        "inception_v3",
        "inception_v4",
        "inception_resnet_v1",
        "inception_resnet_v2",
    }
