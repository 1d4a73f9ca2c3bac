"""The papers' optimisers and learning-rate schedules, built on timm and torch.

Weight decay is kept off biases and normalisation parameters (timm's parameter groups).
The schedules are timm's (step, multi-step, cosine, linear decay, with warm-up) plus torch's
ReduceLROnPlateau for the papers' "divide the rate by 10 when the validation error stops
improving" (AlexNet §5, VGG §3.1, ZFNet §3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
from timm.optim import create_optimizer_v2
from timm.scheduler import MultiStepLRScheduler, create_scheduler_v2
from torch import nn

from cnnzoo.chunks import training_steps

# Our names for the papers' optimisers -> timm's optimiser names.
_TIMM_OPTIMIZERS = {
    ("sgd", False): "momentum",  # timm calls plain momentum SGD "momentum"
    ("sgd", True): "nesterov",
    ("rmsprop", False): "rmsprop",
    ("rmsprop_tf", False): "rmsproptf",  # TensorFlow's RMSProp, as Inception-v3 trained with
    ("adamw", False): "adamw",
}


@dataclass
class OptimizerSpec:
    """An optimiser as a paper states it.

    `batch_size` is the global batch the paper's `lr` is for (all processes together).
    When set, the rate follows the linear scaling rule (Goyal et al. 2017, "Accurate, Large
    Minibatch SGD", §2.1): a run with another global batch B trains at lr * B / batch_size.
    Unset, the rate is taken as it is, whatever the batch.
    """

    name: Literal["sgd", "rmsprop", "rmsprop_tf", "adamw"] = "sgd"
    lr: float = 0.01
    batch_size: int | None = None
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    decay_norm_and_bias: bool = False  # the papers before BatchNorm decayed every weight
    eps: float | None = None  # RMSProp's epsilon (Inception-v3: 1.0)
    alpha: float | None = None  # RMSProp's decay (Inception-v3: 0.9)
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW


@dataclass
class ScheduleSpec:
    """A learning-rate schedule; epochs may be fractional when `interval` is "step".

    `linear` decays the rate in a straight line to `min_lr` at the end of training
    (ShuffleNet §4). `milestone_steps` gives a multistep schedule's milestones in iterations,
    as ResNet §4.2 states them ("divide it by 10 at 32k and 48k iterations"), instead of
    `milestones` in epochs; it needs `interval: step`.
    """

    name: Literal["constant", "step", "multistep", "cosine", "linear", "plateau"] = "constant"
    decay_rate: float = 0.1
    decay_epochs: float = 30  # step: decay every this many epochs
    milestones: list[float] = field(default_factory=list)  # multistep: decay at these epochs
    milestone_steps: list[int] = field(default_factory=list)  # multistep: at these iterations
    warmup_epochs: float = 0
    warmup_steps: int = 0  # the warm-up in iterations instead (ResNet §4.2: 400), interval: step
    warmup_lr: float = 1e-5
    min_lr: float = 0.0
    patience: int = 5  # plateau: epochs without improvement before dividing
    threshold: float = 1e-4  # plateau: smallest change of the error that counts
    interval: Literal["epoch", "step"] = "epoch"  # update the rate per epoch or per iteration


def scaled_lr(spec: OptimizerSpec, global_batch_size: int | None) -> float:
    """The learning rate for a global batch, by the linear scaling rule (see OptimizerSpec)."""
    if spec.batch_size is None:
        return spec.lr
    if spec.batch_size < 1:
        raise ValueError(f"optimizer batch_size must be at least 1; got {spec.batch_size}.")
    if global_batch_size is None:
        raise ValueError(
            "the optimizer's lr is stated for a global batch of "
            f"{spec.batch_size}, but the data module has no batch_size to scale it by; "
            "unset optimizer.batch_size to take the lr as it is."
        )
    return spec.lr * global_batch_size / spec.batch_size


# torch's own optimisers that have a fused CUDA form: one kernel for all the weights' update
# instead of one per group of tensors (the same arithmetic).
_FUSED = ("sgd", "adamw")


def build_optimizer(
    model: nn.Module, spec: OptimizerSpec, global_batch_size: int | None = None
) -> torch.optim.Optimizer:
    """The paper's optimiser through timm; fused where torch has a fused form and the
    weights are on a CUDA device."""
    key = (spec.name, spec.nesterov)
    if key not in _TIMM_OPTIMIZERS:
        raise ValueError(
            f"optimizer {spec.name!r} with nesterov={spec.nesterov} is not supported; "
            f"choose sgd (with or without nesterov), rmsprop, rmsprop_tf or adamw."
        )
    extra: dict[str, object] = {}
    if spec.name.startswith("rmsprop"):
        extra.update({k: v for k, v in (("eps", spec.eps), ("alpha", spec.alpha)) if v is not None})
    if spec.name == "adamw":
        extra["betas"] = spec.betas
    if spec.name in _FUSED and all(p.is_cuda for p in model.parameters()):
        extra["fused"] = True
    return create_optimizer_v2(
        model,
        opt=_TIMM_OPTIMIZERS[key],
        lr=scaled_lr(spec, global_batch_size),
        weight_decay=spec.weight_decay,
        momentum=spec.momentum,
        filter_bias_and_bn=not spec.decay_norm_and_bias,
        **extra,
    )


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    spec: ScheduleSpec,
    max_epochs: int,
    steps_per_epoch: int,
    monitor: str,
    mode: Literal["min", "max"] = "min",
) -> dict | None:
    """A Lightning lr-scheduler config dict, or None for a constant rate without warm-up.
    `monitor` is what the plateau schedule watches: an error ("min") or an mAP ("max")."""
    if spec.name == "constant" and spec.warmup_epochs == 0 and spec.warmup_steps == 0:
        return None
    if spec.name == "plateau":
        if spec.warmup_epochs or spec.warmup_steps:
            raise ValueError("the plateau schedule has no warm-up; set warmup_epochs: 0.")
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer,
            mode=mode,
            factor=spec.decay_rate,
            patience=spec.patience,
            threshold=spec.threshold,
            threshold_mode="abs",
            min_lr=spec.min_lr,
        )
        return {"scheduler": scheduler, "interval": "epoch", "monitor": monitor, "strict": True}
    per_step = spec.interval == "step"
    if spec.warmup_steps and not per_step:
        raise ValueError("warmup_steps counts iterations: set interval: step.")
    if spec.milestone_steps:
        return {
            "scheduler": _multistep_in_iterations(optimizer, spec, steps_per_epoch),
            "interval": "step",
        }
    # timm applies a milestone one update early (at t = m - 1, its long-standing convention);
    # one update later it falls where the paper puts it: the rate changes at epoch m.
    one_update = 1 / steps_per_epoch if per_step else 1
    scheduler, _ = create_scheduler_v2(
        optimizer,
        # timm's polynomial decay of power 1 is the linear decay
        sched="poly" if spec.name == "linear" else spec.name,
        num_epochs=max_epochs,
        decay_epochs=spec.decay_epochs,
        decay_milestones=[milestone + one_update for milestone in spec.milestones],
        decay_rate=1.0 if spec.name == "linear" else spec.decay_rate,
        min_lr=spec.min_lr,
        warmup_lr=spec.warmup_lr,
        warmup_epochs=spec.warmup_steps / steps_per_epoch or spec.warmup_epochs,
        step_on_epochs=not per_step,
        updates_per_epoch=steps_per_epoch if per_step else 0,
    )
    return {"scheduler": scheduler, "interval": spec.interval}


def _multistep_in_iterations(
    optimizer: torch.optim.Optimizer, spec: ScheduleSpec, steps_per_epoch: int
) -> MultiStepLRScheduler:
    """A multistep schedule whose milestones are iterations: the rate of iteration t (counted
    from 0) is divided once for each milestone m <= t, so with ResNet §4.2's 32k it is 0.1
    for the first 32,000 updates and 0.01 from the next.

    Built here, not by `create_scheduler_v2`, which takes milestones in epochs and multiplies
    them by the updates per epoch in floating point (32001/352 * 352 is not 32001).
    """
    if spec.name != "multistep" or spec.interval != "step" or spec.milestones:
        raise ValueError(
            "milestone_steps are a multistep schedule's milestones in iterations: set "
            "name: multistep and interval: step, and leave milestones (epochs) empty; got "
            f"name {spec.name!r}, interval {spec.interval!r}, milestones {spec.milestones}."
        )
    return MultiStepLRScheduler(
        optimizer,
        # timm divides at t = m - 1 (its convention): m + 1 divides at iteration m
        decay_t=[int(step) + 1 for step in spec.milestone_steps],
        decay_rate=spec.decay_rate,
        warmup_t=spec.warmup_steps or round(spec.warmup_epochs * steps_per_epoch),
        warmup_lr_init=spec.warmup_lr,
        warmup_prefix=False,  # the milestones count from the first iteration, warm-up included
        t_in_epochs=False,
    )


def step_scheduler(scheduler: object, interval: str, epoch: int, global_step: int, metric=None):
    """Advance a torch or timm scheduler the way each expects."""
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(metric)
    elif isinstance(scheduler, torch.optim.lr_scheduler.LRScheduler):
        scheduler.step()
    elif interval == "step":
        scheduler.step_update(num_updates=global_step)  # timm: per-iteration schedules
    else:
        scheduler.step(epoch=epoch + 1)  # timm: the rate for the epoch about to start


def configure_optimization(
    module,
    model: nn.Module,
    optimizer: OptimizerSpec,
    schedule: ScheduleSpec,
    monitor: str,
    mode: Literal["min", "max"] = "min",
) -> dict | torch.optim.Optimizer:
    """A LightningModule's `configure_optimizers` for a paper's optimiser and schedule.

    The rate is scaled to the run's global batch (see OptimizerSpec), which is the data
    module's `batch_size` (per process) x processes x accumulated batches.
    """
    trainer = module.trainer
    per_process = getattr(trainer.datamodule, "batch_size", None)
    global_batch = (
        per_process * trainer.world_size * trainer.accumulate_grad_batches
        if per_process is not None
        else None
    )
    built = build_optimizer(model, optimizer, global_batch)
    if optimizer.batch_size is not None:
        from lightning.pytorch.utilities import rank_zero_info

        rank_zero_info(
            f"learning rate {built.param_groups[0]['lr']:g} for a global batch of "
            f"{global_batch} (the recipe's {optimizer.lr:g} is for {optimizer.batch_size}; "
            f"linear scaling rule)"
        )
    total_steps, steps_per_epoch = training_steps(trainer)  # sets up the training data first
    if math.isfinite(steps_per_epoch) and steps_per_epoch > 0:
        # A run bounded by max_steps (max_epochs: -1, ResNet §4.2's 64k iterations) lasts
        # as many epochs as those steps take.
        max_epochs = max(1, math.ceil(total_steps / steps_per_epoch))
    else:  # an iterable dataset of unknown length
        max_epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else 1
        steps_per_epoch = max(1, total_steps // max_epochs)
    scheduler = build_scheduler(built, schedule, max_epochs, int(steps_per_epoch), monitor, mode)
    if scheduler is None:
        return built
    return {"optimizer": built, "lr_scheduler": scheduler}
