"""AlexNet (2012) and its one-GPU variant: sizes, the two-GPU split, response normalisation,
initialisation and the model protocol."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import cnnzoo
import pytest
import torch
import torch.nn.functional as F
import torchvision
from cnnzoo.complexity import count_params
from cnnzoo_alexnet import LocalResponseNorm, alexnet, alexnet_owt, from_torchvision_state_dict


@pytest.fixture(scope="module")
def paper_net() -> cnnzoo.ClassifierNet:
    torch.manual_seed(0)
    return alexnet()


@pytest.fixture(scope="module")
def owt_net() -> cnnzoo.ClassifierNet:
    torch.manual_seed(0)
    return alexnet_owt()


@pytest.fixture(params=["paper_net", "owt_net"])
def net(request) -> cnnzoo.ClassifierNet:
    return request.getfixturevalue(request.param)


def test_parameter_counts(paper_net, owt_net):
    assert count_params(paper_net) == 60_965_224
    published = paper_net.card.published_params
    assert abs(count_params(paper_net) - published) / published < 0.02  # "60 million"
    assert count_params(owt_net) == 61_100_840 == count_params(torchvision.models.alexnet())
    assert owt_net.card.published_params == 61_100_840


def test_owt_loads_torchvision_weights(owt_net):
    torch.manual_seed(1)
    reference = torchvision.models.alexnet().eval()  # random init, no download
    owt_net.load_state_dict(from_torchvision_state_dict(reference.state_dict()))
    owt_net.eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(owt_net(x), reference(x))


def test_from_torchvision_state_dict_rejects_other_models():
    with pytest.raises(KeyError, match="not a parameter of torchvision's alexnet"):
        from_torchvision_state_dict({"fc.weight": torch.zeros(1)})


@pytest.mark.parametrize(
    ("stage", "split"),
    [("conv2", True), ("conv3", False), ("conv4", True), ("conv5", True)],
)
def test_two_gpu_split(paper_net, stage, split):
    """A kernel of conv2, conv4 or conv5 sees only its own GPU's half of the maps below it;
    conv3 sees both halves (§3.2)."""
    layer = paper_net.features.get_submodule(stage).eval()
    in_half = layer.conv.in_channels // 2
    out_half = layer.conv.out_channels // 2
    torch.manual_seed(2)
    x = torch.randn(1, layer.conv.in_channels, 9, 9)
    perturbed = x.clone()
    perturbed[:, in_half:] += torch.randn_like(perturbed[:, in_half:])
    with torch.no_grad():
        out, out_perturbed = layer(x), layer(perturbed)
    first_half_unchanged = torch.equal(out[:, :out_half], out_perturbed[:, :out_half])
    assert first_half_unchanged == split
    assert not torch.equal(out[:, out_half:], out_perturbed[:, out_half:])


def paper_response_norm(a: torch.Tensor, n=5, k=2.0, alpha=1e-4, beta=0.75) -> torch.Tensor:
    """§3.3 written out, one map at a time:
    b_i = a_i / (k + alpha * sum of a_j^2 over j = max(0, i - n/2) .. min(N - 1, i + n/2))^beta."""
    maps = a.shape[1]
    b = torch.empty_like(a)
    for i in range(maps):
        lo, hi = max(0, i - n // 2), min(maps - 1, i + n // 2)
        b[:, i] = a[:, i] / (k + alpha * a[:, lo : hi + 1].pow(2).sum(dim=1)) ** beta
    return b


def test_local_response_norm_is_the_papers_formula():
    torch.manual_seed(3)
    # Large activations, so that the sum matters next to k = 2.
    a = torch.randn(2, 12, 4, 4, dtype=torch.float64) * 60
    torch.testing.assert_close(LocalResponseNorm()(a), paper_response_norm(a))
    by_halves = torch.cat([paper_response_norm(a[:, :6]), paper_response_norm(a[:, 6:])], dim=1)
    grouped = LocalResponseNorm(groups=2)(a)
    torch.testing.assert_close(grouped, by_halves)
    # At the boundary between the GPUs' halves the neighbours across it do not count.
    assert not torch.allclose(grouped[:, 4:8], paper_response_norm(a)[:, 4:8])


def test_paper_initialisation(paper_net):
    features = paper_net.features
    for layer in (features.conv2.conv, features.conv4.conv, features.conv5.conv):
        assert torch.all(layer.bias == 1)
    for layer in (paper_net.fc6.fc, paper_net.fc7.fc):
        assert torch.all(layer.bias == 1)
    # "the remaining layers": conv1, conv3 and the output layer fc8 (not a hidden layer).
    for layer in (features.conv1.conv, features.conv3.conv, paper_net.fc8):
        assert torch.all(layer.bias == 0)
    for name, param in paper_net.named_parameters():
        if name.endswith("weight"):
            assert param.std().item() == pytest.approx(0.01, rel=0.05), name
            assert abs(param.mean().item()) < 1e-3, name


def feature_shapes(model: cnnzoo.ClassifierNet, size: int) -> dict[str, torch.Size]:
    shapes = {}
    hooks = [
        model.get_submodule(info.module).register_forward_hook(
            lambda module, inputs, output, name=info.module: shapes.__setitem__(name, output.shape)
        )
        for info in model.feature_info
    ]
    try:
        with torch.no_grad():
            model.eval()(torch.randn(1, 3, size, size))
    finally:
        for hook in hooks:
            hook.remove()
    return shapes


def test_feature_info_matches_the_maps(net):
    at_224, at_256 = feature_shapes(net, 224), feature_shapes(net, 256)
    assert [at_224[info.module][-1] for info in net.feature_info] == [55, 27, 13, 13, 13]
    for info in net.feature_info:
        assert at_224[info.module][1] == info.channels
        # 32 more input pixels give 32/stride more map pixels, whatever the borders do.
        assert 32 // (at_256[info.module][-1] - at_224[info.module][-1]) == info.stride


def test_forward_backward_at_224(net):
    net.train()
    x = torch.randn(2, 3, 224, 224)
    logits = net(x)
    assert logits.shape == (2, 1000)
    F.cross_entropy(logits, torch.tensor([0, 999])).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    net.zero_grad(set_to_none=True)
    with torch.no_grad():
        features = net.eval().forward_features(x)
        assert features.shape == (2, 256, 6, 6)
        assert net.forward_head(features, pre_logits=True).shape == (2, 4096)  # fc7


@pytest.mark.parametrize("name", ["alexnet", "alexnet_owt"])
def test_other_classes_channels_and_reset_classifier(name):
    model = cnnzoo.create_model(name, num_classes=10, in_chans=1)
    assert model.name == name and model.card.num_classes == 1000
    x = torch.randn(2, 1, 96, 96)
    assert model(x).shape == (2, 10)
    model.reset_classifier(5)
    assert model.num_classes == 5
    assert model(x).shape == (2, 5)


def test_wrong_channel_count_is_refused(paper_net):
    with pytest.raises(cnnzoo.InputShapeError, match="3-channel"):
        paper_net(torch.randn(1, 1, 224, 224))


def test_min_input_size_is_honest(net):
    size = net.card.min_input_size
    assert size == 63
    net.eval()
    with torch.no_grad():
        assert net.forward_features(torch.randn(1, 3, size, size)).shape[-2:] == (1, 1)
        assert net(torch.randn(1, 3, size, size)).shape == (1, 1000)
        with pytest.raises(RuntimeError):  # one pixel less leaves nothing for pool5
            net.forward_features(torch.randn(1, 3, size - 1, size - 1))
    with pytest.raises(cnnzoo.InputShapeError, match="at least 63x63"):
        net(torch.randn(1, 3, size - 1, size - 1))


def test_torch_export(paper_net):
    paper_net.eval()
    x = torch.randn(1, 3, 224, 224)
    exported = torch.export.export(paper_net, (x,))
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(x), paper_net(x))


def test_listing_imports_no_plugin():
    code = textwrap.dedent(
        """
        import sys
        import cnnzoo
        assert cnnzoo.list_models("alexnet*") == ["alexnet", "alexnet_owt"], cnnzoo.list_models()
        assert "cnnzoo_alexnet" not in sys.modules
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_cards():
    card = cnnzoo.model_card("alexnet")
    assert card.input_size == (3, 224, 224) and card.num_classes == 1000
    assert card.recipe == "alexnet_imagenet"
    assert {(e.dataset, e.top1, e.top5) for e in card.published_errors} == {
        ("ILSVRC-2010 test", 37.5, 17.0),
        ("ILSVRC-2012 val", 40.7, 18.2),
    }
    assert cnnzoo.model_card("alexnet_owt").year == 2014
