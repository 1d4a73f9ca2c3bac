"""Spatial transformer networks (Jaderberg et al. 2015): the transformer's three parts as §3
defines them, the distorted-MNIST networks of Appendix A, the wrapper around any classifier,
and the explain view of Fig. 3."""

from __future__ import annotations

import cnnzoo
import pytest
import torch
import torch.nn.functional as F
from cnnzoo import create_model
from cnnzoo.complexity import count_params
from cnnzoo_explain.cli import main as explain
from cnnzoo_explain.transformer import NoSpatialTransformerError, find_transformer
from cnnzoo_stn import (
    AffineLocalisation,
    SpatialTransformer,
    SpatialTransformerNet,
    affine_grid,
    bilinear_sample,
    spatial_transformer,
)
from PIL import Image


def test_the_transformer_starts_at_the_identity_and_passes_its_input_through():
    """The regression layer's weights start at zero and its bias at the identity (§4.1):
    theta is [[1, 0, 0], [0, 1, 0]] for every input, and V = U pixel for pixel."""
    torch.manual_seed(0)
    transformer = SpatialTransformer(AffineLocalisation(in_chans=1))
    images = torch.rand(3, 1, 42, 42)
    outputs, theta = transformer.transform(images)
    identity = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    torch.testing.assert_close(theta, identity.expand(3, 2, 3))
    torch.testing.assert_close(outputs, images)


def test_the_sampler_is_eq_5_bilinear_interpolation_by_hand():
    """One output point read at source pixel (x, y) = (1.25, 0.5) of a 2x3 image: by eq. 5,
    sum_nm U_nm max(0, 1 - |x - m|) max(0, 1 - |y - n|) with pixel centres at integers."""
    image = torch.tensor([[[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]]])  # H 2, W 3
    x, y = 1.25, 0.5
    # grid_sample's normalised coordinates (align_corners=False): pixel centre m sits at
    # (2m + 1) / W - 1.
    grid = torch.tensor([[[[(2 * x + 1) / 3 - 1, (2 * y + 1) / 2 - 1]]]])
    by_hand = sum(
        image[0, 0, n, m] * max(0.0, 1 - abs(x - m)) * max(0.0, 1 - abs(y - n))
        for n in range(2)
        for m in range(3)
    )
    # The four neighbours (1, 0), (2, 0), (1, 1), (2, 1) weighted 0.75*0.5, 0.25*0.5, ...
    assert by_hand == pytest.approx(0.375 * 2 + 0.125 * 3 + 0.375 * 5 + 0.125 * 6)
    assert bilinear_sample(image, grid).item() == pytest.approx(float(by_hand))


def test_the_grid_generator_is_eq_1_over_the_normalised_output_grid():
    """(x_s, y_s) = A_theta (x_t, y_t, 1) at each output pixel's normalised centre."""
    theta = torch.tensor([[[0.5, -0.2, 0.1], [0.3, 0.8, -0.4]]])
    grid = affine_grid(theta, [1, 1, 4, 6])
    ys, xs = ((torch.arange(n) * 2 + 1) / n - 1 for n in (4, 6))
    for i, y_t in enumerate(ys):
        for j, x_t in enumerate(xs):
            expected = theta[0] @ torch.stack([x_t, y_t, torch.tensor(1.0)])
            torch.testing.assert_close(grid[0, i, j], expected)


def test_a_translation_theta_moves_the_image_by_whole_pixels():
    """A_theta = [[1, 0, 2/W], [0, 1, 0]] reads each output pixel one pixel to its right."""
    image = torch.arange(20.0).view(1, 1, 4, 5)
    theta = torch.tensor([[[1.0, 0.0, 2 / 5], [0.0, 1.0, 0.0]]])
    shifted = bilinear_sample(image, affine_grid(theta, image.shape))
    torch.testing.assert_close(shifted[..., :4], image[..., 1:])
    assert (shifted[..., 4] == 0).all()  # read from outside the image: zeros


