"""`RunTrainer` from Python, without the command: a run's checkpoints and logs land in its
folder, the callbacks are placed by the trainer, and a run resumed with `ckpt_path="last"`
goes on in the same CSV log and on the same clock."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
import pytest
from cnnzoo import ImageClassifier
from cnnzoo.checkpoint import LastCheckpoint
from cnnzoo.loggers import CSVLogger
from cnnzoo.run_trainer import RunTrainer
from cnnzoo.sittings import RunClock
from lightning.pytorch.callbacks import ModelCheckpoint

QUIET = {
    "accelerator": "cpu",
    "devices": 1,
    "enable_progress_bar": False,
    "enable_model_summary": False,
    "num_sanity_val_steps": 0,
}


def run_trainer(root: Path, **overrides) -> RunTrainer:
    settings = {
        "default_root_dir": root,
        "run_name": "lenet5",
        "max_epochs": 2,
        "limit_train_batches": 4,
        "limit_val_batches": 2,
        "callbacks": [
            ModelCheckpoint(monitor="val/top1_error", filename="best"),
            LastCheckpoint(),
            RunClock(),
        ],
        "logger": [CSVLogger()],
    }
    return RunTrainer(**(QUIET | settings | overrides))


def logged_epochs(log: Path) -> list[int]:
    with log.open() as file:
        return sorted({int(row["epoch"]) for row in csv.DictReader(file) if row["epoch"]})


def test_a_run_keeps_its_checkpoints_and_log_in_its_folder(tmp_path, make_digits):
    trainer = run_trainer(tmp_path)
    assert trainer.run_dir == tmp_path / "lenet5"
    trainer.fit(ImageClassifier("lenet5", num_classes=10), make_digits(batch_size=32))
    checkpoints = sorted(p.name for p in (tmp_path / "lenet5" / "checkpoints").iterdir())
    assert checkpoints == ["best.ckpt", "last.ckpt"]
    assert Path(trainer.log_dir) == tmp_path / "lenet5" / "version_0"
    assert logged_epochs(tmp_path / "lenet5" / "version_0" / "metrics.csv") == [0, 1]


def test_what_the_user_placed_stays_where_they_placed_it(tmp_path):
    own = tmp_path / "elsewhere"
    trainer = run_trainer(
        tmp_path,
        callbacks=[LastCheckpoint(dirpath=own)],
        logger=[CSVLogger(save_dir=own, name="mine", version="v")],
    )
    assert Path(trainer.last_checkpoint_path()) == own / "last.ckpt"
    assert Path(trainer.log_dir) == own / "mine" / "v"


def test_a_resumed_run_goes_on_in_the_same_log_and_clock(tmp_path, make_digits):
    model = ImageClassifier("lenet5", num_classes=10)
    first = run_trainer(tmp_path, sitting_minutes=1e-6)  # stops after its first epoch
    first.fit(model, make_digits(batch_size=32))
    assert (
        first.current_epoch == 1
        and next(cb for cb in first.callbacks if isinstance(cb, RunClock)).stopped_for_time
    )

    second = run_trainer(tmp_path)
    second.fit(
        ImageClassifier("lenet5", num_classes=10), make_digits(batch_size=32), ckpt_path="last"
    )
    assert second.current_epoch == 2
    assert sorted(p.name for p in (tmp_path / "lenet5").iterdir()) == ["checkpoints", "version_0"]
    assert logged_epochs(tmp_path / "lenet5" / "version_0" / "metrics.csv") == [0, 1]
    clock = next(cb for cb in second.callbacks if isinstance(cb, RunClock))
    assert clock.sittings == 2 and clock.earlier_s > 0


def test_sitting_minutes_brings_a_clock_that_runs_before_the_checkpoints(tmp_path):
    trainer = run_trainer(tmp_path, callbacks=[LastCheckpoint()], sitting_minutes=5)
    kinds = [type(cb) for cb in trainer.callbacks]
    clock = trainer.callbacks[kinds.index(RunClock)]
    assert clock.sitting_minutes == 5 and kinds.index(RunClock) < kinds.index(LastCheckpoint)
    with pytest.raises(ValueError, match="sitting_minutes must be positive"):
        run_trainer(tmp_path, sitting_minutes=0)


class StepsSaved(L.Callback):
    def __init__(self) -> None:
        self.steps: list[int] = []

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        self.steps.append(trainer.global_step)


def test_checkpoint_every_n_steps_sets_the_last_checkpoints_interval(tmp_path, make_digits):
    saved = StepsSaved()
    trainer = run_trainer(
        tmp_path,
        max_epochs=1,
        limit_train_batches=5,
        callbacks=[LastCheckpoint(every_n_train_steps=1000), saved],
        checkpoint_every_n_steps=2,
    )
    trainer.fit(ImageClassifier("lenet5", num_classes=10), make_digits(batch_size=32))
    assert saved.steps == [2, 4, 5]  # every 2 steps, and at the epoch's end


def test_lightnings_own_csv_logger_is_named_after_the_run(tmp_path):
    from lightning.pytorch.loggers import CSVLogger as LightningCSVLogger

    trainer = run_trainer(tmp_path, logger=[LightningCSVLogger(save_dir=tmp_path / "logs")])
    assert Path(trainer.log_dir) == tmp_path / "logs" / "lenet5" / "version_0"
    named = run_trainer(tmp_path, logger=[LightningCSVLogger(save_dir=tmp_path, name="mine")])
    assert Path(named.log_dir) == tmp_path / "mine" / "version_0"


def test_no_profiler_runs_unless_one_is_asked_for(tmp_path):
    from cnnzoo.run_trainer import NoProfiler
    from lightning.pytorch.profilers import SimpleProfiler

    assert isinstance(run_trainer(tmp_path).profiler, NoProfiler)
    with run_trainer(tmp_path).profiler.profile("a hook") as entered:
        assert entered is None
    assert isinstance(run_trainer(tmp_path, profiler="simple").profiler, SimpleProfiler)


def test_a_fit_skips_the_hooks_its_callbacks_and_model_inherit_as_no_ops(tmp_path, make_digits):
    trainer = run_trainer(tmp_path, max_epochs=1)
    model = ImageClassifier("lenet5", num_classes=10)
    trainer.fit(model, make_digits(batch_size=32))
    clock = next(cb for cb in trainer.callbacks if isinstance(cb, RunClock))
    assert clock.on_train_batch_end is None and model.on_before_backward is None
    # LastCheckpoint defines its batch end (the step checkpoints): still called.
    last = next(cb for cb in trainer.callbacks if isinstance(cb, LastCheckpoint))
    assert callable(last.on_train_batch_end)
