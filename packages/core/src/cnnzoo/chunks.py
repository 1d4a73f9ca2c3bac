"""Chunked training steps: one Lightning training step that takes K optimiser steps.

Lightning's work around a training step (its loop, hooks, progress counters, the batch's
transfer, the logs' bookkeeping) costs about 0.4 ms on a CPU whatever the step does (a
LeNet-5 step there takes 5.4 ms), and on a GPU, where a small network's step takes about a
millisecond, it bounds every short run (benchmarks/trainer_overhead.py).
`ImageClassifier(chunk=K)` pays it once per K optimiser steps: its data module's training
loader yields chunks of K batches (`cnnzoo_data.ClassificationDataModule`'s `chunk`), and
the training step runs through them under manual optimisation, doing for each batch what
Lightning does for a step under automatic optimisation, in the same order: the loss, the
gradients cleared, backward (with the precision plugin and its hooks), the optimiser's step
(which Lightning counts: the trainer's `global_step` stays in optimiser steps, and so do
`max_steps` and the schedules), the per-step schedules. The batches and their order are
chunk 1's, and so are the weights at the end, bit for bit (tests/test_chunks.py).

What Lightning counts in training steps is kept in optimiser steps here: the loggers' step
axis and their `log_every_n_steps` cadence (`train_chunk`, `logging_step_at`), `last.ckpt`
every n steps (`cnnzoo.checkpoint.LastCheckpoint` saves when a chunk crossed a multiple of
n), and the schedules' length (`training_steps`). What cannot be kept is refused before the
first step: gradient clipping and accumulation by the trainer (by Lightning itself, as for
any manual optimisation), a validation interval in batches and Lightning's own step
checkpoints (`check_chunked_run`). The learning-rate monitor writes the rate before each
chunk that logs a loss, at the step before the logged one, as for chunk 1; but not before a
chunk that follows another that logged (`log_every_n_steps` under twice the chunk).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from cnnzoo.errors import CnnzooError
from cnnzoo.lightning_internals import checkpoint_step_interval, set_logging_step

if TYPE_CHECKING:
    from cnnzoo.module import ImageClassifier


def train_chunk(module: ImageClassifier, batches: list, batch_idx: int) -> None:
    """One optimiser step on each batch of a chunk (the `batch_idx`-th of its epoch), as
    Lightning's automatic optimisation would take them one training step each."""
    trainer = module.trainer
    optimizer = module.optimizers()
    configs = trainer.lr_scheduler_configs
    per_step = [c.scheduler for c in configs if c.interval == "step" and not _watches(c)]
    every = trainer.log_every_n_steps
    logged = None  # the step whose loss this chunk logged
    for batch in batches:
        if 0 <= trainer.max_steps <= module.global_step:
            return  # the run ends inside this chunk (and so the epoch's schedules are not stepped)
        if module.logs_loss_this_step():
            logged = module.global_step + 1
        loss = module.training_loss(batch)
        optimizer.zero_grad()
        module.manual_backward(loss)
        optimizer.step()
        for scheduler in per_step:
            module.lr_scheduler_step(scheduler, None)
    if batch_idx + 1 == trainer.num_training_batches:
        # Lightning steps the epoch's schedules after its last batch, before validation.
        for config in configs:
            if config.interval == "epoch" and not _watches(config):
                module.lr_scheduler_step(config.scheduler, None)
    # The loggers write after this training step when the count Lightning keeps of training
    # steps, plus one, is a multiple of `log_every_n_steps`, at that count: made the step
    # whose loss was logged (less one, as Lightning's own axis), or one that writes nothing.
    # Lightning adds one before the next chunk, at whose start the learning-rate monitor
    # asks the same: made the step before the next chunk's logged one, if it logs one.
    step = module.global_step
    if logged is not None:
        set_logging_step(trainer, logged - 1)
    elif (upcoming := _logged_within(step, module.chunk, every)) is not None:
        set_logging_step(trainer, upcoming - 2)
    else:
        set_logging_step(trainer, step - 1)


