"""LeNet-5's distortions (§III.C): planar affine maps of the training digits, drawn per image
and epoch, and the recipe and paper row that go with them."""

from __future__ import annotations

import pytest
import torch
from cnnzoo import model_card
from cnnzoo_classify.reproduce import paper_error, recipe_for
from cnnzoo_data.distortions import distort
from cnnzoo_data.sampling import TransformedDataset
from cnnzoo_data.transforms import build_transform


def bar(height: int = 32, width: int = 32) -> torch.Tensor:
    """A 10x4 block of ink (255) on background 0: rows 11-20, columns 14-17."""
    image = torch.zeros(1, height, width, dtype=torch.uint8)
    image[:, 11:21, 14:18] = 255
    return image


def ink_box(image: torch.Tensor) -> tuple[float, float, float, float]:
    """Ink-weighted centre (x, y) and extent (width, height) of an image's ink."""
    ink = image[0].float()
    ys, xs = torch.meshgrid(torch.arange(ink.shape[0]), torch.arange(ink.shape[1]), indexing="ij")
    total = ink.sum()
    cx, cy = (xs * ink).sum() / total, (ys * ink).sum() / total
    width = ((xs - cx) ** 2 * ink).sum() / total
    height = ((ys - cy) ** 2 * ink).sum() / total
    return float(cx), float(cy), float(width.sqrt()), float(height.sqrt())


def test_the_identity_map_leaves_the_digit_as_it_was():
    image = bar()
    assert torch.equal(distort(image, (0.0, 0.0), 1.0, 1.0, 0.0), image)


def test_each_parameter_moves_the_ink_as_the_paper_names_it():
    cx, cy, width, height = ink_box(bar())
    # Translations in pixels: x to the right, y down.
    moved = ink_box(distort(bar(), (2.0, -1.0), 1.0, 1.0, 0.0))
    assert moved[0] == pytest.approx(cx + 2, abs=1e-4) and moved[1] == pytest.approx(
        cy - 1, abs=1e-4
    )
    # Scaling grows both sides about the centre.
    scaled = ink_box(distort(bar(), (0.0, 0.0), 1.1, 1.0, 0.0))
    assert scaled[2] > width * 1.05 and scaled[3] > height * 1.05
    # Squeezing: horizontal compression with vertical elongation (and the reverse below 1).
    squeezed = ink_box(distort(bar(), (0.0, 0.0), 1.0, 1.1, 0.0))
    assert squeezed[2] < width * 0.97 and squeezed[3] > height * 1.05
    # Horizontal shearing slants the bar: its top moves left of its bottom (x += shear * y).
    sheared = distort(bar(), (0.0, 0.0), 1.0, 1.0, 0.2)[0].float()
    columns = torch.arange(32).float()
    top, bottom = (float((row * columns).sum() / row.sum()) for row in (sheared[12], sheared[19]))
    assert bottom - top == pytest.approx(0.2 * 7, abs=0.3)


def test_nine_in_ten_training_digits_are_distorted_and_the_draws_are_seeded():
    """Through the training transform and `TransformedDataset`: the same (seed, epoch, image)
    gives the same digit, another epoch another one, and about 90% of digits change."""
    transform = build_transform("lenet_distorted", train=True, image_size=32)
    assert transform.random
    digits = [(torch.zeros(1, 28, 28, dtype=torch.uint8), 0) for _ in range(400)]
    for image, _ in digits:
        image[:, 6:22, 12:16] = 255
    data = TransformedDataset(digits, transform.geometry, seed=0, random=True)
    plain = build_transform("lenet", train=True, image_size=32).geometry(digits[0][0])
    first = [data[i][0] for i in range(len(digits))]
    assert all(torch.equal(a, data[i][0]) for i, a in enumerate(first))
    share = sum(not torch.equal(image, plain) for image in first) / len(first)
    assert 0.85 < share < 0.95
    data.epoch = 1
    assert sum(not torch.equal(first[i], data[i][0]) for i in range(len(digits))) > 300
    # Evaluation digits are never distorted.
    test = build_transform("lenet_distorted", train=False, image_size=32)
    assert not test.random and torch.equal(test.geometry(digits[0][0]), plain)


def test_the_distorted_recipe_is_compared_with_the_papers_distorted_row():
    card = model_card("lenet5")
    assert paper_error(card, "MNIST", "lenet5_mnist_distorted").top1 == 0.8
    assert paper_error(card, "MNIST", "lenet5_mnist").top1 == 0.95
    assert paper_error(card, "MNIST").top1 == 0.95
    # `--dataset mnist` names the undistorted recipe; the distorted one is run by its name.
    assert recipe_for("lenet5", "mnist").stem == "lenet5_mnist"
