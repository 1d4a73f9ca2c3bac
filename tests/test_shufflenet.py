"""ShuffleNet (2017) and ShuffleNet V2 (2018): the channel shuffle as §3.1 defines it, the
units of ShuffleNet Fig. 2 and ShuffleNet V2 Fig. 3, the tables as built, the complexities,
the authors' initialisation, and equivalence with torchvision's ShuffleNet V2."""

from __future__ import annotations

import cnnzoo
import pytest
import torch
import torchvision
from cnnzoo.complexity import complexity
from cnnzoo_shufflenet import (
    BasicUnit,
    DownsamplingUnit,
    ShuffleNetV2,
    ShuffleUnit,
    channel_shuffle,
    from_torchvision_state_dict,
)
from torch import nn

V1_GROUPS = [1, 2, 3, 4, 8]


def test_channel_shuffle_is_the_papers():
    """§3.1: reshape the g·n channels to (g, n), transpose, flatten: channel i·n + j of
    group i goes to position j·g + i."""
    groups, per_group = 3, 4
    x = torch.arange(groups * per_group, dtype=torch.float32).reshape(1, -1, 1, 1)
    out = channel_shuffle(x, groups).flatten().tolist()
    for i in range(groups):
        for j in range(per_group):
            assert out[j * groups + i] == i * per_group + j
    # Every group of the next grouped convolution sees every group of this one (Fig. 1c).
    for next_group in range(groups):
        chunk = out[next_group * per_group : (next_group + 1) * per_group]
        assert {int(c) // per_group for c in chunk} == set(range(groups))
    # Shuffling with n groups undoes it.
    torch.testing.assert_close(channel_shuffle(channel_shuffle(x, groups), per_group), x)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("shufflenet_v1_g1", 1_530_936),
        ("shufflenet_v1_g2", 1_732_848),
        ("shufflenet_v1_g3", 1_864_728),
        ("shufflenet_v1_g4", 1_967_344),
        ("shufflenet_v1_g8", 2_433_768),
        ("shufflenet_v1_g3_x0_5", 717_324),
        ("shufflenet_v1_g3_x0_25", 305_124),
        ("shufflenet_v1_g3_x1_5", 3_441_168),
        ("shufflenet_v1_g3_x2_0", 5_449_776),
        ("shufflenet_v2_x0_5", 1_366_792),
        ("shufflenet_v2_x1_0", 2_278_604),
        ("shufflenet_v2_x1_5", 3_503_624),
        ("shufflenet_v2_x2_0", 7_393_996),
    ],
)
def test_exact_parameter_counts(name, params):
    assert complexity(name).params == params


# Table 1's complexity (MFLOPs) for each g at 1×.
TABLE_1_COMPLEXITY = {1: 143, 2: 140, 3: 137, 4: 133, 8: 137}


@pytest.mark.parametrize("groups", V1_GROUPS)
def test_table_1_complexity_leaves_out_the_fc(groups):
    """Without the FC layer our multiply-adds round to Table 1's for every g (with it, g = 2,
    4 and 8 stand 0.8M to 1.4M above, which their cards allow and explain)."""
    name = f"shufflenet_v1_g{groups}"
    with torch.device("meta"):
        fc = cnnzoo.create_model(name).fc.weight.numel()
    assert round((complexity(name).macs - fc) / 1e6) == TABLE_1_COMPLEXITY[groups]


@pytest.mark.parametrize("groups", V1_GROUPS)
def test_v1_table_1_layout(groups):
    with torch.device("meta"):
        model = cnnzoo.create_model(f"shufflenet_v1_g{groups}")
    stages = [model.stage2, model.stage3, model.stage4]
    assert [len(stage) for stage in stages] == [4, 8, 4]
    for stage in stages:
        assert [unit.stride for unit in stage] == [2] + [1] * (len(stage) - 1)
        for unit in stage:
            assert unit.gconv2.groups == groups
            assert unit.gconv1.out_channels == stage[-1].bn3.num_features // 4  # bottleneck
    # §3.3: no group convolution on Stage 2's first pointwise layer, everywhere else g.
    first_pointwise = [unit.gconv1.groups for stage in stages for unit in stage]
    assert first_pointwise == [1] + [groups] * 15


