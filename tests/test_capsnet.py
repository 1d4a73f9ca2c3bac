"""CapsNet as Sabour, Frosst and Hinton (2017) describe it: the layer sizes of §4 and the
parameter counts of §5, the squash (eq. 1), routing-by-agreement as Procedure 1 writes it,
the margin loss (eq. 4), the masked reconstruction (§4.1) and the 2-pixel shifts of §5."""

from __future__ import annotations

import cnnzoo
import pytest
import torch
from cnnzoo.complexity import count_params
from cnnzoo_capsnet import CapsNet, dynamic_routing, margin_loss, squash
from cnnzoo_capsnet.capsnet import RECONSTRUCTION_WEIGHT
from cnnzoo_data.transforms import build_transform, normalization
from cnnzoo_explain import capsules as capsules_view
from cnnzoo_explain.cli import main as explain
from cnnzoo_explain.images import DatasetImages, recipe_images
from torchvision.datasets import MNIST

# §4-5: Conv1 (256 9x9 kernels), PrimaryCaps (256 -> 32 x 8 maps, 9x9), DigitCaps (an 8x16 W_ij
# for each of the 1152 x 10 pairs), and the decoder's three layers (160 -> 512 -> 1024 -> 784).
LAYER_PARAMS = {
    "conv1": 9 * 9 * 256 + 256,
    "primary_caps": 9 * 9 * 256 * 256 + 256,
    "digit_caps": 1152 * 10 * 8 * 16,
    "decoder": (160 * 512 + 512) + (512 * 1024 + 1024) + (1024 * 784 + 784),
}


@pytest.fixture(scope="module")
def capsnet() -> CapsNet:
    torch.manual_seed(0)
    return cnnzoo.create_model("capsnet")


@pytest.fixture(scope="module")
def digits(mnist_root) -> tuple[torch.Tensor, torch.Tensor]:
    """32 real test digits as pixel intensities in [0, 1], and their labels."""
    test = MNIST(str(mnist_root), train=False)
    return test.data[:32].unsqueeze(1).float() / 255, test.targets[:32]


def test_parameter_counts_are_the_papers(capsnet):
    per_layer = {name: count_params(capsnet.get_submodule(name)) for name in LAYER_PARAMS}
    assert per_layer == LAYER_PARAMS
    without_decoder = count_params(capsnet) - per_layer["decoder"]
    assert round(without_decoder / 1e5) == 68  # "6.8M parameters without the reconstruction"
    assert round(count_params(capsnet) / 1e5) == 82 == capsnet.card.published_params // 100_000


def test_the_layers_give_the_papers_shapes(capsnet):
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        assert capsnet.conv1(x).shape == (2, 256, 20, 20)
        maps = capsnet.forward_features(x)
        assert maps.shape == (2, 256, 6, 6)
        primary = capsnet.primary_caps.capsules(maps)
        assert primary.shape == (2, 1152, 8)  # 32 channels x 6 x 6 grid of 8D capsules
        assert capsnet.capsules(x).shape == (2, 10, 16)
        scores = capsnet(x)
    assert scores.shape == (2, 10)
    assert ((scores >= 0) & (scores < 1)).all()  # lengths of squashed vectors


def test_a_primary_capsule_is_eight_maps_of_one_channel_at_one_position(capsnet):
    maps = torch.randn(1, 256, 6, 6)
    capsules = capsnet.primary_caps.capsules(maps)
    # the capsule of channel 3 at grid position (2, 5): units 24..31 of the 256 maps there
    position = 2 * 6 + 5
    assert torch.allclose(capsules[0, position * 32 + 3], squash(maps[0, 24:32, 2, 5]))


def test_squash_keeps_the_direction_and_maps_the_length_into_0_1():
    s = torch.tensor([[3.0, 4.0], [0.0, 0.0], [0.03, 0.04]])
    v = squash(s)
    assert torch.allclose(v[0], torch.tensor([0.6, 0.8]) * 25 / 26)  # |s|=5: 25/26 long
    assert torch.equal(v[1], torch.zeros(2))
    assert torch.allclose(v[2].norm(), torch.tensor(0.0025 / 1.0025), atol=1e-7)


