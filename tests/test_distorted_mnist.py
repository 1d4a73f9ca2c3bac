"""Distorted MNIST (Jaderberg et al. 2015, §4.1 and Appendix A): each digit's distortion is
seeded by its split and index, each map is the one the appendix describes, and the MNIST data
module serves the sets at their own size."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from cnnzoo.errors import DatasetError
from cnnzoo_data import MNISTDataModule
from cnnzoo_data.distorted_mnist import (
    IMAGE_SIZE,
    RTS_SCALE,
    DistortionError,
    _homographies,
    check_distortion,
    distort_digits,
    distorted_split,
    draw_parameters,
    elastic,
    projective,
    rotated,
    rotated_translated_scaled,
    thin_plate_spline,
)
from torchvision.datasets import MNIST


@pytest.fixture(scope="module")
def digits(mnist_root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The first 16 real test digits (uint8 (16, 1, 28, 28)) and their labels."""
    mnist = MNIST(str(mnist_root), train=False)
    return mnist.data[:16].unsqueeze(1), mnist.targets[:16]


@pytest.mark.parametrize("distortion", ["r", "rts", "p", "e"])
def test_each_digit_is_distorted_as_its_split_and_index_seed_it(digits, distortion):
    """Digit i is the same image whether distorted alone, in a chunk or in the whole split,
    and again; the other split draws other parameters for the same index."""
    images, _ = digits
    whole = distorted_split(images, distortion, "test", chunk=5)
    assert torch.equal(whole, distorted_split(images, distortion, "test"))
    alone = distort_digits(images[7:9], distortion, "test", indices=[7, 8])
    assert torch.equal(alone, whole[7:9])
    other_split = distort_digits(images[:4], distortion, "train")
    assert not torch.equal(other_split, whole[:4])
    size = IMAGE_SIZE[distortion]
    assert whole.shape == (16, 1, size, size) and whole.dtype == torch.uint8
    # Ink is moved, not made: some of each digit is left (P can squash a digit hard), and no
    # more than the scale allows.
    ink, distorted_ink = images.float().sum((1, 2, 3)), whole.float().sum((1, 2, 3))
    largest_area = {"r": 1.02, "rts": RTS_SCALE[1] ** 2, "p": 1.6, "e": 1.3}[distortion]
    assert (distorted_ink > 0.1 * ink).all() and (distorted_ink < largest_area * ink).all()


def test_the_drawn_parameters_lie_in_appendix_a_ranges():
    draws = draw_parameters("rts", "train", range(2000))
    assert (np.abs(draws["degrees"]) <= 45).all() and np.abs(draws["degrees"]).max() > 40
    assert draws["scales"].min() >= 0.7 and draws["scales"].max() <= 1.2
    room = 42 - 28 * draws["scales"]
    assert (draws["corners"] >= 0).all() and (draws["corners"] <= room[:, None]).all()
    assert np.abs(draw_parameters("r", "train", range(2000))["degrees"]).max() > 85
    shifts = draw_parameters("p", "test", range(2000))["shifts"]  # N(0, 5 px) per corner
    assert shifts.shape == (2000, 4, 2) and abs(shifts.std() - 5) < 0.2
    points = draw_parameters("e", "test", range(2000))["shifts"]  # 16 points, N(0, 1.5 px)
    assert points.shape == (2000, 16, 2) and abs(points.std() - 1.5) < 0.05


def test_rotation_by_90_degrees_turns_the_pixel_grid_exactly(digits):
    images, _ = digits
    torch.testing.assert_close(rotated(images, np.zeros(16)), images)
    quarter = rotated(images, np.full(16, 90.0))
    torch.testing.assert_close(quarter, torch.rot90(images, -1, dims=(-2, -1)))


def test_rts_without_rotation_or_scaling_places_the_digit_at_its_corner(digits):
    """Angle 0, scale 1 and the frame's corner at (x, y) = (3, 11): the digit as it is,
    padded into the 42x42 image."""
    images, _ = digits
    count = len(images)
    placed = rotated_translated_scaled(
        images, np.zeros(count), np.ones(count), np.tile([3.0, 11.0], (count, 1))
    )
    torch.testing.assert_close(placed, F.pad(images, (3, 42 - 28 - 3, 11, 42 - 28 - 11)))


def test_rts_digits_stay_inside_their_42x42_image(digits):
    images, _ = digits
    draws = draw_parameters("rts", "test", range(16))
    placed = distort_digits(images, "rts", "test")
    for image, scale, (x, y) in zip(placed, draws["scales"], draws["corners"], strict=True):
        rows, cols = image[0].nonzero(as_tuple=True)
        # The rotated digit stays within its scaled 28s frame (a pixel of interpolation).
        assert cols.min() >= int(x) - 1 and cols.max() <= x + 28 * scale + 1
        assert rows.min() >= int(y) - 1 and rows.max() <= y + 28 * scale + 1


def test_projective_and_elastic_maps_are_the_identity_at_no_distortion(digits):
    images, _ = digits
    count = len(images)
    torch.testing.assert_close(projective(images, np.ones(count), np.zeros((count, 4, 2))), images)
    torch.testing.assert_close(elastic(images, np.ones(count), np.zeros((count, 16, 2))), images)


