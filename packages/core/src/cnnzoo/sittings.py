"""A run in sittings: how long it has trained and under which log names, kept in its
checkpoints, so that a run stopped and resumed (`--ckpt_path last`) goes on with the same
clock and the same CSV log, and can be cut into sittings of a set length, each handing its
W&B run on to the next.

Papers' schedules outlast what one job may hold a machine: a queue's time limit, a shared
GPU's time slot. `RunClock(sitting_minutes=M)` ends a sitting at the last epoch end that keeps
it within M minutes (judged by its longest epoch so far), after which `last.ckpt` is written as
after every epoch; the next sitting resumes from it. The clock counts each sitting up to its
last checkpoint: the work a killed sitting loses is counted once, when it is done again.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_info

from cnnzoo.checkpoint import load_checkpoint_file

# The exit status of a sitting that ended before the schedule did (sysexits' EX_TEMPFAIL:
# "try again"), so that a job script can loop until the run is done.
SITTING_ENDED = 75


class RunClock(L.Callback):
    """The run's training time over all its sittings, and the names of its logs.

    Args:
        sitting_minutes: end this sitting at the epoch end that keeps it within this many
            minutes (an epoch longer than that is not cut: the step checkpoints cover it).
            None: no limit.
    """

    def __init__(self, sitting_minutes: float | None = None) -> None:
        if sitting_minutes is not None and sitting_minutes <= 0:
            raise ValueError(f"sitting_minutes must be positive or None: {sitting_minutes}")
        self.sitting_minutes = sitting_minutes
        self.earlier_s = 0.0  # earlier sittings, each up to its last checkpoint
        self.sittings = 1
        self.log_versions: dict[str, Any] = {}
        self.stopped_for_time = False
        self._start = time.perf_counter()  # built with the trainer: the sitting's start
        self._epoch_start = self._start
        self._longest_epoch_s = 0.0

    @property
    def sitting_s(self) -> float:
        return time.perf_counter() - self._start

    @property
    def elapsed_s(self) -> float:
        """Wall time of the whole run so far: the earlier sittings and this one."""
        return self.earlier_s + self.sitting_s

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:  # the process that writes the checkpoints
            self.log_versions = log_versions(trainer.loggers)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Runs before the checkpoint callbacks' epoch end, so that last.ckpt follows the stop.
        self._longest_epoch_s = max(self._longest_epoch_s, time.perf_counter() - self._epoch_start)
        if self.sitting_minutes is None:
            return
        another_fits = self.sitting_s + self._longest_epoch_s <= 60 * self.sitting_minutes
        stop = trainer.strategy.broadcast(not another_fits)  # rank 0 decides for all
        if stop and not schedule_done(trainer):
            trainer.should_stop = True
            self.stopped_for_time = True
            rank_zero_info(
                f"This sitting's {self.sitting_minutes:g} minutes would not hold another epoch: "
                f"stopping after epoch {trainer.current_epoch + 1} (step {trainer.global_step}). "
                "Run the same command with --ckpt_path last to go on."
            )

    def state_dict(self) -> dict[str, Any]:
        return {
            "wall_time_s": self.elapsed_s,
            "sittings": self.sittings,
            "log_versions": self.log_versions,
            "sitting_ended": self.stopped_for_time,  # a clean stop, not a kill
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.earlier_s = float(state_dict["wall_time_s"])
        self.sittings = int(state_dict["sittings"]) + 1
        self.log_versions = dict(state_dict.get("log_versions") or {})


def schedule_done(trainer: L.Trainer) -> bool:
    """Whether the epoch now ending is the run's last: max_steps or max_epochs reached."""
    steps_done = trainer.max_steps != -1 and trainer.global_step >= trainer.max_steps
    epochs = trainer.max_epochs
    return steps_done or (epochs not in (None, -1) and trainer.current_epoch + 1 >= epochs)


def log_versions(loggers) -> dict[str, Any]:
    """The version of each logger that can be continued: the CSV log's folder, the W&B run id."""
    versions: dict[str, Any] = {}
    for logger in loggers:
        if isinstance(logger, CSVLogger):
            versions["csv"] = logger.version
        elif isinstance(logger, WandbLogger):
            versions["wandb"] = logger.experiment.id
    return versions


def continued_log_versions(checkpoint: str | Path) -> dict[str, Any]:
    """The log versions that a run resumed from `checkpoint` goes on with: the CSV log always;
    the W&B run only after a sitting that ended cleanly, since a killed run's W&B service can
    hold its run id for a while after ("run ID is in use"), and then the resumed run starts a
    W&B run of its own."""
    saved = saved_clock(checkpoint) or {}
    versions = dict(saved.get("log_versions") or {})
    if not saved.get("sitting_ended"):
        versions.pop("wandb", None)
    return versions


def saved_clock(checkpoint: str | Path) -> dict[str, Any] | None:
    """The RunClock state saved in a checkpoint, or None (no such file, or no clock in it)."""
    path = Path(checkpoint)
    if not path.is_file():
        return None
    saved = load_checkpoint_file(path, map_location="cpu", weights_only=False, mmap=True)
    return (saved.get("callbacks") or {}).get(RunClock.__qualname__)