def routing_written_out(votes: torch.Tensor, iterations: int) -> torch.Tensor:
    """Procedure 1 for one image, capsule by capsule, as the paper writes it."""
    lower, higher, _ = votes.shape
    b = [[0.0] * higher for _ in range(lower)]
    for _ in range(iterations):
        c = [torch.tensor(b[i]).softmax(0) for i in range(lower)]
        s = [sum(c[i][j] * votes[i, j] for i in range(lower)) for j in range(higher)]
        v = [squash(s[j]) for j in range(higher)]
        for i in range(lower):
            for j in range(higher):
                b[i][j] += float(votes[i, j] @ v[j])
    return torch.stack(v)


@pytest.mark.parametrize("iterations", [1, 2, 3])
def test_routing_is_procedure_1(iterations):
    votes = torch.randn(2, 5, 3, 4, generator=torch.Generator().manual_seed(iterations))
    routed = dynamic_routing(votes, iterations)
    for image in range(2):
        expected = routing_written_out(votes[image], iterations)
        assert torch.allclose(routed[image], expected, atol=1e-6)


def test_routing_couples_a_lower_capsule_to_the_higher_capsule_it_agrees_with():
    # Every lower capsule votes the same long pose for capsule 0 and scattered ones for 1:
    # agreement makes capsule 0 longer with each iteration.
    generator = torch.Generator().manual_seed(0)
    votes = torch.zeros(1, 8, 2, 4)
    votes[0, :, 0] = torch.tensor([0.5, 0.0, 0.0, 0.0])
    votes[0, :, 1] = torch.randn(8, 4, generator=generator) * 0.5
    lengths = [dynamic_routing(votes, r)[0].norm(dim=-1) for r in (1, 3)]
    assert lengths[1][0] > lengths[0][0] and lengths[1][1] < lengths[0][1]
    with pytest.raises(ValueError, match="at least one iteration"):
        dynamic_routing(votes, 0)


def test_margin_loss_is_equation_4():
    lengths = torch.tensor([[0.95, 0.3, 0.05], [0.2, 0.8, 0.6]])
    target = torch.tensor([0, 1])
    first = 0.0 + 0.5 * (0.3 - 0.1) ** 2 + 0.0  # present 0.95 > m+; absent 0.05 < m-
    second = 0.5 * (0.2 - 0.1) ** 2 + (0.9 - 0.8) ** 2 + 0.5 * (0.6 - 0.1) ** 2
    assert margin_loss(lengths, target).item() == pytest.approx((first + second) / 2)


def test_training_loss_adds_the_reconstruction_from_the_true_class_only(capsnet, digits):
    images, labels = digits[0][:4], digits[1][:4]
    capsnet.train()
    try:
        scores = capsnet(images)
        loss = capsnet.criterion(scores, labels)
        poses = capsnet.capsules(images)
    finally:
        capsnet.eval()
    # the decoder sees the true class's pose and zeros elsewhere
    masked = torch.zeros_like(poses)
    masked[range(4), labels] = poses[range(4), labels]
    pixels = capsnet.decoder.layers(masked.flatten(1)).view(4, 1, 28, 28)
    squared = (pixels - images).pow(2).flatten(1).sum(1).mean()
    expected = margin_loss(poses.norm(dim=-1), labels) + RECONSTRUCTION_WEIGHT * squared
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    with torch.no_grad():  # evaluation scores carry no poses: the margin loss alone
        assert capsnet.criterion(capsnet(images), labels).item() == pytest.approx(
            margin_loss(capsnet(images), labels).item()
        )


def test_training_scores_without_their_poses_are_refused(capsnet):
    capsnet.train()
    try:
        with pytest.raises(RuntimeError, match=r"without --model\.compile"):
            capsnet.criterion(torch.rand(2, 10), torch.tensor([1, 2]))
    finally:
        capsnet.eval()
    with pytest.raises(ValueError, match="label_smoothing"):
        capsnet.criterion(torch.rand(2, 10), torch.tensor([1, 2]), label_smoothing=0.1)


def test_reconstruction_at_test_time_uses_the_longest_capsule(capsnet):
    poses = torch.zeros(1, 10, 16)
    poses[0, 7, 0] = 0.9
    poses[0, 2, :] = 0.1  # shorter (0.4): masked out
    expected = capsnet.decoder.layers(
        torch.zeros(1, 160).index_put_(
            (torch.tensor([0]), torch.tensor([7 * 16])), torch.tensor(0.9)
        )
    )
    assert torch.allclose(capsnet.reconstruct(poses).flatten(1), expected)