def test_v1_units():
    torch.manual_seed(0)
    x = torch.randn(2, 24, 8, 8)
    down = ShuffleUnit(24, 240, groups=3, stride=2, first_pointwise_groups=1).eval()
    with torch.no_grad():
        out = down(x)
        assert out.shape == (2, 240, 4, 4)
        # Fig. 2(c): the shortcut's 3x3 average pool, concatenated (then ReLU).
        pooled = nn.functional.avg_pool2d(x, 3, stride=2, padding=1)
        torch.testing.assert_close(out[:, :24], pooled.relu())
    unit = ShuffleUnit(240, 240, groups=3, stride=1).eval()
    nn.init.zeros_(unit.bn3.weight)
    nn.init.zeros_(unit.bn3.bias)
    y = torch.randn(2, 240, 4, 4)
    with torch.no_grad():  # Fig. 2(b): an identity shortcut, added, then ReLU
        torch.testing.assert_close(unit(y), y.relu())
    # §3.2: no ReLU after the depthwise convolution; one after the first GConv and the sum.
    assert sum(isinstance(m, nn.ReLU) for m in unit.modules()) == 1


def test_v1_scales():
    """Table 2: s× scales the stages' filters; Conv1 is 12, 12, 24, 24, 48 wide."""
    for name, conv1, stage4 in [
        ("shufflenet_v1_g3_x0_25", 12, 240),
        ("shufflenet_v1_g3_x0_5", 12, 480),
        ("shufflenet_v1_g3", 24, 960),
        ("shufflenet_v1_g3_x1_5", 24, 1440),
        ("shufflenet_v1_g3_x2_0", 48, 1920),
    ]:
        with torch.device("meta"):
            model = cnnzoo.create_model(name)
        assert model.conv1.conv.out_channels == conv1
        assert model.num_features == stage4


def test_authors_initialisation():
    model = cnnzoo.create_model("shufflenet_v1_g3")
    assert model.conv1.conv.weight.std().item() == pytest.approx(0.01, rel=0.1)
    gconv = model.stage3[1].gconv1  # 480 -> 120, 3 groups: 160 inputs per group
    assert gconv.weight.std().item() == pytest.approx(1 / 160, rel=0.05)
    assert torch.all(model.stage3[1].bn1.bias == 1e-4)
    assert model.fc.bias is None


def test_v2_units():
    torch.manual_seed(0)
    basic = BasicUnit(116).eval()
    x = torch.randn(2, 116, 7, 7)
    with torch.no_grad():
        out = basic(x)
    # Fig. 3(c): the left half of the split passes untouched; after the shuffle with two
    # groups it sits in the even channels.
    torch.testing.assert_close(out[:, 0::2], x[:, :58])
    assert not any(isinstance(m, nn.ReLU) for m in basic.right.dwconv)  # none after DWConv
    down = DownsamplingUnit(24, 116).eval()
    with torch.no_grad():
        assert down(torch.randn(2, 24, 8, 8)).shape == (2, 116, 4, 4)
    assert down.left.dwconv.conv.stride == (2, 2) and down.right.dwconv.conv.stride == (2, 2)


# torchvision's builders for Table 5's widths.
TORCHVISION_V2 = {0.5: "x0_5", 1.0: "x1_0", 1.5: "x1_5", 2.0: "x2_0"}


@pytest.mark.parametrize("width", TORCHVISION_V2)
def test_v2_equals_torchvision(width):
    torch.manual_seed(1)
    reference = getattr(torchvision.models, f"shufflenet_v2_{TORCHVISION_V2[width]}")().eval()
    model = ShuffleNetV2(width).eval()
    model.load_state_dict(from_torchvision_state_dict(reference.state_dict()))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x))


def test_from_torchvision_state_dict_rejects_other_models():
    with pytest.raises(KeyError, match="shufflenet_v2"):
        from_torchvision_state_dict({"features.0.weight": torch.zeros(1)})


@pytest.mark.parametrize("name", ["shufflenet_v1_g3_x0_5", "shufflenet_v2_x0_5"])
def test_torch_export(name):
    model = cnnzoo.create_model(name).eval()
    x = torch.randn(1, 3, 96, 96)
    exported = torch.export.export(model, (x,))
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(x), model(x))


def test_cards():
    assert cnnzoo.model_card("shufflenet_v1_g8").published_errors[0].top1 == 32.4
    assert cnnzoo.model_card("shufflenet_v1_g3_x0_25").published_errors[0].top1 == 55.0
    assert cnnzoo.model_card("shufflenet_v1_g3").published_macs == 137_000_000
    card = cnnzoo.model_card("shufflenet_v2_x1_0")
    assert (card.published_params, card.published_macs) == (2_300_000, 146_000_000)
    assert card.published_errors[0].top1 == 30.6
