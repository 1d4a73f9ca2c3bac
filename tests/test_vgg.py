"""VGG (2014): Table 1 as data, Table 2's parameter counts, §3.1's initialisation and the
initialisation of deeper nets from net A, §3.2's dense evaluation, and equivalence with
torchvision's vgg11/13/16/19 and their BatchNorm versions."""

from __future__ import annotations

import cnnzoo
import pytest
import torch
import torchvision
from cnnzoo.complexity import complexity
from cnnzoo_vgg import (
    TABLE_1,
    VGG,
    from_torchvision_state_dict,
    init_from_shallower,
    to_fully_convolutional,
    vgg11,
    vgg11_lrn,
    vgg16,
)
from torch import nn

PAPER_NAMES = {
    "vgg11": "A",
    "vgg11_lrn": "A-LRN",
    "vgg13": "B",
    "vgg16_c": "C",
    "vgg16": "D",
    "vgg19": "E",
}


@pytest.fixture(scope="module")
def net_a() -> VGG:
    torch.manual_seed(0)
    return vgg11(num_classes=10).eval()


def convs(model: VGG) -> dict[str, nn.Conv2d]:
    return {
        name.removeprefix("features.").removesuffix(".conv"): module
        for name, module in model.named_modules()
        if isinstance(module, nn.Conv2d)
    }


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("vgg11", 132_863_336),
        ("vgg11_lrn", 132_863_336),
        ("vgg13", 133_047_848),
        ("vgg16_c", 133_638_952),
        ("vgg16", 138_357_544),
        ("vgg19", 143_667_240),
        ("vgg11_bn", 132_868_840),
        ("vgg19_bn", 143_678_248),
    ],
)
def test_parameter_counts(name, params):
    assert complexity(name).params == params
    # Table 2 prints millions: 133, 133, 133, 134, 138, 144.
    if name in PAPER_NAMES:
        assert round(params / 1e6) == cnnzoo.model_card(name).published_params // 1_000_000


