"""LeNet-5 as LeCun, Bottou, Bengio and Haffner (1998) describe it: the sizes of §II.B, the
connection table of C3 (Table I), the RBF output units, the scaled tanh and the
initialisation of Appendix A, and the model protocol."""

from __future__ import annotations

import cnnzoo
import pytest
import torch
from cnnzoo import InputShapeError
from cnnzoo.complexity import count_params
from cnnzoo_lenet.layers import DIGIT_BITMAPS, RUBBISH_PENALTY, ScaledTanh

# §II.B: trainable parameters of each layer.
PAPER_PARAMS = {"c1": 156, "s2": 12, "c3": 1_516, "s4": 32, "c5": 48_120, "f6": 10_164}

# Table I, read column by column: the S2 maps each C3 map is connected to.
TABLE_I = (
    {0, 1, 2}, {1, 2, 3}, {2, 3, 4}, {3, 4, 5}, {4, 5, 0}, {5, 0, 1},
    {0, 1, 2, 3}, {1, 2, 3, 4}, {2, 3, 4, 5}, {3, 4, 5, 0}, {4, 5, 0, 1}, {5, 0, 1, 2},
    {0, 1, 3, 4}, {1, 2, 4, 5}, {0, 2, 3, 5},
    {0, 1, 2, 3, 4, 5},
)  # fmt: skip


@pytest.fixture(scope="module")
def lenet() -> cnnzoo.ClassifierNet:
    """A seeded LeNet-5, shared by the tests that only read it."""
    torch.manual_seed(0)
    return cnnzoo.create_model("lenet5").eval()


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randn(4, 1, 32, 32, generator=torch.Generator().manual_seed(1))


def c3_connections(lenet) -> list[set[int]]:
    table = lenet.features.c3[0].connections
    return [set(row.nonzero().flatten().tolist()) for row in table]


def test_parameter_counts_are_the_papers(lenet):
    per_layer = {
        name: count_params(lenet.features.get_submodule(name))
        for name in ("c1", "s2", "c3", "s4", "c5")
    }
    per_layer["f6"] = count_params(lenet.f6)
    assert per_layer == PAPER_PARAMS
    assert count_params(lenet) == 60_000 == lenet.card.published_params
    assert count_params(cnnzoo.create_model("lenet5_relu")) == 61_706


def test_c3_connection_table_is_table_i(lenet):
    connections = c3_connections(lenet)
    assert connections == list(TABLE_I)
    assert sum(map(len, connections)) == 60

    def contiguous(maps: set[int]) -> bool:  # a run of neighbours, wrapping round from 5 to 0
        return any(maps == {(start + i) % 6 for i in range(len(maps))} for start in range(6))

    assert all(len(m) == 3 and contiguous(m) for m in connections[0:6])
    assert all(len(m) == 4 and contiguous(m) for m in connections[6:12])
    assert all(len(m) == 4 and not contiguous(m) for m in connections[12:15])
    assert connections[15] == set(range(6))


def test_a_c3_map_depends_only_on_its_connected_s2_maps(lenet):
    s2_maps = torch.randn(1, 6, 14, 14, requires_grad=True)
    c3_maps = lenet.features.c3(s2_maps)
    assert c3_maps.shape == (1, 16, 10, 10)
    for output_map, connected in enumerate(TABLE_I):
        (grad,) = torch.autograd.grad(c3_maps[0, output_map].sum(), s2_maps, retain_graph=True)
        depends_on = {i for i in range(6) if grad[0, i].abs().sum() > 0}
        assert depends_on == connected, f"C3 map {output_map}"


