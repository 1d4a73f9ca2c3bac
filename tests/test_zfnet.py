"""ZFNet (2013): Fig. 3's sizes, the pooling switches a deconvnet needs, the initialisation
and the filter renormalisation of §3."""

from __future__ import annotations

import cnnzoo
import pytest
import torch
import torch.nn.functional as F
from cnnzoo.complexity import complexity
from cnnzoo_zfnet import ZFNet, zfnet
from torch import nn


@pytest.fixture(scope="module")
def net() -> ZFNet:
    torch.manual_seed(0)
    return zfnet().eval()


@pytest.fixture(scope="module")
def switched(net):
    torch.manual_seed(1)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        return x, net.forward_with_switches(x)


def test_parameter_count():
    assert complexity("zfnet").params == 62_357_608


def test_fig3_map_sizes(switched):
    _, (maps, switches) = switched
    assert {name: tuple(m.shape[1:]) for name, m in maps.items()} == {
        "layer1": (96, 55, 55),
        "layer2": (256, 13, 13),
        "layer3": (384, 13, 13),
        "layer4": (384, 13, 13),
        "layer5": (256, 6, 6),
    }
    # Before pooling: 110x110 after layer 1's filters, 26x26 after layer 2's, 13x13 at layer 5.
    assert {name: tuple(s.input_size[-2:]) for name, s in switches.items()} == {
        "layer1": (110, 110),
        "layer2": (26, 26),
        "layer5": (13, 13),
    }


def test_layers_are_dense_with_the_papers_filters(net):
    convs = [m for m in net.features.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size[0], c.stride[0], c.groups) for c in convs] == [
        (96, 7, 2, 1),
        (256, 5, 2, 1),
        (384, 3, 1, 1),
        (384, 3, 1, 1),
        (256, 3, 1, 1),
    ]
    assert net.fc6.fc.in_features == 6 * 6 * 256 == 9216
    assert net.fc7.dropout.p == net.fc6.dropout.p == 0.5
    norms = [name for name, m in net.named_modules() if isinstance(m, nn.LocalResponseNorm)]
    assert norms == ["features.layer1.norm", "features.layer2.norm"]


def test_switches_locate_the_maxima(net, switched):
    """Unpooling layer 5's output through its switches puts every max back where it came
    from, and pooling that again gives the same output (the deconvnet's unpooling, §2.1)."""
    x, (maps, switches) = switched
    layer5 = net.features.layer5
    with torch.no_grad():
        before_pool = layer5.relu(layer5.conv(maps["layer4"]))
    indices = switches["layer5"].indices
    pooled = maps["layer5"]
    gathered = before_pool.flatten(2).gather(2, indices.flatten(2)).view_as(pooled)
    torch.testing.assert_close(gathered, pooled)
    unpooled = F.max_unpool2d(pooled, indices, 3, 2, output_size=switches["layer5"].input_size[-2:])
    assert unpooled.shape == before_pool.shape
    assert torch.count_nonzero(unpooled) <= pooled.numel()
    torch.testing.assert_close(layer5.pool(unpooled), pooled)
    # The maps are those of the plain forward pass.
    with torch.no_grad():
        torch.testing.assert_close(net.forward_features(x), pooled)


def test_paper_initialisation(net):
    for name, param in net.named_parameters():
        if name.endswith("bias"):
            assert torch.all(param == 0), name
        else:
            assert param.std().item() == pytest.approx(0.01, rel=0.1), name


def test_renormalize_filters():
    model = zfnet(num_classes=10)
    conv1 = model.features.layer1.conv
    with torch.no_grad():
        conv1.weight[0] = 1.0  # RMS 1, beyond the radius 0.1
        conv1.weight[1] = 0.05  # RMS 0.05, within it
    untouched = conv1.weight[2:].clone()
    model.renormalize_filters()
    rms = conv1.weight.pow(2).mean(dim=(1, 2, 3)).sqrt()
    assert rms[0].item() == pytest.approx(0.1)
    assert torch.allclose(conv1.weight[1], torch.full_like(conv1.weight[1], 0.05))
    assert torch.equal(conv1.weight[2:], untouched)


def test_min_input_size_is_honest(net):
    size = net.card.min_input_size
    with torch.no_grad():
        assert net.forward_features(torch.randn(1, 3, size, size)).shape[-2:] == (1, 1)
        with pytest.raises(RuntimeError):
            net.forward_features(torch.randn(1, 3, size - 1, size - 1))
    with pytest.raises(cnnzoo.InputShapeError, match=f"at least {size}x{size}"):
        net(torch.randn(1, 3, size - 1, size - 1))


def test_torch_export(net):
    x = torch.randn(1, 3, 96, 96)
    exported = torch.export.export(net, (x,))
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(x), net(x))


def test_card():
    card = cnnzoo.model_card("zfnet")
    assert (card.best_error().top1, card.best_error().top5) == (38.4, 16.5)
    assert "prints no parameter count" in card.params_source