@pytest.mark.parametrize(("name", "config"), PAPER_NAMES.items())
def test_layers_follow_table_1(name, config):
    with torch.device("meta"):
        model = cnnzoo.create_model(name)
    layers = convs(model)
    expected = {}
    for stage, entries in enumerate(TABLE_1[config], start=1):
        widths = [entry for entry in entries if entry != "LRN"]
        for index, entry in enumerate(widths, start=1):
            kernel, channels = entry.removeprefix("conv").split("-")
            expected[f"conv{stage}_{index}"] = (int(kernel), int(channels))
    expected |= {"fc6": None, "fc7": None, "fc8": None}  # Linear, not conv
    assert {key: (conv.kernel_size[0], conv.out_channels) for key, conv in layers.items()} == {
        key: value for key, value in expected.items() if value is not None
    }
    # Weight layers: 11, 11, 13, 16, 16, 19 (Table 1's header).
    assert len(layers) + 3 == {"A": 11, "A-LRN": 11, "B": 13, "C": 16, "D": 16, "E": 19}[config]
    pools = [m for m in model.features if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 5 and all(p.kernel_size == 2 and p.stride == 2 for p in pools)


def test_configuration_c_has_its_1x1_convolutions_last_in_stages_3_to_5():
    with torch.device("meta"):
        layers = convs(cnnzoo.create_model("vgg16_c"))
    ones = sorted(name for name, conv in layers.items() if conv.kernel_size == (1, 1))
    assert ones == ["conv3_3", "conv4_3", "conv5_3"]
    assert all(layers[name].padding == (0, 0) for name in ones)


def paper_response_norm(a: torch.Tensor, n=5, k=2.0, alpha=1e-4, beta=0.75) -> torch.Tensor:
    """AlexNet §3.3, which A-LRN uses, written out one map at a time."""
    b = torch.empty_like(a)
    for i in range(a.shape[1]):
        lo, hi = max(0, i - n // 2), min(a.shape[1] - 1, i + n // 2)
        b[:, i] = a[:, i] / (k + alpha * a[:, lo : hi + 1].pow(2).sum(dim=1)) ** beta
    return b


def test_lrn_only_after_the_first_layer_of_a_lrn():
    torch.manual_seed(1)
    model = vgg11_lrn(num_classes=10)
    norms = [name for name, m in model.named_modules() if isinstance(m, nn.LocalResponseNorm)]
    assert norms == ["features.conv1_1.lrn"]
    a = torch.randn(2, 12, 3, 3, dtype=torch.float64) * 60
    torch.testing.assert_close(model.features.conv1_1.lrn(a), paper_response_norm(a))


def test_batchnorm_variants_normalise_every_convolution():
    with torch.device("meta"):
        model = cnnzoo.create_model("vgg16_bn")
    for layer_name, conv in convs(model).items():
        layer = model.features.get_submodule(layer_name)
        assert isinstance(layer.bn, nn.BatchNorm2d) and layer.bn.num_features == conv.out_channels


def test_paper_initialisation(net_a):
    for name, param in net_a.named_parameters():
        if name.endswith("bias"):
            assert torch.all(param == 0), name
        else:
            assert param.std().item() == pytest.approx(0.01, rel=0.1), name


def test_init_from_shallower_copies_four_convs_and_three_fcs(net_a):
    torch.manual_seed(2)
    deep = vgg16(num_classes=10)
    before = {k: v.clone() for k, v in deep.state_dict().items()}
    copied = init_from_shallower(deep, net_a)
    assert copied == [
        "features.conv1_1",
        "features.conv2_1",
        "features.conv3_1",
        "features.conv3_2",
        "fc6",
        "fc7",
        "fc8",
    ]
    deep_state, a_state = deep.state_dict(), net_a.state_dict()
    for key, value in deep_state.items():
        module = key.rpartition(".")[0].removesuffix(".conv").removesuffix(".fc")
        if module in copied:
            assert torch.equal(value, a_state[key]), key
        else:  # intermediate layers: still their own random initialisation
            assert torch.equal(value, before[key]), key


@pytest.mark.bad_input
def test_init_from_shallower_refuses_what_the_paper_did_not_do(net_a):
    with torch.device("meta"):
        deep, not_a = vgg16(num_classes=10), vgg16(num_classes=10)
        other_classes = vgg16(num_classes=5)
    with pytest.raises(ValueError, match="from net A"):
        init_from_shallower(deep, not_a)
    with pytest.raises(ValueError, match="fc8"):
        init_from_shallower(other_classes.to_empty(device="cpu"), net_a)


def test_fully_convolutional_form(net_a):
    dense = to_fully_convolutional(net_a).eval()
    assert dense.fc6.conv.kernel_size == (7, 7) and dense.fc8.kernel_size == (1, 1)
    torch.manual_seed(3)
    x = torch.randn(1, 3, 224, 224)
    larger = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        # At 224x224 the score map is 1x1 and the logits are the original net's.
        torch.testing.assert_close(dense(x), net_a(x), rtol=1e-4, atol=1e-5)
        scores = dense.score_map(larger)
        assert scores.shape == (1, 10, 2, 2)  # 8x8 after pool5: 2x2 positions of a 7x7 window
        # forward averages the map (here a stand-in map, to spare a second pass).
        dense.score_map = lambda _: scores
        torch.testing.assert_close(dense(larger), scores.mean(dim=(2, 3)))
        del dense.score_map
        # Each position is the original head applied to a 7x7 window of pool5.
        pool5 = net_a.forward_features(larger)
        for row, col in ((0, 0), (1, 0)):
            window = pool5[..., row : row + 7, col : col + 7]
            torch.testing.assert_close(
                scores[..., row, col], net_a.forward_head(window), rtol=1e-4, atol=1e-5
            )
    # Copies, not shared: changing the dense net leaves the original alone.
    with torch.no_grad():
        dense.fc8.bias.add_(1.0)
    assert torch.all(net_a.fc8.bias == 0)


@pytest.mark.parametrize(
    "name",
    ["vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn"],
)
def test_loads_torchvision_weights(name):
    torch.manual_seed(4)
    reference = getattr(torchvision.models, name)(num_classes=10).eval()  # random, no download
    if name.endswith("_bn"):  # non-trivial running statistics, so that BN is really compared
        for module in reference.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    with torch.device("meta"):  # no time spent on our own initialisation
        ours = cnnzoo.create_model(name, num_classes=10).eval()
    ours.load_state_dict(from_torchvision_state_dict(reference.state_dict()), assign=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x))


def test_from_torchvision_state_dict_rejects_other_models():
    with pytest.raises(KeyError, match="not torchvision's vgg"):
        from_torchvision_state_dict({"features.0.weight": torch.zeros(1, 1, 1, 1)})


def test_min_input_size_is_honest(net_a):
    size = net_a.card.min_input_size
    with torch.no_grad():
        assert net_a.forward_features(torch.randn(1, 3, size, size)).shape[-2:] == (1, 1)
        assert net_a(torch.randn(1, 3, size, size)).shape == (1, 10)
    with pytest.raises(cnnzoo.InputShapeError, match=f"at least {size}x{size}"):
        net_a(torch.randn(1, 3, size - 1, size - 1))


def test_torch_export(net_a):
    x = torch.randn(1, 3, 64, 64)
    exported = torch.export.export(net_a, (x,))
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(x), net_a(x))


def test_cards():
    card = cnnzoo.model_card("vgg16")
    assert card.best_error().top5 == 7.5 and card.best_error().source == "Table 4"
    assert cnnzoo.model_card("vgg11").published_errors[0].top1 == 29.6
    assert cnnzoo.model_card("vgg16_bn").published_errors[0].top1 == pytest.approx(26.64)