def test_the_homography_takes_the_four_corners_where_they_were_moved():
    corners = torch.tensor(
        [[[0.0, 0.0], [28.0, 0.0], [28.0, 28.0], [0.0, 28.0]]], dtype=torch.float64
    )
    moved = corners + torch.tensor([[[3.0, -2.0], [-4.0, 1.0], [2.5, 5.0], [-1.0, -3.0]]])
    homography = _homographies(corners, moved)[0]
    mapped = torch.cat([corners[0], torch.ones(4, 1, dtype=torch.float64)], 1) @ homography.T
    torch.testing.assert_close(mapped[:, :2] / mapped[:, 2:], moved[0])


def test_the_thin_plate_spline_passes_through_its_control_points():
    generator = torch.Generator().manual_seed(0)
    control = torch.rand(2, 16, 2, generator=generator, dtype=torch.float64) * 28
    targets = control + torch.randn(2, 16, 2, generator=generator, dtype=torch.float64)
    for k in range(2):
        fitted = thin_plate_spline(control[k : k + 1], targets[k : k + 1], control[k])
        torch.testing.assert_close(fitted[0], targets[k])


def _write_idx(root: Path, images: torch.Tensor, labels: torch.Tensor, prefix: str) -> None:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    count = len(images)
    header = struct.pack(">IIII", 0x0803, count, 28, 28)
    (raw / f"{prefix}-images-idx3-ubyte").write_bytes(header + images.numpy().tobytes())
    label_bytes = labels.to(torch.uint8).numpy().tobytes()
    (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(
        struct.pack(">II", 0x0801, count) + label_bytes
    )


def test_the_mnist_data_module_serves_rts_at_42x42(digits, tmp_path):
    """--data.distortion rts: the digits distorted once, at 42x42, taken whole, normalised by
    the distorted set's own statistics; the plain digits are left as they were."""
    images, labels = digits
    _write_idx(tmp_path, images[:, 0], labels, "train")
    _write_idx(tmp_path, images[:8, 0], labels[:8], "t10k")
    data = MNISTDataModule(root=str(tmp_path), distortion="RTS", num_workers=0, batch_size=4)
    assert data.image_size == 42 and data.augmentation == "none"
    assert data.dataset_name == "MNIST RTS"
    data.setup()
    batch_images, batch_labels = next(iter(data.test_dataloader()))
    assert batch_images.shape == (4, 1, 42, 42)
    expected = distort_digits(images[:4], "rts", "test")
    torch.testing.assert_close(batch_images, expected)
    assert torch.equal(batch_labels, labels[:4])
    plain = MNISTDataModule(root=str(tmp_path), num_workers=0)
    assert plain.image_size == 32 and plain.dataset_name == "MNIST" and plain.distortion is None


@pytest.mark.bad_input
def test_an_unknown_distortion_is_refused_with_the_names_there_are():
    with pytest.raises(
        DistortionError, match=r"unknown MNIST distortion 'rst'; choose one of r, rts, p, e"
    ):
        MNISTDataModule(distortion="rst")
    with pytest.raises(DistortionError, match="unknown MNIST distortion"):
        check_distortion("elastic")
    with pytest.raises(DistortionError, match="uint8 28x28 digits"):
        distort_digits(torch.zeros(2, 1, 32, 32, dtype=torch.uint8), "r", "test")
    with pytest.raises(DistortionError, match="splits"):
        distort_digits(torch.zeros(2, 1, 28, 28, dtype=torch.uint8), "r", "val")


def test_training_digits_are_distorted_afresh_each_epoch(digits, tmp_path):
    """Training draws each digit's distortion anew per epoch, reproducibly for the epoch, from
    the plain digits the held-out validation left; validation and test digits stay fixed."""
    images, labels = digits
    _write_idx(tmp_path, images[:, 0], labels, "train")
    _write_idx(tmp_path, images[:8, 0], labels[:8], "t10k")

    def training_digits(epoch: int) -> dict[int, torch.Tensor]:
        data = MNISTDataModule(
            root=str(tmp_path), distortion="rts", num_workers=0, val_fraction=0.25
        )
        data.setup()
        data.train_set.epoch = epoch
        base = data.train_set.base
        return {base.indices[k]: data.train_set[k][0] for k in range(len(base))}, data

    first, data = training_digits(0)
    again, _ = training_digits(0)
    second, _ = training_digits(1)
    assert len(first) == 12 and all(image.shape == (1, 42, 42) for image in first.values())
    assert all(torch.equal(first[i], again[i]) for i in first)
    assert sum(not torch.equal(first[i], second[i]) for i in first) == 12
    # every training digit is its own plain digit, placed whole in the 42x42 image
    for i, image in first.items():
        ink = images[i].float().sum()
        assert 0.5 < image.float().sum() / ink < 1.6  # scaled by 0.7-1.2: ink by s^2
    # the held-out digits are distorted once, as their index seeds them
    held_out = data.val_set.base.indices
    assert sorted(held_out) == [i for i in range(16) if i not in first]
    val_images = torch.stack([data.val_set[k][0] for k in range(len(held_out))])
    expected = distort_digits(images[held_out], "rts", "train", held_out)
    torch.testing.assert_close(val_images.as_subclass(torch.Tensor), expected)


@pytest.mark.bad_input
def test_fresh_distortions_are_refused_on_the_device_path():
    with pytest.raises(DatasetError, match="distorted afresh each epoch"):
        MNISTDataModule(distortion="rts", on_device=True)
