"""The data modules: splits, the papers' transforms, reproducible sampling, and datasets that
are missing, laid out wrongly or corrupt."""

from __future__ import annotations

import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from cnnzoo import DatasetError
from cnnzoo_data import (
    CIFAR10DataModule,
    CIFAR100DataModule,
    DigitsDataModule,
    ImageFolderDataModule,
    MNISTDataModule,
    build_transform,
)
from cnnzoo_data.datamodule import TensorImages
from cnnzoo_data.digits import digit_fields
from cnnzoo_data.sampling import EpochSampler, EvalSampler, TransformedDataset
from conftest import photo, write_jpeg
from PIL import Image

CIFAR10_CLASSES = list(CIFAR10DataModule.classes)


def items(dataset) -> list[tuple[torch.Tensor, int]]:
    return [dataset[i] for i in range(len(dataset))]


def fingerprints(dataset) -> Counter:
    """Each (image, label) of a dataset, counted: equal multisets mean the same samples."""
    return Counter((image.numpy().tobytes(), int(label)) for image, label in items(dataset))


@pytest.fixture(scope="module")
def digits() -> DigitsDataModule:
    datamodule = DigitsDataModule(num_workers=0, seed=0)
    datamodule.setup()
    return datamodule


@pytest.fixture(scope="module")
def mnist(mnist_root) -> MNISTDataModule:
    datamodule = MNISTDataModule(
        root=str(mnist_root), num_workers=0, val_fraction=0.1, eval_batch_size=2000
    )
    datamodule.setup()
    return datamodule


def test_digit_splits_are_disjoint_and_cover_all_digits(digits):
    from sklearn.datasets import load_digits

    sizes = [len(digits.train_set), len(digits.val_set), len(digits.test_set)]
    assert sizes == [1_294, 144, 359]  # 20% test, then 10% of the rest for validation
    everything = load_digits()
    fields = F.pad(digit_fields(torch.from_numpy(everything.images)), (2, 2, 2, 2))
    expected = fingerprints(TensorImages(fields, torch.from_numpy(everything.target)))
    found = (
        fingerprints(digits.train_set)
        + fingerprints(digits.val_set)
        + fingerprints(digits.test_set)
    )
    assert found == expected


def test_digit_splits_follow_the_seed(digits):
    again = DigitsDataModule(num_workers=0, seed=0)
    again.setup()
    other = DigitsDataModule(num_workers=0, seed=1)
    other.setup()
    assert fingerprints(again.test_set) == fingerprints(digits.test_set)
    assert fingerprints(again.val_set) == fingerprints(digits.val_set)
    assert fingerprints(other.test_set) != fingerprints(digits.test_set)


def test_digit_items_are_uint8_fields_and_batches_lenet_normalised(digits):
    image, label = digits.train_set[0]
    assert image.dtype == torch.uint8
    assert image.shape == (1, 32, 32)
    assert 0 <= label <= 9
    images, labels = next(iter(digits.train_dataloader()))
    assert images.dtype == torch.uint8
    normalised, same_labels = digits.on_after_batch_transfer((images, labels), 0)
    assert normalised.dtype == torch.float32
    assert torch.equal(same_labels, labels)
    # LeNet-5 §III.A: background at -0.1, full ink at 1.175.
    torch.testing.assert_close(
        normalised[..., :6, :], torch.full_like(normalised[..., :6, :], -0.1)
    )
    assert normalised.min().item() == pytest.approx(-0.1, abs=1e-5)
    assert normalised.max().item() == pytest.approx(1.175, abs=1e-5)
    torch.testing.assert_close(normalised, images.float() / 255 * 1.275 - 0.1)


def test_mnist_splits_and_centred_32x32_fields(mnist):
    assert [len(mnist.train_set), len(mnist.val_set), len(mnist.test_set)] == [
        54_000,
        6_000,
        10_000,
    ]
    batches = list(mnist.test_dataloader())
    images = torch.cat([b[0] for b in batches])
    labels = torch.cat([b[1] for b in batches])
    assert images.shape == (10_000, 1, 32, 32)
    assert images.dtype == torch.uint8
    assert set(labels.tolist()) == set(range(10))
    border = torch.ones(32, 32, dtype=torch.bool)
    border[2:-2, 2:-2] = False
    assert images[..., border].max() == 0  # the 28x28 digits padded by 2 on every side
    assert images.amax(dim=(1, 2, 3)).min() > 100  # every field holds a digit
    ink = images.float().squeeze(1)
    rows = (ink.sum(dim=2) * torch.arange(32)).sum(dim=1) / ink.sum(dim=(1, 2))
    cols = (ink.sum(dim=1) * torch.arange(32)).sum(dim=1) / ink.sum(dim=(1, 2))
    # MNIST centres each digit's centre of mass; in the 32x32 field it sits near the middle.
    assert abs(rows.mean().item() - 15.5) < 1
    assert abs(cols.mean().item() - 15.5) < 1