def test_gradients_reach_theta_and_the_localisation_net():
    """The sampler is differentiable in the grid (eq. 7), so the loss moves theta; from the
    identity start only the regression layer's weights get a signal at first."""
    torch.manual_seed(0)
    transformer = SpatialTransformer(AffineLocalisation(in_chans=1))
    images = torch.rand(2, 1, 42, 42)
    theta = transformer.localisation(images)
    theta.retain_grad()
    transformer.sample(images, theta).square().mean().backward()
    assert theta.grad is not None and theta.grad.abs().sum() > 0
    regression = transformer.localisation.regression
    assert regression.weight.grad.abs().sum() > 0 and regression.bias.grad.abs().sum() > 0


def test_an_output_size_samples_v_at_that_size():
    transformer = SpatialTransformer(AffineLocalisation(in_chans=1), output_size=(21, 21))
    assert transformer(torch.rand(2, 1, 42, 42)).shape == (2, 1, 21, 21)


def test_parameter_counts_are_appendix_a_written_out():
    """CNN: conv 32@9x9, conv 32@7x7 and a softmax layer on the 32@5x5 map (42 -> 34 -> 17
    -> 11 -> 5); the localisation net: conv 20@5x5 twice on the pooled input, 20 units, 6."""
    cnn = 32 * (1 * 9 * 9 + 1) + 32 * (32 * 7 * 7 + 1) + 10 * (32 * 5 * 5 + 1)
    localisation = 20 * (5 * 5 + 1) + 20 * (20 * 5 * 5 + 1) + 20 * (20 * 4 * 4 + 1) + 6 * 21
    assert count_params(create_model("cnn_mnist_rts")) == cnn == 60_842
    assert count_params(create_model("st_cnn_aff_mnist_rts")) == cnn + localisation == 77_928
    model = create_model("st_cnn_aff_mnist_rts")
    assert count_params(model.transformer) == localisation
    features = model.forward_features(torch.zeros(1, 1, 42, 42))
    assert features.shape == (1, 32, 5, 5)


def test_the_st_cnn_at_initialisation_is_its_cnn():
    """V = U at the start, so the ST-CNN's logits are those of its CNN on the raw digits."""
    torch.manual_seed(0)
    model = create_model("st_cnn_aff_mnist_rts").eval()
    images = torch.rand(4, 1, 42, 42)
    with torch.no_grad():
        torch.testing.assert_close(model(images), model.classifier(images))


def test_any_registered_classifier_takes_a_transformer_in_front():
    """lenet5 keeps its own loss (eq. 9's MAP criterion), head and stages behind the
    transformer; the names of the stages and the classifier are prefixed."""
    torch.manual_seed(0)
    model = spatial_transformer("lenet5", num_classes=10)
    assert isinstance(model, SpatialTransformerNet) and model.name == "st/lenet5"
    assert model.card.input_size == (1, 32, 32) and model.card.published_errors == ()
    assert model.classifier_name == "classifier.output"
    assert [i.module for i in model.feature_info][:2] == ["transformer", "classifier.features.c1"]
    images = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(images), model.classifier(images))
    # Penalties far above j = 10: the rubbish class of eq. 9 weighs, cross-entropy differs.
    logits, target = torch.randn(2, 10) - 20, torch.tensor([3, 4])
    torch.testing.assert_close(
        model.criterion(logits, target), model.classifier.criterion(logits, target)
    )
    assert not torch.allclose(model.criterion(logits, target), F.cross_entropy(logits, target))
    model.reset_classifier(4)
    assert model(images).shape == (2, 4) and model.num_classes == 4


