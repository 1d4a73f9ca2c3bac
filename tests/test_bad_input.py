"""Bad input gets a clear error that names what was wrong and says what to do, and a fault
in the middle of training never costs the last checkpoint.

Every test of a bad-input case in the suite carries the `bad_input` mark; docs/robustness.md
lists them all (tests/test_docs.py keeps that list true).
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from cnnzoo import CnnzooError, DatasetError, ImageClassifier, InputShapeError
from cnnzoo.checkpoint import (
    AtomicCheckpointIO,
    CheckpointError,
    LastCheckpoint,
    load_checkpoint_file,
)
from cnnzoo.optim import OptimizerSpec
from cnnzoo_data import DigitsDataModule, ImageFolderDataModule
from cnnzoo_data.datamodule import Splits
from cnnzoo_data.folder import load_image
from conftest import cnnzoo_process, photo, run_cnnzoo, write_jpeg
from PIL import Image

pytestmark = pytest.mark.bad_input


@pytest.fixture(scope="module")
def grey_checkpoint(tmp_path_factory) -> Path:
    """LeNet-5 after a few steps on the digits: 1 channel, 10 classes."""
    root = tmp_path_factory.mktemp("grey")
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=3,
        limit_val_batches=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
        callbacks=[LastCheckpoint(root)],
    )
    trainer.fit(ImageClassifier("lenet5"), DigitsDataModule(batch_size=16, num_workers=0))
    return root / "last.ckpt"


# --- what the command prints -------------------------------------------------------------


def test_an_expected_error_is_one_message_last_on_the_screen(tmp_path):
    """`cnnzoo` prints an error the user can act on as one line, last, with exit status 1,
    not wrapped in jsonargparse's dump of the data options; --debug shows the traceback."""
    args = ["fit", "--data=cnnzoo_data.ImageFolderDataModule", "--data.root=no/such/folder"]
    plain = cnnzoo_process(args, tmp_path, timeout=120)
    assert plain.returncode == 1
    last = plain.stderr.strip().splitlines()[-1]
    assert last.startswith("cnnzoo: error: dataset folder ") and "no/such/folder" in last
    assert "Traceback" not in plain.stderr and "Given value" not in plain.stderr
    debug = cnnzoo_process([*args, "--debug"], tmp_path, timeout=120)
    assert debug.returncode == 1 and "Traceback" in debug.stderr
    assert "DatasetError: dataset folder" in debug.stderr


