"""The papers' evaluation protocols (cnnzoo_data.evaluation): GoogLeNet's 144 crops are the
paper's crops, VGG's dense form is exact, the core averages every view's softmax, and
`cnnzoo test --data.test_crops ...` evaluates a checkpoint that way."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest
import torch
from cnnzoo import ImageClassifier, InputShapeError, create_model
from cnnzoo.errors import DatasetError
from cnnzoo_data import DigitsDataModule, ImageFolderDataModule, build_transform
from cnnzoo_data.evaluation import GoogLeNetCrops, WholeImageScales
from conftest import photo, write_jpeg
from torch import nn
from torchvision.transforms.v2 import functional as TF

SMALL = 32  # a small net at 32x32: GoogLeNet's scales become 37, 41, 46 and 50
NET = "resnet18"  # global average pooling: dense evaluation is its forward


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """An ImageFolder tree of small scikit-image photographs, landscape and portrait."""
    root = tmp_path_factory.mktemp("eval") / "photos"
    for label, name in (("cat", "chelsea"), ("coffee", "coffee"), ("rocket", "rocket")):
        pixels = photo(name, short_side=48)
        write_jpeg(root / "train" / label / "a.jpg", pixels)
        if label == "coffee":
            pixels = pixels.transpose(1, 0, 2)  # portrait
        write_jpeg(root / "val" / label / "b.jpg", pixels[5:, 5:].copy())
    return root


def tensor_photo(name: str, short_side: int) -> torch.Tensor:
    return torch.from_numpy(photo(name, short_side)).permute(2, 0, 1).contiguous()


def eval_batch(datamodule, split: str = "test"):
    """The first evaluation batch as the model sees it: loaded, collated, normalised."""
    datamodule.setup()
    loader = getattr(datamodule, f"{split}_dataloader")()
    return datamodule.on_after_batch_transfer(next(iter(loader)), 0)


def test_googlenet_144_crops_are_the_papers_crops():
    image = tensor_photo("chelsea", short_side=60)[:, :, :80].contiguous()  # landscape, 60 x 80
    protocol = GoogLeNetCrops(image_size=56)
    assert GoogLeNetCrops(224).scales == (256, 288, 320, 352)  # §7, at the paper's 224
    assert protocol.scales == (64, 72, 80, 88)
    crops = protocol(image)
    assert crops.shape == (144, 3, 56, 56) and crops.dtype == torch.uint8
    # k = ((scale * 3 + square) * 6 + crop) * 2 + mirror; each crop followed by its mirror.
    assert torch.equal(crops[1::2], crops[0::2].flip(-1))

    def crop(scale: int, square: int, position: int, mirror: int) -> torch.Tensor:
        return crops[((scale * 3 + square) * 6 + position) * 2 + mirror]

    # Scale 72: 72 x 96; the right square is columns 24..96, its top-right crop columns 16..72.
    resized = TF.resize(image, 72, antialias=True)
    assert resized.shape[-2:] == (72, 96)
    assert torch.equal(crop(1, 2, 1, 0), resized[:, :56, 24 + 16 : 24 + 72])
    # Scale 64: the centre square (columns 10..74), its centre crop (offset 4), mirrored.
    resized = TF.resize(image, 64, antialias=True)
    assert torch.equal(crop(0, 1, 4, 1), resized[:, 4:60, 10 + 4 : 10 + 60].flip(-1))
    # Scale 88: the left square resized whole to 56x56; its bottom-left crop.
    resized = TF.resize(image, 88, antialias=True)
    square = resized[:, :, :88]
    assert torch.equal(crop(3, 0, 5, 0), TF.resize(square, [56, 56], antialias=True))
    assert torch.equal(crop(3, 0, 2, 0), square[:, 32:, :56])
    # Portrait images: top, centre and bottom squares.
    portrait = protocol(image.transpose(1, 2).contiguous())
    resized = TF.resize(image.transpose(1, 2), 64, antialias=True)  # 85 x 64
    assert torch.equal(portrait[(2 * 6 + 3) * 2], resized[:, 21 + 8 : 21 + 64, 8:])


def test_googlenet_144_softmax_is_the_mean_over_the_crops(photos):
    datamodule = ImageFolderDataModule(
        root=str(photos), image_size=SMALL, test_crops="googlenet144", num_workers=0
    )
    images, _ = eval_batch(datamodule)
    assert images.shape == (3, 144, 3, SMALL, SMALL)
    torch.manual_seed(0)
    module = ImageClassifier(NET, num_classes=3).eval()
    with torch.no_grad():
        log_probs = module.predict_log_probs(images)
        by_hand = torch.stack([module(crops).softmax(-1).mean(0) for crops in images]).log()
        centre = module.predict_log_probs(images[:, 8])  # scale 0, centre square, centre crop
    torch.testing.assert_close(log_probs, by_hand, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(log_probs, centre, atol=1e-3)


def kaiming(model: nn.Module) -> nn.Module:
    """Weights with activations of order one (the paper's 0.01 std shrinks VGG's logits to
    ~1e-10, where any two nets agree)."""
    torch.manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            nn.init.normal_(module.bias, std=0.1)
    return model


@pytest.fixture(scope="module")
def vgg() -> ImageClassifier:
    module = ImageClassifier("vgg11", num_classes=5).eval()
    kaiming(module.model)
    return module


def normalised_photo(name: str, short_side: int) -> torch.Tensor:
    image = tensor_photo(name, short_side).float() / 255
    return ((image - 0.45) / 0.225)[None]


@pytest.mark.slow
def test_vgg_dense_form_is_its_forward_at_224_and_slides_it_beyond(vgg):
    assert not vgg.model.head_pools_globally()  # an adaptive 7x7 pool is not dense
    dense = vgg.model.dense()
    with torch.no_grad():
        image = normalised_photo("astronaut", 224)
        torch.testing.assert_close(dense(image), vgg(image), rtol=1e-4, atol=1e-4)
        # 256 x 256: a 2x2 score map, each position the fc layers on the 7x7 window of
        # pool5 at that position (not the net on a 224 crop: §4.2, the crop's zero padding
        # is the image's own pixels here).
        image = normalised_photo("coffee", 256)[..., :, 40:296]
        scores = dense.score_map(image)
        assert scores.shape == (1, 5, 2, 2)
        pool5 = vgg.model.forward_features(image)
        assert pool5.shape[-2:] == (8, 8)
        for i, j in ((0, 1), (1, 0)):
            window = pool5[..., i : i + 7, j : j + 7]
            torch.testing.assert_close(
                scores[..., i, j], vgg.model.forward_head(window), rtol=1e-4, atol=1e-4
            )
        torch.testing.assert_close(dense(image), scores.mean(dim=(2, 3)))
        # The core: the softmax of the image and its mirror, averaged.
        views = torch.cat([image, image.flip(-1)])
        log_probs = vgg.predict_log_probs([[views]])
        expected = dense.score_map(views).mean(dim=(2, 3)).softmax(-1).mean(0).log()
    torch.testing.assert_close(log_probs[0], expected)


def test_multiscale_evaluation_averages_whole_images_at_each_scale(photos):
    assert WholeImageScales(224, (256, 384, 512)).scales == (256, 384, 512)
    datamodule = ImageFolderDataModule(
        root=str(photos), image_size=SMALL, test_crops="multiscale", num_workers=0
    )
    images, target = eval_batch(datamodule)
    assert isinstance(images, list) and len(images) == len(target) == 3
    # Whole images, not squares: a landscape photo keeps its shape at every scale.
    sides = [tuple(views.shape[-2:]) for views in images[0]]
    assert [min(side) for side in sides] == [37, 55, 73]  # 256, 384, 512 x 32/224
    assert all(w > h for h, w in sides)
    assert all(torch.equal(views[1], views[0].flip(-1)) for views in images[0])
    torch.manual_seed(0)
    module = ImageClassifier(NET, num_classes=3).eval()
    with torch.no_grad():
        log_probs = module.predict_log_probs(images)
        by_hand = torch.stack(
            [
                torch.stack(
                    [module(view[None])[0].softmax(-1) for views in scales for view in views]
                ).mean(0)
                for scales in images
            ]
        ).log()
        smallest = module.predict_log_probs([scales[:1] for scales in images])
    torch.testing.assert_close(log_probs, by_hand, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(log_probs, smallest, atol=1e-3)  # the other scales count


@pytest.fixture(scope="module")
def checkpoint(photos) -> Path:
    """A small net at 32x32 fitted for one step on the photographs (cheap, and real)."""
    root = photos.parent / "runs"
    run(
        [
            "fit",
            f"--model.arch={NET}",
            "--trainer.max_epochs=1",
            "--trainer.limit_train_batches=1",
            "--trainer.limit_val_batches=1",
            "--test_after_fit=false",
            f"--trainer.default_root_dir={root}",
            *data_args(photos),
        ],
        photos.parent,
    )
    return root / NET / "checkpoints" / "last.ckpt"


def data_args(photos: Path) -> list[str]:
    return [
        "--data=ImageFolderDataModule",
        f"--data.root={photos}",
        f"--data.image_size={SMALL}",
        "--data.num_workers=0",
        "--wandb.enabled=false",
    ]


def run(args: list[str], cwd: Path):
    from cnnzoo_classify.trainer import make_cli

    with contextlib.chdir(cwd):
        return make_cli(args)


@pytest.mark.slow
@pytest.mark.parametrize("test_crops", ["googlenet144", "multiscale"])
def test_cnnzoo_test_evaluates_a_checkpoint_with_the_protocol(checkpoint, photos, test_crops):
    args = ["test", f"--ckpt_path={checkpoint}", *data_args(photos)]
    args += [f"--data.test_crops={test_crops}", f"--trainer.default_root_dir={photos.parent}"]
    cli = run(args, photos.parent)
    gallery = next(photos.parent.rglob("predictions-test.png"))  # the first view of each image
    assert gallery.read_bytes()[:4] == b"\x89PNG"
    measured = cli.trainer.callback_metrics["test/loss"].item()
    module = ImageClassifier.from_checkpoint(str(checkpoint)).eval()
    datamodule = ImageFolderDataModule(
        root=str(photos), image_size=SMALL, test_crops=test_crops, num_workers=0
    )
    images, target = eval_batch(datamodule)
    with torch.no_grad():
        loss = torch.nn.functional.nll_loss(module.predict_log_probs(images), target).item()
        centre = ImageFolderDataModule(root=str(photos), image_size=SMALL, num_workers=0)
        centre_loss = torch.nn.functional.nll_loss(*_log_probs(module, eval_batch(centre)))
    assert measured == pytest.approx(loss, rel=1e-5)
    assert not np.isclose(measured, centre_loss.item(), rtol=1e-4)


def _log_probs(module, batch):
    images, target = batch
    return module.predict_log_probs(images), target


@pytest.mark.bad_input
def test_multiscale_protocols_of_images_smaller_than_the_input_are_refused():
    # The digits are 28x28: GoogLeNet's crops at a 224 input would be blown-up copies.
    datamodule = DigitsDataModule(
        augmentation="none", image_size=224, test_crops="googlenet144", num_workers=0
    )
    with pytest.raises(DatasetError, match=r"28x28.*test_crops: center"):
        datamodule.setup()


@pytest.mark.bad_input
def test_multiscale_protocols_of_whole_image_augmentations_and_unknown_names_are_refused():
    for test_crops in ("googlenet144", "dense", "multiscale"):
        with pytest.raises(ValueError, match="Use test_crops: center"):
            build_transform("cifar", train=False, image_size=32, test_crops=test_crops)
    with pytest.raises(ValueError, match="googlenet144, dense, multiscale"):
        build_transform("none", train=False, image_size=32, test_crops="144")


@pytest.mark.bad_input
def test_dense_evaluation_of_a_net_without_a_dense_form_is_refused():
    module = ImageClassifier("lenet5").eval()  # its F6 takes only a 1x1 C5 map
    with pytest.raises(InputShapeError, match=r"no dense form.*test_crops: center"):
        module.predict_log_probs([[torch.zeros(2, 1, 40, 48)]])
    assert create_model(NET, num_classes=3).head_pools_globally()


@pytest.mark.bad_input
@pytest.mark.slow
def test_vgg_dense_form_refuses_images_below_224(vgg):
    with pytest.raises(InputShapeError, match="at least 224x224"):
        vgg.predict_log_probs([[torch.zeros(2, 3, 200, 260)]])