def test_the_st_namespace_puts_a_transformer_before_every_model_of_the_zoo(
    make_trainer, make_digits, tmp_path
):
    assert cnnzoo.list_models("st/*") == [f"st/{name}" for name in cnnzoo.list_models()]
    model = create_model("st/lenet5_relu", num_classes=7)
    assert isinstance(model, SpatialTransformerNet) and model.name == "st/lenet5_relu"
    assert type(model.classifier).__name__ == "LeNet5ReLU" and model.num_classes == 7
    card = cnnzoo.model_card("st/lenet5_relu")
    assert card.paper == cnnzoo.model_card("lenet5_relu").paper and card.published_errors == ()
    # The trainer takes it by name, and a checkpoint brings it back by that name.
    classifier = cnnzoo.ImageClassifier(arch="st/lenet5_relu", num_classes=10, in_chans=1)
    trainer = make_trainer(max_steps=2, default_root_dir=str(tmp_path))
    trainer.fit(classifier, datamodule=make_digits(image_size=32))
    trainer.save_checkpoint(tmp_path / "st.ckpt")
    restored = cnnzoo.ImageClassifier.from_checkpoint(tmp_path / "st.ckpt").model
    assert restored.name == "st/lenet5_relu"
    assert torch.equal(
        restored.transformer.localisation.regression.bias,
        classifier.model.transformer.localisation.regression.bias,
    )
    with pytest.raises(cnnzoo.ModelNotFoundError, match="Did you mean: st/lenet5"):
        create_model("st/lenet6")


@pytest.mark.bad_input
def test_the_wrapper_refuses_classes_for_a_model_already_built():
    with pytest.raises(ValueError, match="taken as it is"):
        spatial_transformer(create_model("lenet5_relu"), num_classes=3)


@pytest.mark.bad_input
def test_the_registered_nets_take_only_their_42x42_digits():
    with pytest.raises(cnnzoo.InputShapeError, match="only takes 42x42"):
        create_model("st_cnn_aff_mnist_rts")(torch.zeros(1, 1, 28, 28))


def test_explain_transformer_draws_inputs_and_outputs(tmp_path, capsys):
    """The Fig. 3 view at random weights, on a photograph: V equals U (the identity start)."""
    out = tmp_path / "explain"
    code = explain(
        [
            "transformer",
            "--model",
            "st_cnn_aff_mnist_rts",
            "--distortion",
            "none",
            "--image",
            "skimage:camera",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    picture = out / "transformer.png"
    assert picture.is_file() and str(picture) in capsys.readouterr().out
    width, height = Image.open(picture).size
    assert width > 100 and height > 100


def test_explain_transformer_shows_distorted_digits(tmp_path, mnist_root):
    out = tmp_path / "explain"
    code = explain(
        [
            "transformer",
            "--model",
            "st_cnn_aff_mnist_rts",
            "--data-root",
            str(mnist_root),
            "--image",
            "mnist:test:0-3",
            "--out",
            str(out),
        ]
    )
    assert code == 0 and (out / "transformer.png").is_file()


@pytest.mark.bad_input
def test_explain_transformer_refuses_a_model_without_one(tmp_path, capsys):
    code = explain(["transformer", "--model", "lenet5_relu", "--out", str(tmp_path)])
    assert code == 1
    assert "lenet5_relu has no spatial transformer" in capsys.readouterr().err
    with pytest.raises(NoSpatialTransformerError, match="nothing to show"):
        find_transformer(create_model("cnn_mnist_rts"), "cnn_mnist_rts")


@pytest.mark.parametrize(
    ("name", "reported"), [("cnn_mnist_rts", 2.78), ("st_cnn_aff_mnist_rts", 2.02)]
)
def test_the_shipped_rts_weights_give_the_reported_error(name, reported, mnist_root):
    """`pretrained=True` loads the weights of the reproduction row, shipped with the plugin;
    on the first 2,000 RTS test digits their error is the row's, give or take the sample."""
    from cnnzoo_data.distorted_mnist import DISTORTION_STATS, distort_digits
    from torchvision.datasets import MNIST

    mnist = MNIST(str(mnist_root), train=False)
    digits, labels = mnist.data[:2000].unsqueeze(1), mnist.targets[:2000]
    images = distort_digits(digits, "rts", "test").float() / 255
    (mean,), (std,) = DISTORTION_STATS["rts"]
    model = create_model(name, pretrained=True).eval()
    assert model.card.weights[0].mean == (mean,)
    with torch.no_grad():
        predictions = model((images - mean) / std).argmax(1)
    error = 100 * (predictions != labels).float().mean().item()
    assert error < reported + 1.5
    untrained = create_model(name).eval()
    with torch.no_grad():
        assert (untrained((images - mean) / std).argmax(1) != labels).float().mean() > 0.5
