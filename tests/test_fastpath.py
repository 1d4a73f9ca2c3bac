"""The fast path for small datasets (`--data.on_device true`): images held on the training
device, batches of indices gathered and augmented there. Its crops and flips are
torchvision's, drawn as uniformly, reproducibly by image and epoch, and a fit with it learns and
resumes to the same weights."""

from __future__ import annotations

import csv
from collections.abc import Iterator

import lightning as L
import pytest
import torch
from cnnzoo import ImageClassifier
from cnnzoo.errors import DatasetError
from cnnzoo.optim import OptimizerSpec
from cnnzoo_data import ImageFolderDataModule
from cnnzoo_data.device_augment import CropFlips, draw_crop_flips, gather_crops
from conftest import run_cnnzoo
from scipy.stats import chisquare
from test_resume import STEPS_PER_EPOCH, fit
from torchvision.transforms.v2 import functional as TF

PADDING = 4  # ResNet §4.2, for 32x32 images


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One torch thread for a fit, as `cnnzoo_process` runs them: on 2 shared cores, two
    threads waiting for each other make LeNet-5's steps several times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def per_image(images, indices, padding, crops) -> torch.Tensor:
    """torchvision's way, one image at a time: pad with zeros, crop, maybe mirror."""
    size = images.shape[-2:]
    out = []
    for n, index in enumerate(indices.tolist()):
        padded = TF.pad(images[index], [padding])
        crop = TF.crop(padded, int(crops.top[n]), int(crops.left[n]), *size)
        out.append(TF.horizontal_flip(crop) if crops.flip[n] else crop)
    return torch.stack(out)


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 20)])
def test_batched_crops_and_flips_are_torchvisions_padded_crops(shape):
    generator = torch.Generator().manual_seed(0)
    # No zero pixel in the images: a zero in a crop can only be padding.
    images = torch.randint(1, 256, (40, *shape), generator=generator, dtype=torch.uint8)
    indices = torch.tensor([3, 3, 39, 0, 17, 25, 8, 12])
    crops = CropFlips(  # the extreme offsets, both corners, with and without flips
        top=torch.tensor([0, 8, 8, 0, 4, 1, 7, 3]),
        left=torch.tensor([0, 8, 0, 8, 4, 6, 2, 5]),
        flip=torch.tensor([False, True, False, True, True, False, True, False]),
    )
    batched = gather_crops(images, indices, PADDING, crops)
    assert batched.dtype == torch.uint8 and batched.shape == (8, *shape)
    assert torch.equal(batched, per_image(images, indices, PADDING, crops))
    assert torch.equal(gather_crops(images, indices), images[indices])  # no crops: a gather


def test_offsets_are_uniform_and_half_the_images_flipped():
    """Over 300 batches of 128 shuffled images in 3 epochs: each of the 9 offsets a ninth of
    the time (chi-square, p > 1e-4; 1.5% of the draws forced to one offset fail it), flips
    within 5 standard deviations of a half, and the two offsets independent."""
    crops = [
        draw_crop_flips(batch, PADDING, seed=0, epoch=epoch)
        for epoch in range(3)
        for batch in torch.randperm(12_800, generator=torch.Generator().manual_seed(epoch))
        .view(100, 128)
        .unbind()
    ]
    top, left, flip = (
        torch.cat([getattr(c, name) for c in crops]) for name in ("top", "left", "flip")
    )
    draws = len(flip)
    for offsets in (top, left):
        assert offsets.min() == 0 and offsets.max() == 2 * PADDING
        assert chisquare(torch.bincount(offsets, minlength=9).numpy()).pvalue > 1e-4
    pairs = torch.bincount(top * 9 + left, minlength=81).numpy()
    assert chisquare(pairs).pvalue > 1e-4
    assert abs(flip.sum().item() - draws / 2) < 5 * (draws / 4) ** 0.5


def test_an_images_crop_is_a_function_of_seed_epoch_and_image(make_digits):
    """As on the default path: not of the batch it falls in, its place there, the batch size
    or the number of processes."""
    datamodule = make_digits(on_device=True, augmentation="cifar")
    datamodule.setup("fit")
    indices = torch.arange(32)

    def batch(indices=indices, epoch=1, seed=0):
        datamodule.seed = seed
        return datamodule.device_batch(indices, "train", epoch)[0]

    assert torch.equal(batch(), batch())
    shuffled = torch.randperm(32, generator=torch.Generator().manual_seed(0))
    assert torch.equal(batch(shuffled), batch()[shuffled])  # another order, the same crops
    assert torch.equal(batch(indices[5:9]), batch()[5:9])  # a smaller batch, the same crops
    assert not torch.equal(batch(), batch(epoch=2))
    assert not torch.equal(batch(), batch(seed=1))
    # Evaluation: the images as the default path prepares them, gathered.
    plain = make_digits(augmentation="cifar")
    plain.setup("fit")
    images, labels = datamodule.device_batch(indices, "val")
    expected = [plain.val_set[i] for i in range(32)]
    assert torch.equal(images, torch.stack([image for image, _ in expected]))
    assert labels.tolist() == [label for _, label in expected]


