"""Nothing lost: a run killed with SIGKILL in the middle of an epoch resumes from its last
checkpoint to the same weights and metrics as a run never interrupted, and a kill during a
checkpoint's write never leaves a damaged checkpoint."""

from __future__ import annotations

import csv
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from cnnzoo import ImageClassifier
from cnnzoo.checkpoint import (
    AtomicCheckpointIO,
    CheckpointError,
    LastCheckpoint,
    atomic_torch_save,
    load_checkpoint_file,
)
from cnnzoo.optim import OptimizerSpec, ScheduleSpec
from cnnzoo.resume import ExactResume
from conftest import cnnzoo_process

pytestmark = [pytest.mark.slow, pytest.mark.bad_input]

STEPS_PER_EPOCH = 6

# A LeNet-5 fit on the digits that a test can run straight, or kill and resume: random crops
# and flips, a per-step schedule, one loader process, last.ckpt after every step.
FIT = [
    "fit",
    "--trainer.max_epochs=2",
    f"--trainer.limit_train_batches={STEPS_PER_EPOCH}",
    "--trainer.limit_val_batches=3",
    "--trainer.deterministic=true",
    "--trainer.enable_progress_bar=false",
    "--data.num_workers=1",
    "--data.batch_size=32",
    "--data.augmentation=alexnet",
    "--model.optimizer.lr=0.01",
    "--model.schedule.name=cosine",
    "--model.schedule.interval=step",
    "--checkpoint_every_n_steps=1",
    "--test_after_fit=false",
]

KILLER = '''
import os
import signal

import lightning as L


class KillAtStep(L.Callback):
    """SIGKILL this process once training reaches `step`: no handler, no cleanup runs."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)
'''


def last_val_errors(log_dir: Path) -> list[str]:
    with open(log_dir / "metrics.csv", newline="") as file:
        return [row["val/top1_error"] for row in csv.DictReader(file) if row.get("val/top1_error")]


