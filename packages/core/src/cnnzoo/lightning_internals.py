"""Every private piece of Lightning that cnnzoo uses, in one place, each with why there is no
public way; `tests/test_lightning_internals.py` fails loudly, naming the piece, when a
Lightning release changes one. Checked against Lightning 2.5 and 2.6, the releases the
packages allow (`lightning>=2.5,<2.7`): a newer one is allowed once this test passes on it.

The private hooks that cnnzoo's subclasses override are listed in `OVERRIDDEN`: a release
that renames one would leave our override silently unused.
"""

from __future__ import annotations

import os
from typing import Any

import lightning as L
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.fabric.utilities.seed import _collect_rng_states, _set_rng_states
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.callbacks.progress.rich_progress import _RICH_AVAILABLE
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.loggers.utilities import _scan_checkpoints

# Whether `rich` is importable as Lightning's RichProgressBar needs it (its own test of the
# version, which a plain import of rich would not make).
RICH_AVAILABLE = bool(_RICH_AVAILABLE)

# (class, private method) that a cnnzoo subclass overrides or calls, and where.
OVERRIDDEN = (
    # cnnzoo.loggers.WandbLogger: the checkpoints' artifacts carry the model card.
    (WandbLogger, "_scan_and_log_checkpoints"),
    # cnnzoo.checkpoint.LastCheckpoint: last.ckpt at every epoch end beside every n steps.
    (ModelCheckpoint, "_should_skip_saving_checkpoint"),
    (ModelCheckpoint, "_save_topk_checkpoint"),
    (ModelCheckpoint, "_monitor_candidates"),
)


def collect_rng_states(include_cuda: bool) -> dict[str, Any]:
    """torch's, numpy's and Python's RNG states. Lightning saves them only in its fault-
    tolerant loop state; a checkpoint that should resume the same dropout masks and
    augmentations has to save them itself."""
    return _collect_rng_states(include_cuda=include_cuda)


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what `collect_rng_states` gave."""
    _set_rng_states(states)


def load_training_loader_state(trainer: L.Trainer) -> None:
    """Hand the training loader its checkpointed position (a run resumed mid-epoch).
    Lightning does so when it first sets up the training data, but
    `estimated_stepping_batches` (read by `configure_optimizers` for the schedule) sets it up
    before the checkpoint is restored, so Lightning's own call finds nothing to load, and no
    public call does it again."""
    trainer.fit_loop._load_combined_loader_states()


def wandb_init_arguments(logger: WandbLogger) -> dict[str, Any]:
    """The arguments Lightning's W&B logger will pass to `wandb.init`, to edit before the
    run starts: the logger takes no others than its own and `**kwargs`, and passes
    `anonymous=None` when unset, which W&B answers with a warning at every run."""
    return logger._wandb_init


def checkpoints_to_log(checkpoint_callback: ModelCheckpoint, logged_model_time: dict):
    """(mtime, path, score, tag) of the checkpoints written since they were last logged:
    Lightning's own scan, which its W&B logger uses for the same job."""
    return _scan_checkpoints(checkpoint_callback, logged_model_time)


def place_checkpoints(
    callback: ModelCheckpoint, *, dirpath=None, every_n_train_steps: int | None = None
) -> None:
    """Give a built checkpoint callback its folder or its step interval (a `RunTrainer`
    places its callbacks in the run's folder): ModelCheckpoint takes both in its constructor
    only, and without a folder asks the first logger's version folder at setup, which a run
    resumed with `ckpt_path="last"` has to know before."""
    if dirpath is not None:
        callback.dirpath = os.path.realpath(os.path.expanduser(os.fspath(dirpath)))
        callback._fs = get_filesystem(callback.dirpath)
    if every_n_train_steps is not None:
        callback._every_n_train_steps = every_n_train_steps


def place_csv_log(logger: CSVLogger, *, save_dir=None, name=None, version=None) -> None:
    """Set a built CSV logger's folder, name or version before it writes (the logger takes
    them in its constructor only; a run's name and resumed version are known later). The
    logger keeps its folder twice: as Fabric's logger does, and as its own `save_dir`."""
    if save_dir is not None:
        logger._root_dir = logger._save_dir = os.fspath(save_dir)
        logger._fs = get_filesystem(logger._root_dir)
    if name is not None:
        logger._name = name
    if version is not None:
        logger._version = version


def place_wandb_run(logger: WandbLogger, *, save_dir=None, name=None, run_id=None) -> None:
    """Set a W&B logger's folder, run name or run id before its run starts (as
    `place_csv_log`: the logger keeps each twice, as an attribute and in its init arguments)."""
    arguments = wandb_init_arguments(logger)
    if save_dir is not None:
        arguments["dir"] = logger._save_dir = os.fspath(save_dir)
    if name is not None:
        arguments["name"] = logger._name = name
    if run_id is not None:
        arguments["id"] = logger._id = run_id


# The hooks Lightning calls at every training step, and at every evaluation or prediction batch.
TRAINING_STEP_HOOKS = (
    "on_train_batch_start",
    "on_train_batch_end",
    "on_before_backward",
    "on_after_backward",
    "on_before_optimizer_step",
    "on_before_zero_grad",
)
EVALUATION_BATCH_HOOKS = tuple(
    f"on_{stage}_batch_{when}"
    for stage in ("validation", "test", "predict")
    for when in ("start", "end")
)


def skip_unused_hooks(obj: L.Callback | L.LightningModule) -> list[str]:
    """Have Lightning skip the per-step hooks that a callback or module inherits as no-ops;
    the names skipped. Lightning calls every hook of every callback at every step, each
    through its profiler with the callback's state key formatted, and skips an attribute
    that is not callable (`trainer.call._call_callback_hooks`, `_call_lightning_module_hook`):
    nine callbacks with six hooks a step cost a LeNet-5 step 60 us on a CPU
    (benchmarks/trainer_overhead.py). A class that defines the hook keeps it. A module keeps
    its evaluation batch hooks: Lightning reads their signatures before an evaluation."""
    if isinstance(obj, L.Callback):
        base, hooks = L.Callback, TRAINING_STEP_HOOKS + EVALUATION_BATCH_HOOKS
    else:
        base, hooks = L.LightningModule, TRAINING_STEP_HOOKS
    skipped = []
    for name in hooks:
        if getattr(type(obj), name, None) is getattr(base, name) and name not in vars(obj):
            setattr(obj, name, None)  # an instance attribute: the class is left alone
            skipped.append(name)
    return skipped


def set_logging_step(trainer: L.Trainer, step: int) -> None:
    """Set the count of training steps that Lightning's loggers write at (their step axis)
    and decide by (`log_every_n_steps`): it counts training steps (one per batch) and has no
    public setter; a chunked training step (`cnnzoo.chunks`) takes several optimiser steps,
    which the axis should count instead."""
    trainer.fit_loop.epoch_loop._batches_that_stepped = step


def checkpoint_step_interval(callback: ModelCheckpoint) -> int:
    """Every how many training steps a checkpoint callback saves (0: it does not): kept
    private, without a public getter."""
    return callback._every_n_train_steps or 0