def test_a_new_classifier_brings_a_decoder_for_its_classes():
    model = cnnzoo.create_model("capsnet", num_classes=4)
    assert model.digit_caps.weight.shape == (1152, 4, 16, 8)
    assert model.decoder.layers[0].in_features == 4 * 16
    model.reset_classifier(0)  # timm's "no classifier": the primary capsules' poses
    with torch.no_grad():
        assert model(torch.rand(2, 1, 28, 28)).shape == (2, model.head_hidden_size)


def test_a_few_steps_on_real_digits_lower_the_loss(digits):
    torch.manual_seed(0)
    model = cnnzoo.create_model("capsnet").train()
    images, labels = digits
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(8):
        loss = model.criterion(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    # from 0.9 (every length near 0: 0.81 of margin for the true class) to about 0.5
    assert min(losses[-2:]) < 0.65 * losses[0]


def test_the_capsnet_augmentation_shifts_by_up_to_2_pixels_and_keeps_intensities():
    digit = torch.zeros(1, 28, 28, dtype=torch.uint8)
    digit[0, 10:18, 12:16] = 255
    train = build_transform("capsnet", train=True, image_size=28)
    shifts = set()
    torch.manual_seed(0)
    for _ in range(200):
        shifted = train.geometry(digit)
        assert shifted.shape == (1, 28, 28) and int(shifted.sum()) == int(digit.sum())
        rows, cols = shifted[0].nonzero(as_tuple=True)
        shifts.add((int(rows.min()) - 10, int(cols.min()) - 12))
    assert shifts == {(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)}
    test = build_transform("capsnet", train=False, image_size=28)
    assert torch.equal(test.geometry(digit), digit)
    assert normalization("capsnet", (0.1307,), (0.3081,)) == ((0.0,), (1.0,))


def test_perturbing_a_capsule_dimension_changes_only_that_row_of_fig_4(capsnet, digits):
    image = digits[0][0]
    predicted, tweaked = capsules_view.perturbations(capsnet, image)
    assert tweaked.shape == (16, 11, 1, 28, 28)
    with torch.no_grad():
        poses = capsnet.capsules(image[None])
        untouched = capsnet.reconstruct(poses, torch.tensor([predicted]))[0]
    assert predicted == int(poses.norm(dim=-1).argmax())
    # the middle column tweaks by 0: every row gives the untouched reconstruction there
    assert torch.allclose(tweaked[:, 5], untouched.expand(16, 1, 28, 28), atol=1e-6)
    assert not torch.allclose(tweaked[3, 0], tweaked[3, 10])


def test_the_capsules_view_shows_unnormalised_digits_and_their_reconstructions(
    mnist_root, tmp_path, capsys
):
    argv = ["capsules", "--model", "capsnet", "--data-root", str(mnist_root)]
    assert explain([*argv, "--image", "mnist:test:0-3", "--out", str(tmp_path)]) == 0
    written = sorted(path.name for path in tmp_path.glob("*.png"))
    assert written == [
        "capsules_dimensions_0_mnist_test_0.png",
        "capsules_dimensions_1_mnist_test_1.png",
        "capsules_reconstructions.png",
    ]
    # the model's recipe prepares its images: 28x28 pixel intensities, not LeNet's field
    session_data = DatasetImages("mnist", str(mnist_root), 28, augmentation="capsnet")
    assert session_data.mean == (0.0,) and session_data.std == (1.0,)
    assert recipe_images(cnnzoo.model_card("capsnet"), "mnist") == {"augmentation": "capsnet"}
    assert recipe_images(cnnzoo.model_card("lenet5"), "mnist") == {}
    assert recipe_images(cnnzoo.model_card("capsnet"), "cifar10") == {}
    assert recipe_images(cnnzoo.model_card("st_cnn_aff_mnist_rts"), "mnist") == {
        "distortion": "rts"
    }


@pytest.mark.bad_input
def test_the_capsules_view_refuses_a_network_without_capsules(tmp_path, capsys):
    assert explain(["capsules", "--model", "lenet5", "--out", str(tmp_path)]) == 1
    error = capsys.readouterr().err
    assert "lenet5 has no digit capsules" in error and "--model capsnet" in error
    assert list(tmp_path.glob("*.png")) == []