def test_a_run_killed_mid_epoch_resumes_to_the_same_weights_and_metrics(tmp_path):
    straight_root = tmp_path / "straight"
    straight = cnnzoo_process([*FIT, f"--trainer.default_root_dir={straight_root}"], tmp_path)
    assert straight.returncode == 0, straight.stderr[-3000:]

    (tmp_path / "killer.py").write_text(textwrap.dedent(KILLER))
    root = tmp_path / "killed"
    kill_at = STEPS_PER_EPOCH + 3  # the fourth batch of the second epoch
    killed = cnnzoo_process(
        [
            *FIT,
            f"--trainer.default_root_dir={root}",
            "--trainer.callbacks+=killer.KillAtStep",
            f"--trainer.callbacks.step={kill_at}",
        ],
        tmp_path,
        pythonpath=tmp_path,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    last = root / "lenet5" / "checkpoints" / "last.ckpt"
    interrupted = torch.load(last, map_location="cpu", weights_only=False)
    # Killed before the step's own checkpoint: the last one is a step before, mid-epoch.
    assert (interrupted["epoch"], interrupted["global_step"]) == (1, kill_at - 1)

    resume = [*FIT, f"--trainer.default_root_dir={root}", "--ckpt_path=last"]
    resumed = cnnzoo_process(resume, tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "not resumable" not in resumed.stderr  # Lightning's warning for a stateless loader

    expected = torch.load(
        tmp_path / "straight" / "lenet5" / "checkpoints" / "last.ckpt",
        map_location="cpu",
        weights_only=False,
    )
    final = torch.load(last, map_location="cpu", weights_only=False)
    assert final["global_step"] == expected["global_step"] == 2 * STEPS_PER_EPOCH
    different = [
        k
        for k in expected["state_dict"]
        if not torch.equal(expected["state_dict"][k], final["state_dict"][k])
    ]
    assert not different, f"resumed weights differ in {different}"
    # The resumed run goes on in the killed run's CSV log (RunClock kept its version in the
    # checkpoint): one log with every epoch's validation error, as the straight run's.
    assert [d.name for d in (root / "lenet5").glob("version_*")] == ["version_0"]
    straight_errors = last_val_errors(tmp_path / "straight" / "lenet5" / "version_0")
    assert last_val_errors(root / "lenet5" / "version_0") == straight_errors
    assert len(straight_errors) == 2
    # A killed run's W&B service may still hold its run id: the resumed run takes its own.
    wandb_ids = {d.name.rsplit("-", 1)[-1] for d in (root / "wandb").glob("offline-run-*")}
    assert len(wandb_ids) == 2


class Interrupt(L.Callback):
    """Stop the run with an exception once training reaches `step`, before its checkpoint."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.step:
            raise RuntimeError("interrupted")


def fit(root: Path, make_trainer, make_digits, ckpt_path=None, stop_at=None) -> dict:
    L.seed_everything(0)
    module = ImageClassifier(
        "lenet5",
        optimizer=OptimizerSpec(lr=0.01, momentum=0.9),
        schedule=ScheduleSpec(name="cosine", interval="step"),
    )
    trainer = make_trainer(
        default_root_dir=root,
        max_epochs=2,
        limit_train_batches=STEPS_PER_EPOCH,
        limit_val_batches=2,
        deterministic=True,
        enable_checkpointing=True,
        plugins=[AtomicCheckpointIO()],
        callbacks=[
            *([Interrupt(stop_at)] if stop_at else []),
            LastCheckpoint(root / "checkpoints", every_n_train_steps=1),
            ExactResume(),
        ],
    )
    datamodule = make_digits(batch_size=32, augmentation="alexnet")
    if stop_at:
        with pytest.raises(RuntimeError, match="interrupted"):
            trainer.fit(module, datamodule, ckpt_path=ckpt_path)
    else:
        trainer.fit(module, datamodule, ckpt_path=ckpt_path)
    return module.state_dict()


def test_a_mid_epoch_checkpoint_resumes_in_process_without_loader_workers(
    tmp_path, make_trainer, make_digits
):
    straight = fit(tmp_path / "straight", make_trainer, make_digits)
    fit(tmp_path / "stopped", make_trainer, make_digits, stop_at=STEPS_PER_EPOCH + 3)
    last = tmp_path / "stopped" / "checkpoints" / "last.ckpt"
    saved = torch.load(last, map_location="cpu", weights_only=False)
    assert saved["global_step"] == STEPS_PER_EPOCH + 2
    loader_state = saved["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert loader_state == [{"epoch": 1, "batches": 2}]
    resumed = fit(tmp_path / "stopped", make_trainer, make_digits, ckpt_path=last)
    different = [k for k in straight if not torch.equal(straight[k], resumed[k])]
    assert not different, f"resumed weights differ in {different}"


WRITER = """
import sys

import torch
from cnnzoo.checkpoint import atomic_torch_save

path = sys.argv[1]
step = 0
while True:  # until killed: checkpoints of 32 MB, each filled with its own step number
    step += 1
    atomic_torch_save({"step": step, "weights": torch.full((8_000_000,), float(step))}, path)
    print(step, flush=True)
"""


def test_a_kill_during_the_write_leaves_a_whole_checkpoint(tmp_path):
    """SIGKILL a process that writes checkpoints back to back, at random moments: each time
    the checkpoint on disk is a whole one, of one step."""
    script = tmp_path / "writer.py"
    script.write_text(textwrap.dedent(WRITER))
    path = tmp_path / "last.ckpt"
    rng = random.Random(0)
    for _ in range(6):
        writer = subprocess.Popen(
            [sys.executable, str(script), str(path)], stdout=subprocess.PIPE, text=True
        )
        writer.stdout.readline()  # one checkpoint written: the kill lands in a later write
        time.sleep(rng.uniform(0.0, 0.3))
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        saved = load_checkpoint_file(path, weights_only=True)
        assert torch.all(saved["weights"] == saved["step"])


def test_a_write_that_fails_midway_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    atomic_torch_save({"step": 1}, path)

    def dies_midway(obj, file):
        file.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt  # as the process would stop here

    monkeypatch.setattr(torch, "save", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        AtomicCheckpointIO().save_checkpoint({"step": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint_file(path)["step"] == 1


def test_a_truncated_checkpoint_is_named_with_what_to_do(tmp_path):
    path = tmp_path / "last.ckpt"
    atomic_torch_save({"state_dict": {"w": torch.ones(1000)}}, path)
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(
        CheckpointError, match=r"last\.ckpt is not a readable checkpoint.*truncated"
    ):
        load_checkpoint_file(path)
    with pytest.raises(CheckpointError, match=r"last\.ckpt is not a readable checkpoint"):
        ImageClassifier.from_checkpoint(str(path))
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint_file(tmp_path / "missing.ckpt")