def test_a_corrupt_image_in_a_run_ends_with_its_name_last(photo_tree, tmp_path):
    """The error raised in a loader process comes out as its own message, without the
    worker's traceback that the loader puts in it, and last: a W&B run (offline here) is
    closed as failed before it is printed."""
    (photo_tree / "train" / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff" + b"\x00" * 64)
    result = cnnzoo_process(
        [
            "fit",
            "--data=cnnzoo_data.ImageFolderDataModule",
            f"--data.root={photo_tree}",
            "--data.batch_size=4",
            "--data.num_workers=1",
            "--data.image_size=32",
            "--model.arch=lenet5_relu",
            "--trainer.max_epochs=1",
        ],
        tmp_path,
        timeout=300,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("cnnzoo: error: cannot decode image ")
    assert "broken.jpg" in lines[-1] and "--data.skip_corrupt true" in lines[-1]
    assert "Traceback" not in result.stderr


# --- images -----------------------------------------------------------------------------


def test_corrupt_and_truncated_images_can_be_left_out_and_counted(photo_tree):
    garbage = photo_tree / "train" / "cat" / "garbage.jpg"
    garbage.write_bytes(b"this is not a JPEG" * 10)
    truncated = photo_tree / "train" / "rocket" / "truncated.jpg"
    whole = photo_tree / "train" / "rocket" / "a.jpg"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(DatasetError, match=r"truncated.jpg.*--data.skip_corrupt true"):
        load_image(str(truncated))

    datamodule = ImageFolderDataModule(root=str(photo_tree), skip_corrupt=True, num_workers=0)
    with pytest.warns(UserWarning, match="left out 2 image"):
        datamodule.setup()
    assert sorted(datamodule.skipped) == sorted([str(garbage), str(truncated)])
    assert len(datamodule.train_set) == 6  # the six good photographs
    images, _ = next(iter(datamodule.train_dataloader()))
    assert images.shape[1:] == (3, 224, 224)


def test_grey_and_colour_files_are_converted_to_the_channels_asked_for(tmp_path):
    root = tmp_path / "mixed"
    cat = photo("chelsea")
    write_jpeg(root / "train" / "colour" / "a.jpg", cat)
    (root / "train" / "grey").mkdir(parents=True)
    Image.fromarray(cat.mean(axis=-1).astype(np.uint8)).save(root / "train" / "grey" / "b.png")
    for in_chans in (3, 1):
        datamodule = ImageFolderDataModule(
            root=str(root), in_chans=in_chans, val_fraction=0.0, test_dir="train", num_workers=0
        )
        datamodule.setup()
        shapes = {datamodule.test_set[i][0].shape for i in range(2)}
        assert shapes == {(in_chans, 224, 224)}
        assert datamodule.in_chans == in_chans and len(datamodule.mean) == in_chans
    with pytest.raises(DatasetError, match=r"in_chans must be 1 .grey. or 3 .RGB.; got 2"):
        ImageFolderDataModule(root=str(root), in_chans=2)


def test_colour_images_for_a_grey_model_name_the_channels(grey_checkpoint):
    model = ImageClassifier.from_checkpoint(str(grey_checkpoint))
    with pytest.raises(InputShapeError, match="built for 1-channel images but got 3 channels"):
        model(torch.zeros(2, 3, 32, 32))


def test_a_checkpoint_for_other_channels_names_them_and_the_fix(
    grey_checkpoint, make_trainer, make_digits
):
    colour = ImageClassifier("lenet5", in_chans=3)
    with pytest.raises(CheckpointError, match=r"in_chans=None.*in_chans=3.*c1\.0\.weight") as info:
        make_trainer().validate(colour, make_digits(), ckpt_path=str(grey_checkpoint))
    assert "--data.in_chans" in str(info.value)


def test_an_image_below_the_models_minimum_names_the_minimum(tmp_path):
    with pytest.raises(InputShapeError, match=r"at least 63x63.*got 32x32"):
        ImageClassifier("alexnet", num_classes=10)(torch.zeros(1, 3, 32, 32))
    with pytest.raises(InputShapeError, match=r"alexnet needs images of at least 63x63.*is 32"):
        run_cnnzoo(["fit", "--model.arch=alexnet", "--data.image_size=32"], tmp_path)
    assert not any(tmp_path.iterdir())  # refused before anything is written


# --- labels -----------------------------------------------------------------------------


class DigitsWithLabel(DigitsDataModule):
    """The digits, one training label replaced by `label`."""

    def __init__(self, label: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.label = label

    def load(self) -> Splits:
        splits = super().load()
        splits.train.labels = splits.train.labels.clone()
        splits.train.labels[0] = self.label
        return splits


@pytest.mark.parametrize("label", [10, -1])
def test_a_label_outside_the_classes_is_named(label, make_trainer):
    datamodule = DigitsWithLabel(label, batch_size=2000, num_workers=0, val_fraction=0.0)
    with pytest.raises(DatasetError, match=rf"labels \[{label}\] are outside the data's 10"):
        make_trainer(max_epochs=1, limit_val_batches=0).fit(ImageClassifier("lenet5"), datamodule)


def test_a_model_with_fewer_outputs_than_classes_is_refused_before_training(
    make_trainer, make_digits
):
    with pytest.raises(
        CnnzooError, match="the data has 10 classes but the lenet5_relu model has 5"
    ):
        make_trainer(max_epochs=1).fit(ImageClassifier("lenet5_relu", num_classes=5), make_digits())


# --- checkpoints and faults in the middle of training -------------------------------------


def test_a_missing_or_foreign_file_given_as_checkpoint_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        run_cnnzoo(["test", f"--ckpt_path={tmp_path / 'none.ckpt'}"], tmp_path)
    foreign = tmp_path / "notes.ckpt"
    foreign.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match=r"notes.ckpt is not a readable checkpoint"):
        run_cnnzoo(["test", f"--ckpt_path={foreign}"], tmp_path)


class FaultAtStep(L.Callback):
    """Breaks the run once `step` optimiser steps are done, in one of three ways."""

    def __init__(self, kind: str, step: int, corrupt_file: Path) -> None:
        self.kind, self.step, self.corrupt_file = kind, step, corrupt_file

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if trainer.global_step != self.step:
            return
        if self.kind == "nan-weights":  # as an exploding step would leave them
            module.model.f6[0].weight.data.fill_(float("nan"))
        elif self.kind == "corrupt-image":  # the next batch meets a file that does not decode
            dataset = trainer.train_dataloader.dataset
            dataset.base = CorruptAt(dataset.base, self.corrupt_file)
        elif self.kind == "bad-label":
            dataset = trainer.train_dataloader.dataset
            dataset.base = LabelledWrongly(dataset.base)


class ItemByItem(torch.utils.data.Dataset):
    """A dataset's items one by one, as a dataset of files gives them."""

    def __init__(self, base) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index):
        return self.base[index]


class CorruptAt(ItemByItem):
    def __init__(self, base, corrupt_file: Path) -> None:
        self.base, self.corrupt_file = base, corrupt_file

    def __getitem__(self, index):
        load_image(str(self.corrupt_file))  # raises, naming the file
        return self.base[index]


class LabelledWrongly(ItemByItem):
    def __getitem__(self, index):
        return self.base[index][0], 99


class StreamedDigits(DigitsDataModule):
    """The digits as a dataset read item by item (as image files are), not held in memory:
    its labels are checked batch by batch as they load, not all at once in setup."""

    def load(self) -> Splits:
        splits = super().load()
        splits.train = ItemByItem(splits.train)
        return splits


@pytest.mark.parametrize(
    ("kind", "error", "message"),
    [
        ("nan-weights", FloatingPointError, "weights became non-finite by step 3"),
        ("corrupt-image", DatasetError, "cannot decode image .*broken.jpg"),
        ("bad-label", DatasetError, r"labels \[99\] are outside"),
    ],
)
def test_a_fault_in_training_keeps_the_last_good_checkpoint(
    kind, error, message, tmp_path, make_trainer, make_digits
):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff" + b"\x00" * 64)  # a JPEG header and nothing after
    checkpoints = tmp_path / "checkpoints"
    trainer = make_trainer(
        max_epochs=2,
        limit_val_batches=1,
        enable_checkpointing=True,
        plugins=[AtomicCheckpointIO()],
        callbacks=[
            FaultAtStep(kind, 3, broken),
            LastCheckpoint(checkpoints, every_n_train_steps=1),
        ],
    )
    module = ImageClassifier("lenet5", optimizer=OptimizerSpec(lr=0.003))
    with pytest.raises(error, match=message):
        data = StreamedDigits if kind == "bad-label" else make_digits
        trainer.fit(module, data(batch_size=32, num_workers=0))
    last = load_checkpoint_file(checkpoints / "last.ckpt", weights_only=True)
    expected_step = 2 if kind == "nan-weights" else 3  # step 3's own save is refused for NaN
    assert last["global_step"] == expected_step
    assert all(torch.isfinite(w).all() for w in last["state_dict"].values())
    # ... and the run resumes from it.
    resumed = make_trainer(max_epochs=1, limit_train_batches=4, limit_val_batches=1)
    resumed.fit(
        ImageClassifier("lenet5"), make_digits(batch_size=32), ckpt_path=checkpoints / "last.ckpt"
    )
    assert resumed.global_step == 4