def _logged_within(step: int, steps: int, every: int) -> int | None:
    """The step in (step, step + steps] whose loss is logged, if there is one."""
    if not every:
        return None
    upcoming = (step // every + 1) * every
    return upcoming if upcoming <= step + steps else None


def logging_step_at(module: ImageClassifier, moment: str) -> None:
    """Put the loggers' step count back on the optimiser steps taken (a chunk may have left
    it at the step it logged) at a `moment` of a chunked fit: "validation" (inside an epoch:
    Lightning adds the last step's one later), "epoch end", or "epoch start", where the
    learning-rate monitor asks whether the first chunk's step is logged."""
    trainer = module.trainer
    if module.automatic_optimization or trainer.sanity_checking or trainer.state.fn != "fit":
        return
    step = module.global_step
    if moment == "validation":
        set_logging_step(trainer, step - 1)
    elif moment == "epoch end":
        set_logging_step(trainer, step)
    else:
        upcoming = _logged_within(step, module.chunk, trainer.log_every_n_steps)
        set_logging_step(trainer, step if upcoming is None else upcoming - 1)


def _watches(config) -> bool:
    """Whether a schedule watches a validation figure (ReduceLROnPlateau)."""
    return isinstance(config.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)


def manual_schedule(schedule: dict) -> dict:
    """A schedule's Lightning config as manual optimisation takes it: without the figure it
    watches (Lightning warns that it ignores it; `step_plateau_schedules` is given it)."""
    return {key: value for key, value in schedule.items() if key not in ("monitor", "strict")}


def step_plateau_schedules(module: ImageClassifier, monitor: str) -> None:
    """The schedules that watch the validation figure `monitor`, at the epoch's end, as
    Lightning steps them for automatic optimisation."""
    trainer = module.trainer
    for config in trainer.lr_scheduler_configs:
        if not _watches(config):
            continue
        metric = trainer.callback_metrics.get(monitor)
        if metric is None:
            raise CnnzooError(
                f"the learning-rate schedule watches {monitor!r}, which was not logged this "
                f"epoch: validate every epoch (limit_val_batches > 0, check_val_every_n_epoch 1)."
            )
        module.lr_scheduler_step(config.scheduler, metric)


def training_steps(trainer: L.Trainer) -> tuple[float, float]:
    """(optimiser steps in the whole run, optimiser steps an epoch), as Lightning's
    `estimated_stepping_batches` counts them for one step a batch; inf when unknown."""
    chunk = getattr(trainer.lightning_module, "chunk", 1)
    total = trainer.estimated_stepping_batches  # sets up the training data first
    batches = trainer.num_training_batches
    if not math.isfinite(batches) or batches == 0:
        return total, batches
    if chunk == 1:
        return total, math.ceil(batches / trainer.accumulate_grad_batches)
    loader = trainer.train_dataloader
    per_batch = loader.batch_size // chunk
    per_epoch = min(batches * chunk, math.ceil(len(loader.sampler) / per_batch))
    total = per_epoch * trainer.max_epochs if trainer.max_epochs not in (None, -1) else math.inf
    if trainer.max_steps != -1:
        total = min(total, trainer.max_steps)
    return total, per_epoch


def check_chunked_run(module: ImageClassifier, trainer: L.Trainer) -> None:
    """Refuse, before the first step, what a chunked run would do otherwise than chunk 1."""
    data_chunk = getattr(trainer.datamodule, "chunk", 1)
    if data_chunk != module.chunk:
        raise CnnzooError(
            f"the model trains on chunks of {module.chunk} batches but the data module "
            f"yields chunks of {data_chunk}: give both the same chunk (the cnnzoo command "
            f"passes --data.chunk on to the model)."
        )
    if module.chunk == 1:
        return
    # Lightning itself refuses gradient clipping and accumulation by the trainer under
    # manual optimisation, naming the setting, before the run starts.
    problem = None
    if isinstance(trainer.val_check_interval, int):
        problem = (
            f"a validation every {trainer.val_check_interval} batches (val_check_interval), "
            f"which would count chunks: give it as a fraction of the epoch (e.g. 0.5)"
        )
    for callback in trainer.checkpoint_callbacks:
        every = isinstance(callback, ModelCheckpoint) and checkpoint_step_interval(callback)
        if every and not getattr(callback, "saves_on_crossing", False):
            problem = (
                f"ModelCheckpoint(every_n_train_steps={every}), which saves only after the "
                f"chunks that end on a multiple of {every}: use cnnzoo.checkpoint."
                f"LastCheckpoint, which saves after every chunk that crosses one"
            )
    if problem is not None:
        raise CnnzooError(f"chunk {module.chunk} cannot keep {problem}; or train with chunk 1.")
