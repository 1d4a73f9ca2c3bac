"""Resnet in Resnet (Targ, Almeida and Lyman 2016): Eq. 1 computed by hand, ResNet Init's
identity kernel, the RiR block's outer shortcut, the 18-layer + wide network's stages and
parameters, and a few real training steps."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from cnnzoo import create_model, model_card
from cnnzoo.recipes import list_recipes
from cnnzoo_resnet.rir import (
    WIDE_RIR_18,
    ResnetInit,
    ResnetInResnet,
    RiRBlock,
    RiRStage,
    rir_cifar10,
    streams,
)
from PIL import Image
from torch import nn


def randomise_batchnorm(module: nn.Module, seed: int = 0) -> None:
    """Scales and shifts away from 1 and 0, so that the hand computation has to use them."""
    generator = torch.Generator().manual_seed(seed)
    for norm in module.modules():
        if isinstance(norm, nn.BatchNorm2d):
            with torch.no_grad():
                norm.weight.copy_(torch.rand(norm.num_features, generator=generator) + 0.5)
                norm.bias.copy_(torch.randn(norm.num_features, generator=generator))


def test_rir_cifar10_has_the_stage_tables_parameters_written_out():
    conv1 = 3 * 96 * 9 + 2 * 96  # 3x3 into both streams of 48, BatchNorm

    # A ResnetInit layer: W_r->r, W_t->r, W_r->t, W_t->t, each 3x3 c_in -> c_out, and a
    # BatchNorm over each stream's c_out maps.
    def layer(c_in: int, c_out: int) -> int:
        return 4 * 9 * c_in * c_out + 2 * 2 * c_out

    stage1 = 4 * layer(48, 48)
    stage2 = layer(48, 96) + 5 * layer(96, 96)
    stage3 = layer(96, 192) + 5 * layer(192, 192)
    fc = 2 * 192 * 10 + 10
    model = rir_cifar10()
    assert sum(p.numel() for p in model.parameters()) == conv1 + stage1 + stage2 + stage3 + fc
    assert conv1 + stage1 + stage2 + stage3 + fc == 9_469_930
    assert model_card("rir_cifar10").published_params == 9_469_930


def test_rir_cifar10_has_18_weighted_layers_in_8_rir_blocks():
    model = rir_cifar10()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(convs) + len(linears) == 18
    assert [len(model.get_submodule(name)) for name in model.stage_names] == [2, 3, 3]
    blocks = [m for m in model.modules() if isinstance(m, RiRBlock)]
    assert len(blocks) == 8 and all(len(block.layers) == 2 for block in blocks)
    assert [stage.width for stage in WIDE_RIR_18] == [48, 96, 192]


@pytest.mark.parametrize(("c_in", "c_out", "stride"), [(3, 3, 1), (2, 4, 2)])
def test_resnet_init_is_equation_1_computed_by_hand(c_in, c_out, stride):
    torch.manual_seed(0)
    layer = ResnetInit(c_in, c_out, stride)
    randomise_batchnorm(layer)
    r, t = torch.randn(4, c_in, 6, 6), torch.randn(4, c_in, 6, 6)
    out_r, out_t = streams(layer.train()(torch.cat((r, t), dim=1)))

    weight = layer.conv.weight
    w_rr, w_tr = weight[:c_out, :c_in], weight[:c_out, c_in:]
    w_rt, w_tt = weight[c_out:, :c_in], weight[c_out:, c_in:]

    def conv(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, w, stride=stride, padding=1)

    # shortcut(r_l): the identity every `stride` pixels, zero maps for the extra width.
    shortcut = F.pad(r[:, :, ::stride, ::stride], (0, 0, 0, 0, 0, c_out - c_in))

    def sigma(x: torch.Tensor, maps: slice) -> torch.Tensor:
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        var = x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
        scale = layer.bn.weight[maps].view(1, -1, 1, 1)
        shift = layer.bn.bias[maps].view(1, -1, 1, 1)
        return torch.relu((x - mean) / torch.sqrt(var + layer.bn.eps) * scale + shift)

    want_r = sigma(conv(r, w_rr) + conv(t, w_tr) + shortcut, slice(0, c_out))
    want_t = sigma(conv(r, w_rt) + conv(t, w_tt), slice(c_out, None))
    torch.testing.assert_close(out_r, want_r, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out_t, want_t, rtol=1e-4, atol=1e-5)
    assert torch.equal(layer.weight("t", "r"), w_tr) and torch.equal(layer.weight("r", "t"), w_rt)


@pytest.mark.parametrize(("c_in", "c_out", "stride"), [(3, 3, 1), (2, 4, 2)])
def test_resnet_init_is_one_convolution_with_an_identity_in_its_r_to_r_kernel(c_in, c_out, stride):
    """ResNet Init: a standard convolution over [r, t] whose kernel has the identity added
    at the centre of its r -> r part gives the generalized residual block, before σ."""
    torch.manual_seed(1)
    layer = ResnetInit(c_in, c_out, stride)
    x = torch.randn(2, 2 * c_in, 7, 7)
    identity = torch.zeros_like(layer.conv.weight)
    for channel in range(c_in):
        identity[channel, channel, 1, 1] = 1.0
    resnet_init = F.conv2d(x, layer.conv.weight + identity, stride=stride, padding=1)
    block = layer.conv(x) + layer.shortcut(x[:, :c_in])
    torch.testing.assert_close(block, resnet_init)


def test_the_outer_shortcut_of_an_rir_block_is_the_identity_on_the_residual_stream():
    torch.manual_seed(2)
    block = RiRBlock(4, 4).eval()
    randomise_batchnorm(block)
    r, t = torch.randn(2, 4, 5, 5), torch.randn(2, 4, 5, 5)
    x = torch.cat((r, t), dim=1)
    with torch.no_grad():
        out, stack = block(x), block.layers(x)
    # r joins the residual stream's maps; the transient stream has no shortcut.
    assert torch.equal(out, stack + torch.cat((r, torch.zeros_like(t)), dim=1))
    assert not torch.equal(out, stack)
    assert not any(p.numel() for p in block.shortcut.parameters())


def test_a_downsampling_rir_block_subsamples_and_zero_pads_its_outer_shortcut():
    torch.manual_seed(3)
    block = RiRBlock(2, 4, stride=2).eval()
    r, t = torch.randn(1, 2, 6, 6), torch.randn(1, 2, 6, 6)
    x = torch.cat((r, t), dim=1)
    with torch.no_grad():
        out, stack = block(x), block.layers(x)
    assert out.shape == stack.shape == (1, 8, 3, 3)
    # every other pixel of r, zero maps for the two extra residual maps and for t
    shortcut = torch.cat((r[:, :, ::2, ::2], torch.zeros(1, 6, 3, 3)), dim=1)
    assert torch.equal(out, stack + shortcut)


def test_rir_cifar10_halves_the_map_and_doubles_the_width_at_each_stage():
    model = rir_cifar10().eval()
    shapes = {}
    for info in model.feature_info:
        model.get_submodule(info.module).register_forward_hook(
            lambda _m, _i, out, key=info.module: shapes.__setitem__(key, tuple(out.shape))
        )
    with torch.no_grad():
        logits = model(torch.randn(1, 3, 32, 32))
    assert shapes == {
        "conv1": (1, 96, 32, 32),
        "stage1": (1, 96, 32, 32),
        "stage2": (1, 192, 16, 16),
        "stage3": (1, 384, 8, 8),
    }
    assert logits.shape == (1, 10)
    assert create_model("rir_cifar10", num_classes=100).fc.out_features == 100


def test_the_card_gives_table_1s_errors_and_a_shipped_recipe():
    card = model_card("rir_cifar10")
    errors = {(e.dataset, e.top1) for e in card.published_errors}
    assert errors == {("CIFAR-10 test", 5.01), ("CIFAR-100 test", 22.90)}
    assert all(e.source.startswith("Table 1: 18-layer + wide RiR") for e in card.published_errors)
    assert card.recipe == "rir_cifar10" and "rir_cifar10" in list_recipes()
    assert card.input_size == (3, 32, 32)


def cifar10_images(archive, per_class: int, classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `per_class` training images of the first `classes` classes in the archive
    (train/<class>/NNNN.jpg, one class after another), as floats normalised per channel."""
    images: dict[str, list[np.ndarray]] = {}
    with tarfile.open(archive, "r|gz") as tar:
        for member in tar:
            parts = member.name.split("/")
            if not member.isfile() or parts[0] != "train":
                continue
            if parts[1] not in images and len(images) == classes:
                break
            taken = images.setdefault(parts[1], [])
            if len(taken) < per_class:
                data = tar.extractfile(member).read()
                taken.append(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
    pixels = np.stack([image for taken in images.values() for image in taken])
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255
    x = (x - x.mean(dim=(0, 2, 3), keepdim=True)) / x.std(dim=(0, 2, 3), keepdim=True)
    y = torch.arange(len(images)).repeat_interleave(per_class)
    return x, y


def test_a_few_sgd_steps_on_real_cifar10_images_lower_the_loss(shared_data):
    archive = shared_data / "cifar10-jpg.tar.gz"
    if not archive.is_file():
        pytest.skip(f"CIFAR-10 is not at {archive}")
    x, y = cifar10_images(archive, per_class=8, classes=2)
    assert x.shape == (16, 3, 32, 32)
    torch.manual_seed(0)
    # The paper's blocks and stages at an eighth of the width: a test's few seconds of CPU.
    thin = (RiRStage(6, 2, 1), RiRStage(12, 3, 2), RiRStage(24, 3, 2))
    model = ResnetInResnet(thin, num_classes=10).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(8):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all()
    assert 1.5 < losses[0] < 4.0  # about ln 10 for a fresh 10-way classifier
    assert losses[-1] < 0.7 * losses[0], losses