def test_rbf_prototypes_are_fixed_plus_minus_one_digit_bitmaps(lenet):
    buffers = dict(lenet.named_buffers())
    assert "output.prototypes" in buffers
    assert "output.prototypes" not in dict(lenet.named_parameters())
    assert "output.prototypes" in lenet.state_dict()  # checkpoints carry the codes
    prototypes = buffers["output.prototypes"]
    assert prototypes.shape == (10, 84)
    assert set(prototypes.unique().tolist()) == {-1.0, 1.0}
    assert len({tuple(code.tolist()) for code in prototypes}) == 10
    for digit, bitmap in enumerate(DIGIT_BITMAPS):
        assert len(bitmap) == 12
        assert all(len(row) == 7 for row in bitmap)  # 7 wide, 12 high (§II.B)
        drawn = torch.tensor([[1.0 if cell == "X" else -1.0 for cell in row] for row in bitmap])
        assert torch.equal(prototypes[digit].view(12, 7), drawn)


def test_rbf_prototypes_stay_fixed_during_training():
    torch.manual_seed(0)
    model = cnnzoo.create_model("lenet5")
    before = model.output.prototypes.clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = torch.nn.functional.cross_entropy(model(torch.randn(8, 1, 32, 32)), torch.arange(8))
    loss.backward()
    optimizer.step()
    assert torch.equal(model.output.prototypes, before)
    assert not torch.equal(model.f6[0].weight.grad, torch.zeros_like(model.f6[0].weight))


def test_logits_are_minus_squared_distances_to_the_prototypes(lenet, images):
    with torch.no_grad():
        f6 = lenet.forward_head(lenet.forward_features(images), pre_logits=True)
        logits = lenet(images)
        expected = -torch.cdist(f6, lenet.output.prototypes).pow(2)
        torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-4)
        # An F6 output equal to a class's code is at distance 0: that class wins.
        on_codes = lenet.output(lenet.output.prototypes)
    assert torch.equal(on_codes.diagonal(), torch.zeros(10))
    assert torch.equal(on_codes.argmax(dim=1), torch.arange(10))


def test_training_criterion_is_equation_9(lenet):
    """E = y_D + log(e^-j + sum_i e^-y_i), with y the RBF penalties (the logits are -y)."""
    penalties = torch.tensor([[0.5, 30.0, 42.0] + [80.0] * 7, [50.0, 60.0, 70.0] + [90.0] * 7])
    target = torch.tensor([0, 1])
    j = RUBBISH_PENALTY
    expected = (
        penalties[torch.arange(2), target]
        + torch.log(torch.exp(torch.tensor(-j)) + torch.exp(-penalties).sum(dim=1))
    ).mean()
    torch.testing.assert_close(lenet.criterion(-penalties, target), expected)
    # Unlike cross-entropy, it still pulls a winning class whose penalty is large: the second
    # digit's class 1 loses to nobody but 0, yet its penalty of 60 dominates the loss.
    cross_entropy = torch.nn.functional.cross_entropy(-penalties, target)
    assert lenet.criterion(-penalties, target) > cross_entropy + 20


def test_the_trainer_uses_the_models_criterion(lenet):
    module = cnnzoo.ImageClassifier("lenet5")
    logits, target = -torch.rand(3, 10) * 50, torch.tensor([1, 2, 3])
    torch.testing.assert_close(module._loss(logits, target), module.model.criterion(logits, target))


def test_scaled_tanh_maps_plus_minus_one_to_plus_minus_one():
    squash = ScaledTanh()
    values = squash(torch.tensor([-1.0, 0.0, 1.0, 100.0]))
    torch.testing.assert_close(values[:3], torch.tensor([-1.0, 0.0, 1.0]), atol=1e-3, rtol=0)
    assert values[3].item() == pytest.approx(1.7159)  # the amplitude A of Appendix A