def test_deterministic_augmentations_give_the_default_paths_batches(make_digits):
    on_device, plain = (make_digits(on_device=flag, augmentation="lenet") for flag in (1, 0))
    on_device.setup("fit")
    plain.setup("fit")
    for split in ("train", "val", "test"):
        images, labels = on_device.device_batch(torch.arange(20), split)
        expected = [getattr(plain, f"{split}_set")[i] for i in range(20)]
        assert torch.equal(images, torch.stack([image for image, _ in expected]))
        assert labels.tolist() == [label for _, label in expected]
    indices, split = next(iter(on_device.train_dataloader()))
    assert split == "train" and indices.dtype == torch.long and indices.shape == (64,)


@pytest.mark.slow
def test_a_fit_on_device_learns(tmp_path, one_thread):
    """`cnnzoo fit --data.on_device true` on the digits, LeNet-5's MNIST setup (its random
    crops are the resume test's), logging to CSV only."""
    csv_only = (
        '[{"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": "runs"}}]'
    )
    run_cnnzoo(
        [
            "fit",
            "--trainer.max_epochs=2",
            "--trainer.limit_train_batches=30",
            "--trainer.limit_val_batches=2",
            f"--trainer.logger={csv_only}",
            "--trainer.enable_progress_bar=false",
            "--data.on_device=true",
            "--data.batch_size=32",
            "--model.optimizer.lr=0.003",
            "--model.optimizer.momentum=0.9",
        ],
        tmp_path,
    )
    with open(tmp_path / "runs" / "lenet5" / "version_0" / "metrics.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    tested = [float(row["test/top1_error"]) for row in rows if row.get("test/top1_error")]
    assert tested and tested[-1] < 0.5  # chance is 0.9


def test_a_run_stopped_mid_epoch_resumes_to_the_same_weights(
    tmp_path, make_trainer, make_digits, one_thread
):
    """test_resume's in-process resume, with the fast path and its random crops and flips."""

    def on_device(**settings):
        return make_digits(**settings | {"augmentation": "cifar", "on_device": True})

    straight = fit(tmp_path / "straight", make_trainer, on_device)
    fit(tmp_path / "stopped", make_trainer, on_device, stop_at=STEPS_PER_EPOCH + 3)
    last = tmp_path / "stopped" / "checkpoints" / "last.ckpt"
    saved = torch.load(last, map_location="cpu", weights_only=False)
    loader_state = saved["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert loader_state == [{"epoch": 1, "batches": 2}]
    resumed = fit(tmp_path / "stopped", make_trainer, on_device, ckpt_path=last)
    different = [k for k in straight if not torch.equal(straight[k], resumed[k])]
    assert not different, f"resumed weights differ in {different}"


@pytest.mark.bad_input
def test_on_device_of_files_unbatchable_augmentations_or_many_crops_is_refused(
    make_digits, photo_tree
):
    with pytest.raises(ValueError, match=r"on_device: true .*not 'alexnet'.*augmentation: cifar"):
        make_digits(on_device=True, augmentation="alexnet")
    with pytest.raises(ValueError, match=r"on_device: true .*test_crops is 'ten'.*center"):
        make_digits(on_device=True, augmentation="none", test_crops="ten")
    folder = ImageFolderDataModule(root=str(photo_tree), on_device=True, num_workers=0)
    with pytest.raises(DatasetError, match=r"on_device: true .*ImageFolderDataModule.*on_device"):
        folder.setup("fit")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_a_gpu_the_images_never_leave_it(make_trainer, make_digits):
    seen = []

    class Watch(L.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
            seen.append((batch[0].device.type, batch[0].dtype, batch[1].device.type))

    datamodule = make_digits(batch_size=32, augmentation="cifar", on_device=True)
    module = ImageClassifier("lenet5", optimizer=OptimizerSpec(lr=0.003, momentum=0.9))
    trainer = make_trainer(
        accelerator="gpu", max_epochs=1, limit_train_batches=5, callbacks=[Watch()]
    )
    trainer.fit(module, datamodule)
    assert seen == [("cuda", torch.float32, "cuda")] * 5
    for split in ("train", "val"):
        images, labels = getattr(datamodule, f"{split}_set").on(torch.device("cuda", 0))
        assert images.device.type == labels.device.type == "cuda"
        assert images.dtype == torch.uint8  # held once, as uint8
    indices, _ = next(iter(datamodule.train_dataloader()))  # what crosses from the host
    assert indices.dtype == torch.long and indices.ndim == 1
    # The GPU draws the CPU's crops (integer arithmetic alike) and gathers the same pixels.
    images = datamodule.train_set.images.images
    crops = draw_crop_flips(torch.arange(64), PADDING, seed=0, epoch=0)
    moved = draw_crop_flips(torch.arange(64).cuda(), PADDING, seed=0, epoch=0)
    assert torch.equal(moved.top.cpu(), crops.top) and torch.equal(moved.flip.cpu(), crops.flip)
    on_cpu = gather_crops(images, torch.arange(64), PADDING, crops)
    on_gpu = gather_crops(images.cuda(), torch.arange(64).cuda(), PADDING, moved)
    assert torch.equal(on_gpu.cpu(), on_cpu)
