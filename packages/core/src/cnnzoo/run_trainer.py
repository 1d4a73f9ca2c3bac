"""`RunTrainer`: Lightning's Trainer that keeps a run in one folder and resumes it into the
same logs.

A run lives in `<default_root_dir>/<run_name>/`: `checkpoints/` (every checkpoint callback
without a folder of its own writes there) and `version_<n>/` (cnnzoo's CSV log), with its W&B
run under `<default_root_dir>/wandb/`. `fit(ckpt_path=...)` reads the run clock saved in the
checkpoint and goes on in the CSV log (and, after a clean sitting, the W&B run) that the
checkpoint's run wrote, so that a run's curves are one log over all its sittings.

    trainer = RunTrainer(run_name="resnet20", callbacks=[LastCheckpoint(), RunClock()],
                         logger=[CSVLogger(), WandbLogger()])
    trainer.fit(model, datamodule, ckpt_path="last")  # goes on where the last sitting ended

Lightning's own ModelCheckpoint puts its files under the first logger's version folder, which a
resumed run does not know before it has read its checkpoint; the run's folder has no version.

It also keeps out of the way of short steps: without a profiler asked for, none runs (Lightning's
default stand-in still builds a context manager around each of the hundred-odd hooks it calls
a step), and a hook that a callback or the model inherits as a no-op is not called at each step.
"""

from __future__ import annotations

import contextlib
import inspect
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger as LightningCSVLogger
from lightning.pytorch.profilers import PassThroughProfiler

from cnnzoo.checkpoint import LastCheckpoint
from cnnzoo.lightning_internals import place_checkpoints, place_csv_log, skip_unused_hooks
from cnnzoo.loggers import CSVLogger, WandbLogger
from cnnzoo.sittings import RunClock, continued_log_versions

# `fit(ckpt_path=...)` values that name no file of this run.
LIGHTNING_CKPT_NAMES = ("best", "hpc", "registry")
LIGHTNING_LOGS = "lightning_logs"  # the name Lightning gives a logger that is given none
_NOT_PROFILED = contextlib.nullcontext()


class NoProfiler(PassThroughProfiler):
    """No profiling, at no cost: Lightning's `PassThroughProfiler` (its default) enters a new
    generator-based context manager at every hook call, about 140 a step of the `cnnzoo fit`
    command, 80 us of a LeNet-5 step on a CPU (benchmarks/trainer_overhead.py)."""

    def profile(self, action_name: str) -> contextlib.AbstractContextManager:
        return _NOT_PROFILED


class RunTrainer(L.Trainer):
    """Lightning's Trainer with cnnzoo's run folder, sittings and resumed logs.

    Args:
        run_name: the run's folder under `default_root_dir`, and its logs' name (None: the
            run is `default_root_dir` itself, its logs unnamed).
        sitting_minutes: end this sitting at the last epoch end within this many minutes
            (the run's `RunClock`, added when the callbacks have none); None: no limit.
        checkpoint_every_n_steps: how often `LastCheckpoint` also writes `last.ckpt` inside
            an epoch (0: at epoch ends only); None leaves the callback's own.
        *args, **kwargs: Lightning's Trainer's.
    """

    def __init__(
        self,
        *args,
        run_name: str | None = None,
        sitting_minutes: float | None = None,
        checkpoint_every_n_steps: int | None = None,
        **kwargs,
    ) -> None:
        if kwargs.get("profiler") is None:
            kwargs["profiler"] = NoProfiler()
        super().__init__(*args, **kwargs)
        self.run_name = run_name
        if sitting_minutes is not None:
            self._set_sitting(sitting_minutes)
        if checkpoint_every_n_steps is not None:
            for callback in self.callbacks:
                if isinstance(callback, LastCheckpoint):
                    place_checkpoints(callback, every_n_train_steps=checkpoint_every_n_steps)
        for callback in self.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.dirpath is None:
                place_checkpoints(callback, dirpath=self.run_dir / "checkpoints")
        for logger in self.loggers:
            if isinstance(logger, CSVLogger | WandbLogger):
                logger.follow_run(Path(self.default_root_dir), run_name)
            elif isinstance(logger, LightningCSVLogger) and logger.name == LIGHTNING_LOGS:
                # Lightning's own CSV logger under its default name: the run's name instead
                # (its log is not continued on resume: Lightning's writer starts it afresh).
                place_csv_log(logger, name=run_name)

    @property
    def run_dir(self) -> Path:
        """The run's folder: `<default_root_dir>/<run_name>`."""
        root = Path(self.default_root_dir)
        return root / self.run_name if self.run_name else root

    def _set_sitting(self, minutes: float) -> None:
        clock = next((cb for cb in self.callbacks if isinstance(cb, RunClock)), None)
        if clock is not None:
            clock.sitting_minutes = RunClock(minutes).sitting_minutes  # checked as RunClock does
            return
        # Before the checkpoint callbacks, as Lightning orders them: the clock's epoch end
        # decides the stop that the last.ckpt written after it records.
        first = next(
            (i for i, cb in enumerate(self.callbacks) if isinstance(cb, ModelCheckpoint)),
            len(self.callbacks),
        )
        self.callbacks.insert(first, RunClock(minutes))

    def fit(self, *args, **kwargs) -> None:
        bound = inspect.signature(L.Trainer.fit).bind(self, *args, **kwargs)
        self.continue_logs(bound.arguments.get("ckpt_path"))
        for hooked in [*self.callbacks, bound.arguments.get("model")]:
            if isinstance(hooked, L.Callback | L.LightningModule):
                skip_unused_hooks(hooked)
        super().fit(*args, **kwargs)

    def continue_logs(self, ckpt_path) -> None:
        """Write on in the CSV log (and W&B run) of the run that `ckpt_path` resumes."""
        if ckpt_path == "last":
            ckpt_path = self.last_checkpoint_path()
        if not ckpt_path or str(ckpt_path) in LIGHTNING_CKPT_NAMES:
            return
        versions = continued_log_versions(ckpt_path)
        for logger in self.loggers:
            if isinstance(logger, CSVLogger) and "csv" in versions:
                logger.continue_version(versions["csv"])
            if isinstance(logger, WandbLogger) and "wandb" in versions:
                logger.continue_version(versions["wandb"])

    def last_checkpoint_path(self) -> Path | None:
        """Where `LastCheckpoint` writes `last.ckpt` (what `ckpt_path="last"` resumes)."""
        for callback in self.callbacks:
            if isinstance(callback, LastCheckpoint) and callback.dirpath is not None:
                return Path(callback.dirpath) / f"{callback.CHECKPOINT_NAME_LAST}.ckpt"
        return None
