"""Chunked training steps (`cnnzoo.chunks`): a training step that takes one optimiser step on
each batch of a chunk trains as chunk 1 does (the same weights bit for bit, the same logs at
the same steps, the same checkpoints to resume from), and what it cannot keep is refused."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
import pytest
import torch
from cnnzoo import ImageClassifier
from cnnzoo.checkpoint import CheckpointError, LastCheckpoint
from cnnzoo.errors import CnnzooError
from cnnzoo.loggers import CSVLogger
from cnnzoo.optim import OptimizerSpec, ScheduleSpec
from cnnzoo.resume import ExactResume
from cnnzoo_data import CIFAR10DataModule
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint

# A step schedule with milestones inside epochs, and one that watches the validation error.
SCHEDULES = {
    "multistep per step": ScheduleSpec(name="multistep", milestones=[0.5, 1.5], interval="step"),
    "plateau": ScheduleSpec(name="plateau", patience=0, decay_rate=0.5),
    "step per epoch": ScheduleSpec(name="step", decay_epochs=1, decay_rate=0.5),
}


def classifier(chunk: int, schedule: ScheduleSpec | None = None) -> ImageClassifier:
    torch.manual_seed(0)
    return ImageClassifier(
        "lenet5",
        num_classes=10,
        chunk=chunk,
        optimizer=OptimizerSpec(lr=0.003, momentum=0.9, weight_decay=5e-4),
        schedule=schedule,
    )


def logged_rows(folder: Path) -> list[dict]:
    (log,) = folder.glob("**/metrics.csv")
    with log.open() as file:
        return list(csv.DictReader(file))


def differing(a: torch.nn.Module, b: torch.nn.Module) -> list[str]:
    other = b.state_dict()
    return [key for key, value in a.state_dict().items() if not torch.equal(value, other[key])]


@pytest.mark.parametrize("on_device", [False, True], ids=["loader", "on device"])
@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_a_chunked_run_trains_and_logs_as_chunk_1(
    tmp_path, make_trainer, make_digits, schedule, on_device
):
    """Two epochs of 26 steps in chunks of 3 (so the epochs end inside a chunk, and the second
    epoch's chunks start off the multiples of 3): the same weights, bit for bit, and the same
    log rows at the same steps as one step a batch."""
    runs = {}
    for chunk in (1, 3):
        module = classifier(chunk, SCHEDULES[schedule])
        trainer = make_trainer(
            max_epochs=2,
            log_every_n_steps=6,
            logger=CSVLogger(save_dir=tmp_path / f"chunk{chunk}", name="run"),
        )
        data = make_digits(batch_size=50, chunk=chunk, on_device=on_device)
        trainer.fit(module, data)
        runs[chunk] = module, trainer, logged_rows(tmp_path / f"chunk{chunk}")
    (one, one_trainer, one_rows), (three, three_trainer, three_rows) = runs[1], runs[3]
    assert three_trainer.num_training_batches == 9 and one_trainer.num_training_batches == 26
    assert three_trainer.global_step == one_trainer.global_step == 52
    assert not differing(one, three), "the chunked run's weights differ"
    assert three_rows == one_rows
    assert [row["step"] for row in one_rows if row["train/loss_step"]][:3] == ["5", "11", "17"]
    rates = [group["lr"] for group in three_trainer.optimizers[0].param_groups]
    assert rates == [group["lr"] for group in one_trainer.optimizers[0].param_groups]
    (one_schedule,), (three_schedule,) = (
        one_trainer.lr_scheduler_configs,
        three_trainer.lr_scheduler_configs,
    )
    assert three_schedule.scheduler.state_dict() == one_schedule.scheduler.state_dict()
    if schedule == "plateau":  # stepped at each epoch's end, with the validation error
        assert three_schedule.scheduler.last_epoch == 2
    else:
        assert rates[0] < 0.003


def test_max_steps_inside_a_chunk_ends_the_run_there(make_trainer, make_digits):
    trainer = make_trainer(max_steps=10, limit_val_batches=0)
    trainer.fit(classifier(4), make_digits(batch_size=50, chunk=4))
    assert trainer.global_step == 10


def test_the_last_checkpoint_is_written_when_a_chunk_crosses_its_step_interval(
    tmp_path, make_digits
):
    """Every 4 optimiser steps, in chunks of 3: written at the chunk ends after steps 4, 8,
    12, ... (steps 6, 9, 12, ...), once for each multiple of 4 crossed."""
    saved = []

    class Saves(LastCheckpoint):
        def _save_topk_checkpoint(self, trainer, monitor_candidates):
            saved.append(trainer.global_step)
            super()._save_topk_checkpoint(trainer, monitor_candidates)

    trainer = L.Trainer(
        max_steps=13,
        limit_val_batches=0,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[Saves(dirpath=tmp_path, every_n_train_steps=4)],
    )
    trainer.fit(classifier(3), make_digits(batch_size=50, chunk=3))
    assert saved == [6, 9, 12, 13]  # 13: the run's end (max_steps), at the epoch's end hook


def test_a_chunked_run_resumed_mid_epoch_ends_on_the_same_weights(
    tmp_path, make_trainer, make_digits
):
    """Straight through, or stopped at the checkpoint after step 9 of the first epoch and
    resumed from it: the same weights, bit for bit."""

    def fit(root: Path, max_steps: int, ckpt_path: Path | None = None) -> ImageClassifier:
        L.seed_everything(0)
        module = classifier(3, SCHEDULES["multistep per step"])
        trainer = make_trainer(
            default_root_dir=root,
            max_epochs=2,
            max_steps=max_steps,
            limit_val_batches=2,
            enable_checkpointing=True,
            callbacks=[
                LastCheckpoint(dirpath=root / "checkpoints", every_n_train_steps=4),
                ExactResume(),
            ],
        )
        data = make_digits(batch_size=50, chunk=3, augmentation="alexnet", pca_lighting_std=0)
        trainer.fit(module, data, ckpt_path=ckpt_path)
        return module

    straight = fit(tmp_path / "straight", max_steps=-1)
    fit(tmp_path / "resumed", max_steps=9)  # ends at step 9, after writing last.ckpt there
    last = tmp_path / "resumed/checkpoints/last.ckpt"
    assert torch.load(last, weights_only=False)["global_step"] == 9
    resumed = fit(tmp_path / "resumed", max_steps=-1, ckpt_path=last)
    assert not differing(straight, resumed), "the resumed run's weights differ"


@pytest.mark.parametrize("schedule", ["multistep per step", "step per epoch"])
def test_the_learning_rate_is_logged_as_for_chunk_1(tmp_path, make_trainer, make_digits, schedule):
    rows = {}
    for chunk in (1, 3):
        trainer = make_trainer(
            max_epochs=2,
            limit_val_batches=0,
            log_every_n_steps=6,
            logger=CSVLogger(save_dir=tmp_path / f"chunk{chunk}", name="run"),
            callbacks=[LearningRateMonitor()],
        )
        module = classifier(chunk, SCHEDULES[schedule])
        trainer.fit(module, make_digits(batch_size=50, chunk=chunk))
        logged = logged_rows(tmp_path / f"chunk{chunk}")
        rows[chunk] = [(row["step"], row["lr-SGD/pg1"]) for row in logged if row["lr-SGD/pg1"]]
    assert len(rows[1]) == (8 if schedule == "multistep per step" else 2)
    assert rows[3] == rows[1]


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("settings", "error", "message"),
    [
        (
            {"gradient_clip_val": 1.0},
            MisconfigurationException,
            r"Remove `Trainer\(gradient_clip_val",
        ),
        (
            {"accumulate_grad_batches": 2},
            MisconfigurationException,
            r"Remove `Trainer\(accumulate_grad_batches",
        ),
        ({"val_check_interval": 5}, CnnzooError, "validation every 5 batches"),
        (
            {"callbacks": [ModelCheckpoint(every_n_train_steps=5)], "enable_checkpointing": True},
            CnnzooError,
            "use cnnzoo.checkpoint.LastCheckpoint, which saves after every chunk",
        ),
    ],
    ids=["clipping", "accumulation", "validation interval", "lightning step checkpoints"],
)
def test_a_chunked_run_refuses_what_manual_optimisation_cannot_do(
    make_trainer, make_digits, settings, error, message
):
    trainer = make_trainer(max_steps=3, **settings)
    with pytest.raises(error, match=message):
        trainer.fit(classifier(3), make_digits(batch_size=50, chunk=3))


@pytest.mark.bad_input
def test_a_chunk_the_model_and_the_data_disagree_on_is_refused(make_trainer, make_digits):
    with pytest.raises(
        CnnzooError, match="chunks of 3 batches but the data module yields chunks of 1"
    ):
        make_trainer(max_steps=3).fit(classifier(3), make_digits(batch_size=50))


@pytest.mark.bad_input
def test_bad_chunks_are_refused(make_digits):
    with pytest.raises(ValueError, match="chunk must be at least 1"):
        ImageClassifier("lenet5", chunk=0)
    with pytest.raises(ValueError, match="chunk must be at least 1"):
        make_digits(chunk=0)
    # AlexNet's colour noise draws per batch, from the stream that dropout draws from too.
    with pytest.raises(ValueError, match="PCA lighting"):
        CIFAR10DataModule(root="unused", chunk=2, augmentation="alexnet")


@pytest.mark.bad_input
def test_resuming_with_another_chunk_is_refused(tmp_path, make_trainer, make_digits):
    """The loader's position in a checkpoint counts chunks: a resume must keep the chunk.
    Testing the checkpoint, which trains nothing, takes any chunk."""
    trainer = make_trainer(max_steps=4, limit_val_batches=0, enable_checkpointing=True)
    trainer.fit(classifier(2), make_digits(batch_size=50, chunk=2))
    (checkpoint,) = Path(trainer.checkpoint_callback.dirpath).glob("*.ckpt")
    with pytest.raises(CheckpointError, match=r"Resume with --data\.chunk 2"):
        make_trainer(max_steps=8).fit(
            classifier(3), make_digits(batch_size=50, chunk=3), ckpt_path=checkpoint
        )
    tested = make_trainer().test(classifier(1), make_digits(batch_size=50), ckpt_path=checkpoint)
    assert 0 < tested[0]["test/top1_error"] < 1