@pytest.mark.parametrize("in_chans", [1, 3])
def test_initialisation_is_uniform_within_2_4_over_fan_in(in_chans):
    torch.manual_seed(0)
    model = cnnzoo.create_model("lenet5", in_chans=in_chans)
    c1, c5, f6 = model.features.c1[0], model.features.c5[0], model.f6[0]
    bounds = {  # parameter -> 2.4 / fan-in of its units (Appendix A)
        c1.weight: 2.4 / (in_chans * 25),
        c1.bias: 2.4 / (in_chans * 25),
        c5.weight: 2.4 / 400,
        c5.bias: 2.4 / 400,
        f6.weight: 2.4 / 120,
        f6.bias: 2.4 / 120,
    }
    for subsampling in (model.features.s2, model.features.s4):
        bounds[subsampling.coefficient] = bounds[subsampling.bias] = 2.4 / 4
    for param, bound in bounds.items():
        assert param.abs().max() <= bound
    for param in (c1.weight, c5.weight, f6.weight):  # uniform over the whole range
        assert param.abs().max() > 0.95 * bounds[param]
        assert param.std().item() == pytest.approx(bounds[param] / 3**0.5, rel=0.1)
    # C3: a map connected to k S2 maps has fan-in 25k.
    c3 = model.features.c3[0]
    fan_in = torch.tensor([25 * len(maps) for maps in TABLE_I], dtype=torch.float)
    kernel_owner = c3.connections.nonzero()[:, 0]
    kernel_bound = (2.4 / fan_in)[kernel_owner]
    assert torch.all(c3.weight.abs().amax(dim=(1, 2)) <= kernel_bound)
    assert torch.all(c3.bias.abs() <= 2.4 / fan_in)
    used = c3.weight.abs().amax(dim=(1, 2)) / kernel_bound  # near 1 where the bound is right
    for maps in (3, 4, 6):
        assert used[fan_in[kernel_owner] == 25 * maps].max() > 0.9


@pytest.mark.parametrize("name", ["lenet5", "lenet5_relu"])
def test_feature_info_matches_the_feature_maps(name):
    """Channels from the maps at 32x32; strides from how much the maps grow with the input."""
    model = cnnzoo.create_model(name).eval()
    shapes: dict[str, list[torch.Size]] = {info.module: [] for info in model.feature_info}
    hooks = [
        model.get_submodule(module).register_forward_hook(
            lambda _m, _i, out, module=module: shapes[module].append(out.shape)
        )
        for module in shapes
    ]
    with torch.no_grad():
        model.forward_features(torch.zeros(1, 1, 32, 32))
        model.forward_features(torch.zeros(1, 1, 64, 64))
    for hook in hooks:
        hook.remove()
    assert [info.module for info in model.feature_info] == [
        f"features.{s}" for s in ("c1", "s2", "c3", "s4", "c5")
    ]
    for info in model.feature_info:
        at_32, at_64 = shapes[info.module]
        assert at_32[1] == info.channels, info.module
        assert 32 // (at_64[-1] - at_32[-1]) == info.stride, info.module
    assert shapes["features.c5"][0][-2:] == (1, 1)  # C5 is 120@1x1 at the paper's input size


@pytest.mark.parametrize("name", ["lenet5", "lenet5_relu"])
def test_forward_head_pre_logits_and_reset_classifier(name, images):
    torch.manual_seed(0)
    model = cnnzoo.create_model(name).eval()
    features = model.forward_features(images)
    assert features.shape == (4, 120, 1, 1)
    assert model.forward_head(features, pre_logits=True).shape == (4, 84)
    f6_weight = model.f6[0].weight
    model.reset_classifier(5)
    assert model.num_classes == 5
    assert model.f6[0].weight is f6_weight  # only the classifier changes
    with torch.no_grad():
        assert model(images).shape == (4, 5)


@pytest.mark.bad_input
def test_wrong_channels_size_or_rank_raise_input_shape_error(lenet):
    with pytest.raises(InputShapeError, match=r"1-channel images but got 3 channels.*in_chans=3"):
        lenet(torch.zeros(1, 3, 32, 32))
    with pytest.raises(InputShapeError, match=r"only takes 32x32 images.*got 28x28.*pad"):
        lenet(torch.zeros(1, 1, 28, 28))
    with pytest.raises(InputShapeError, match=r"\(N, C, H, W\).*unsqueeze\(0\)"):
        lenet(torch.zeros(1, 32, 32))
    assert issubclass(InputShapeError, ValueError)


def test_torch_export_equals_eager(lenet, images):
    exported = torch.export.export(lenet, (images,))
    other = torch.randn(4, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(images), lenet(images))
        torch.testing.assert_close(exported.module()(other), lenet(other))