def test_mnist_without_validation_fraction_validates_on_the_test_split(mnist_root):
    datamodule = MNISTDataModule(root=str(mnist_root), num_workers=0, val_fraction=0.0)
    datamodule.setup()
    assert len(datamodule.train_set) == 60_000
    assert len(datamodule.val_set) == len(datamodule.test_set) == 10_000


@pytest.mark.bad_input
def test_missing_mnist_names_the_folder_and_the_idx_files(tmp_path):
    root = tmp_path / "no-mnist-here"
    with pytest.raises(DatasetError) as info:
        MNISTDataModule(root=str(root), num_workers=0).setup()
    message = str(info.value)
    assert str(root) in message
    for name in ("train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        assert name in message
    assert "--data.download true" in message
    assert isinstance(info.value, FileNotFoundError)


def test_image_folder_classes_and_alexnet_crops(photo_tree):
    datamodule = ImageFolderDataModule(
        root=str(photo_tree), augmentation="alexnet", test_crops="ten", num_workers=0
    )
    assert datamodule.classes == ["cat", "coffee", "rocket"]
    assert (datamodule.num_classes, datamodule.in_chans) == (3, 3)
    datamodule.setup()
    assert (len(datamodule.train_set), len(datamodule.val_set)) == (6, 3)
    assert len(datamodule.test_set) == 3  # the papers' ImageNet error is on the val split
    crop, label = datamodule.train_set[0]
    assert crop.shape == (3, 224, 224)
    assert crop.dtype == torch.uint8
    assert label == 0
    # The augmentation of an image is drawn by (seed, epoch, index), whatever the global RNG.
    torch.manual_seed(1)
    assert torch.equal(datamodule.train_set[0][0], crop)
    datamodule.train_set.epoch = 1
    assert not torch.equal(datamodule.train_set[0][0], crop)  # random crops and flips
    crops, _ = datamodule.val_set[0]
    assert crops.shape == (10, 3, 224, 224)
    assert crops.dtype == torch.uint8
    # AlexNet §4.1: four corners and the centre, and the same five of the mirrored image.
    assert torch.equal(crops[9], crops[4].flip(-1))
    assert torch.equal(crops[5], crops[1].flip(-1))
    assert torch.equal(crops[6], crops[0].flip(-1))
    assert not torch.equal(crops[0], crops[4])


@pytest.mark.bad_input
def test_a_corrupt_image_is_named_when_loaded(photo_tree):
    corrupt = photo_tree / "train" / "cat" / "x.jpg"
    corrupt.write_bytes(b"this is not a JPEG" * 10)
    datamodule = ImageFolderDataModule(root=str(photo_tree), num_workers=0, batch_size=7)
    datamodule.setup()
    with pytest.raises(DatasetError, match="cannot decode image") as info:
        for _ in datamodule.train_dataloader():
            pass
    assert str(corrupt) in str(info.value)


@pytest.mark.bad_input
def test_a_missing_image_folder_is_refused(tmp_path):
    with pytest.raises(DatasetError, match="does not exist") as info:
        ImageFolderDataModule(root=str(tmp_path / "imagenet"))
    assert "imagenet/train/<class>/<image>" in str(info.value)


@pytest.mark.bad_input
def test_a_val_folder_with_other_classes_is_refused(photo_tree):
    (photo_tree / "val" / "rocket").rename(photo_tree / "val" / "dog")
    datamodule = ImageFolderDataModule(root=str(photo_tree), num_workers=0)
    with pytest.raises(DatasetError, match="other classes than the training folder") as info:
        datamodule.setup()
    assert "extra: ['dog']" in str(info.value)
    assert "missing: ['rocket']" in str(info.value)


@pytest.mark.parametrize(
    ("module", "pickles"),
    [(CIFAR10DataModule, "cifar-10-batches-py"), (CIFAR100DataModule, "cifar-100-python")],
)
@pytest.mark.bad_input
def test_missing_cifar_lists_the_layouts_it_reads(tmp_path, module, pickles):
    with pytest.raises(DatasetError) as info:
        module(root=str(tmp_path / "nothing"), num_workers=0).setup()
    message = str(info.value)
    assert str(tmp_path / "nothing") in message
    assert f"{pickles}/ folder" in message
    assert "ImageFolder tree with train/<class>/*.jpg and test/<class>/*.jpg" in message
    assert ".tar.gz" in message


@pytest.fixture
def cifar_archive(tmp_path, monkeypatch) -> Path:
    """A tiny CIFAR-10 in the shared data's layout: a .tar.gz of train/ and test/ class
    folders of 32x32 JPEGs (cut from a real photo), with the cache in tmp_path."""
    monkeypatch.setenv("CNNZOO_CACHE", str(tmp_path / "cache"))
    tree = tmp_path / "cifar10-jpg"
    pixels = photo("astronaut", short_side=160)
    for index, label in enumerate(CIFAR10_CLASSES):
        for split, count in (("train", 2), ("test", 1)):
            for k in range(count):
                top = 8 * index + 32 * k
                write_jpeg(tree / split / label / f"{k}.jpg", pixels[top : top + 32, :32].copy())
    archive = tmp_path / "cifar10-jpg.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree / "train", arcname="train")
        tar.add(tree / "test", arcname="test")
    return archive


def test_cifar_from_a_tar_gz_of_jpegs_is_unpacked_and_decoded_once(tmp_path, cifar_archive):
    datamodule = CIFAR10DataModule(root=str(cifar_archive), num_workers=0, val_fraction=0.5)
    datamodule.setup()
    assert datamodule.classes == CIFAR10_CLASSES
    assert [len(datamodule.train_set), len(datamodule.val_set)] == [10, 10]
    test_images = torch.stack([image for image, _ in items(datamodule.test_set)])
    assert test_images.shape == (10, 3, 32, 32)
    assert test_images.dtype == torch.uint8
    assert [label for _, label in items(datamodule.test_set)] == list(range(10))
    unpacked = next((tmp_path / "cache" / "unpacked").iterdir())
    first = np.array(Image.open(unpacked / "test" / "airplane" / "0.jpg"))
    assert torch.equal(test_images[0], torch.from_numpy(first).permute(2, 0, 1))
    decoded = sorted((tmp_path / "cache" / "decoded").glob("*.pt"))
    assert len(decoded) == 2  # train and test, each decoded once into the cache
    # A second module reads the cache: the unpacked JPEGs are no longer needed.
    for jpeg in unpacked.rglob("*.jpg"):
        jpeg.write_bytes(b"")
    again = CIFAR10DataModule(root=str(cifar_archive), num_workers=0, val_fraction=0.5)
    again.setup()
    assert torch.equal(torch.stack([image for image, _ in items(again.test_set)]), test_images)


@pytest.mark.bad_input
def test_cifar_tree_with_the_wrong_classes_is_refused(tmp_path, cifar_archive):
    tree = tmp_path / "cifar9"
    for split in ("train", "test"):
        for label in CIFAR10_CLASSES[:9]:
            write_jpeg(tree / split / label / "0.jpg", np.zeros((32, 32, 3), dtype=np.uint8))
    with pytest.raises(DatasetError, match="expects 10: is this the right dataset"):
        CIFAR10DataModule(root=str(tree), num_workers=0).setup()


@pytest.mark.bad_input
def test_build_transform_refuses_unknown_names_and_ten_crops_of_whole_images():
    with pytest.raises(
        ValueError,
        match=r"unknown augmentation 'autoaugment'.*none, lenet, lenet_distorted, capsnet, cifar",
    ):
        build_transform("autoaugment", train=True, image_size=224)
    for whole_images in ("cifar", "lenet"):
        with pytest.raises(ValueError, match="Use test_crops: center"):
            build_transform(whole_images, train=False, image_size=32, test_crops="ten")
    assert build_transform("cifar", train=True, image_size=32).random
    assert not build_transform("cifar", train=False, image_size=32).random
    assert not build_transform("alexnet", train=False, image_size=224, test_crops="ten").random


def test_cifar_training_crops_pad_by_four():
    transform = build_transform("cifar", train=True, image_size=32)
    image = (torch.arange(3 * 32 * 32).remainder(250) + 1).to(torch.uint8).view(3, 32, 32)
    torch.manual_seed(0)
    crops = torch.stack([transform.geometry(image).as_subclass(torch.Tensor) for _ in range(50)])
    assert crops.shape == (50, 3, 32, 32)
    padded_rows = (crops == 0).all(dim=(1, 3))  # rows of padding (the image has no zeros)
    padded_cols = (crops == 0).all(dim=(1, 2))
    assert padded_rows.any() and padded_cols.any()
    assert padded_rows.sum(dim=1).max() <= 4
    assert padded_cols.sum(dim=1).max() <= 4
    assert len({crop.numpy().tobytes() for crop in crops}) > 10


def test_epoch_sampler_shuffles_by_seed_and_epoch():
    dataset = TransformedDataset(list(range(100)), None)

    def order(seed: int, epoch: int) -> list[int]:
        sampler = EpochSampler(dataset, seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert order(0, 3) == order(0, 3)
    assert sorted(order(0, 3)) == list(range(100))
    assert order(0, 3) != order(0, 4)
    assert order(0, 3) != order(1, 3)
    EpochSampler(dataset, seed=0).set_epoch(7)
    assert dataset.epoch == 7  # passed on to the dataset, for the workers' seeds


def test_eval_sampler_shards_cover_every_index_exactly_once():
    dataset = list(range(11))
    shards = []
    for rank in range(2):
        sampler = EvalSampler(dataset)
        sampler.num_replicas, sampler.rank = 2, rank
        shards.append(list(sampler))
        assert len(sampler) == len(shards[-1])
    assert sorted(shards[0] + shards[1]) == list(range(11))  # no padding, no repeats
    assert list(EvalSampler(dataset)) == list(range(11))


@pytest.mark.bad_input
def test_tensor_images_refuses_float_images():
    with pytest.raises(ValueError, match="uint8"):
        TensorImages(torch.zeros(2, 1, 8, 8), torch.zeros(2))
