"""The core LightningModule: trains, evaluates and predicts with any registered model.

It owns the loss (label smoothing, auxiliary classifiers weighted as their paper did), the
paper's optimiser and schedule, top-1/top-5 error and multi-crop evaluation. It knows nothing
of any one architecture: everything it needs comes through the model protocol and the model
card. What a run needs to resume mid-epoch exactly is the `cnnzoo.resume.ExactResume`
callback's; the run's clock and sittings are `cnnzoo.sittings.RunClock`'s.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric

from cnnzoo.checkpoint import CheckpointError, load_checkpoint_file
from cnnzoo.chunks import (
    check_chunked_run,
    logging_step_at,
    manual_schedule,
    step_plateau_schedules,
    train_chunk,
)
from cnnzoo.errors import CnnzooError
from cnnzoo.metrics import TopKError
from cnnzoo.optim import OptimizerSpec, ScheduleSpec, configure_optimization, step_scheduler
from cnnzoo.protocol import AuxLogits
from cnnzoo.registry import create_model

MONITOR = "val/top1_error"
_VERSIONED = ("cnnzoo", "torch", "torchvision", "lightning", "timm")


def _versions() -> dict[str, str]:
    found = {}
    for dist in _VERSIONED:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[dist] = importlib.metadata.version(dist)
    return found


class StepSums:
    """Training steps' losses and top-k counts summed on the device (in place: no new
    tensor a step), with how many steps and images they cover."""

    def __init__(self, loss: torch.Tensor, found: torch.Tensor) -> None:
        self.loss, self.found = torch.zeros_like(loss), torch.zeros_like(found)
        self.steps = self.images = 0

    def add(self, loss: torch.Tensor, found: torch.Tensor, images: int) -> None:
        self.loss.add_(loss)
        self.found.add_(found)
        self.steps += 1
        self.images += images


class ImageClassifier(L.LightningModule):
    """Image classification with a registered cnnzoo model.

    Args:
        arch: registry name of the model (`cnnzoo models` lists them).
        num_classes, in_chans: default to the data module's (linked by the CLI) or the paper's.
        model_kwargs: the variant's own arguments (only what its paper varied).
        pretrained: start from the published weights the card lists (True: the first; or a
            weights name), for fine-tuning; fetched once, then kept in this run's checkpoints.
        optimizer, schedule: the paper's optimisation, see `OptimizerSpec` and `ScheduleSpec`.
        label_smoothing: Inception-v3's label-smoothing regulariser (0.1 there).
        aux_loss_weight: weight of auxiliary classifiers' losses; None takes the card's (0.3
            for GoogLeNet).
        channels_last: train in NHWC memory layout (faster convolutions on GPUs).
        compile: run the training forward and backward through `torch.compile`: True for its
            default mode, or a mode by name ("reduce-overhead" replays each step as CUDA
            graphs, for small networks whose steps are bound by kernel launches). Shapes are
            compiled static (one graph for the full batches, one for an epoch's last);
            evaluation runs eagerly, since each of its batch shapes would compile again.
        chunk: optimiser steps per training step, one on each batch of a chunk that the data
            module's training loader yields (its `chunk`, the same number): Lightning's own
            work around a step is paid once per chunk (`cnnzoo.chunks`). The weights at the
            end are chunk 1's; trainer-side gradient clipping and accumulation are not taken.
    """

    def __init__(
        self,
        arch: str = "lenet5",
        num_classes: int | None = None,
        in_chans: int | None = None,
        model_kwargs: dict[str, Any] | None = None,
        pretrained: bool | str = False,
        optimizer: OptimizerSpec | None = None,
        schedule: ScheduleSpec | None = None,
        label_smoothing: float = 0.0,
        aux_loss_weight: float | None = None,
        channels_last: bool = False,
        compile: bool | Literal["default", "reduce-overhead", "max-autotune"] = False,
        chunk: int = 1,
    ) -> None:
        super().__init__()
        if chunk < 1:
            raise ValueError(
                f"chunk must be at least 1 (optimiser steps per training step); got {chunk}."
            )
        # A checkpoint's hyper-parameters hold the specs as dicts (load_from_checkpoint).
        optimizer = OptimizerSpec(**optimizer) if isinstance(optimizer, dict) else optimizer
        schedule = ScheduleSpec(**schedule) if isinstance(schedule, dict) else schedule
        optimizer = optimizer or OptimizerSpec()
        schedule = schedule or ScheduleSpec()
        self.save_hyperparameters(
            {
                "arch": arch,
                "num_classes": num_classes,
                "in_chans": in_chans,
                "model_kwargs": dict(model_kwargs or {}),
                "pretrained": pretrained,
                "optimizer": dataclasses.asdict(optimizer),
                "schedule": dataclasses.asdict(schedule),
                "label_smoothing": label_smoothing,
                "aux_loss_weight": aux_loss_weight,
                "channels_last": channels_last,
                "compile": compile,
                "chunk": chunk,
            }
        )
        self.chunk = chunk
        self.automatic_optimization = chunk == 1  # a chunk's steps are taken by `train_chunk`
        self.optimizer_spec = optimizer
        self.schedule_spec = schedule
        self.model = create_model(
            arch, num_classes, in_chans, pretrained=pretrained, **(model_kwargs or {})
        )
        self.card = self.model.card
        # One image at the paper's size: Lightning's model summary counts the FLOPs of a
        # forward pass on it, in eval mode (it shows "Total FLOPs: 0" without one).
        self.example_input_array = torch.zeros(1, self.model.in_chans, *self.card.input_size[1:])
        self.aux_loss_weight = (
            aux_loss_weight if aux_loss_weight is not None else self.card.aux_loss_weight
        )
        self.label_smoothing = label_smoothing
        self.channels_last = channels_last
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        # Compiled forward kept outside the module tree so state-dict keys stay the model's
        # (plain assignment would register it as a second copy of the model's weights).
        compiled = (
            torch.compile(self.model, mode=None if compile is True else compile, dynamic=False)
            if compile
            else self.model
        )
        object.__setattr__(self, "_compiled", compiled)
        # The model's dense form (`_dense_model`), kept for one evaluation epoch.
        object.__setattr__(self, "_dense_form", None)
        classes = self.model.num_classes
        # Synced across processes under DDP, as the errors are. Its NaN check would read the
        # device at every step; a non-finite loss makes its running sum non-finite, which
        # `_check_finite_loss` reads where the host waits for the device anyway.
        self.train_loss = MeanMetric(nan_strategy="disable")
        self._finite_until = 0  # the last step at which the running loss was seen finite
        ks = tuple(k for k in (1, 5) if k < classes)
        self.errors = torch.nn.ModuleDict(
            {f"{stage}_errors": TopKError(ks) for stage in ("train", "val", "test")}
        )
        # A training step adds its loss and top-k counts to these sums on the device, and
        # the metrics take them at each loss log and epoch end (`_fold_step_sums`): a
        # torchmetrics update costs 20 to 40 us of bookkeeping a call on a CPU, a LeNet-5
        # step's trainer work twice over (benchmarks/trainer_overhead.py).
        object.__setattr__(self, "_step_sums", None)  # a StepSums, or None

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, map_location: str = "cpu", arch: str | None = None
    ) -> ImageClassifier:
        """A trained classifier from a checkpoint that `cnnzoo fit` wrote, without its
        training config: the one way predict, explain, export and detection's backbones load
        one. `arch`, when given, is the model the caller expects. A missing, damaged or
        foreign file, or another model's checkpoint, is refused with what to do."""
        # Tensors mapped, not read: a look at the hyper-parameters before the real load.
        contents = load_checkpoint_file(path, weights_only=False, mmap=True)
        hparams = contents.get("hyper_parameters", {}) if isinstance(contents, dict) else {}
        saved = hparams.get("arch")
        if saved is None or "state_dict" not in contents:
            raise CheckpointError(
                f"{path} is not a cnnzoo checkpoint (it holds no hyper_parameters.arch and "
                f"state_dict): pass one written by `cnnzoo fit`, e.g. "
                f"runs/<arch>/checkpoints/last.ckpt."
            )
        if arch is not None and arch != saved:
            raise CheckpointError(
                f"the checkpoint {path} holds a {saved!r} model, not {arch!r}. Leave the "
                f"model name out or name {saved!r}, or pass a checkpoint of {arch!r}."
            )
        return cls.load_from_checkpoint(path, map_location=map_location, weights_only=False)

    @property
    def classes(self) -> list[str] | None:
        """The class names of the data the model learned (None: the data named none): the
        model's own `classes`, kept in the checkpoints, so that predict, explain, export and
        the gallery name classes without the data."""
        return self.model.classes

    @classes.setter
    def classes(self, names: list[str] | None) -> None:
        self.model.classes = names

    def forward(self, x: torch.Tensor) -> torch.Tensor | AuxLogits:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return (self._compiled if self.training else self.model)(x)

    def _loss(self, output: torch.Tensor | AuxLogits, target: torch.Tensor) -> torch.Tensor:
        criterion = self.model.criterion  # the paper's loss: cross-entropy for most
        if isinstance(output, AuxLogits):
            loss = criterion(output.logits, target, label_smoothing=self.label_smoothing)
            for aux in output.aux_logits:
                aux_loss = criterion(aux, target, label_smoothing=self.label_smoothing)
                loss = loss + self.aux_loss_weight * aux_loss
            return loss
        return criterion(output, target, label_smoothing=self.label_smoothing)

    def _update_metrics(self, stage: str, logits: torch.Tensor, target: torch.Tensor) -> None:
        self.errors[f"{stage}_errors"].update(logits, target)

    def _log_metrics(self, stage: str) -> None:
        # Logged once an epoch, where their value is computed, not at every step: each
        # `self.log` call costs Lightning milliseconds on a CPU (it copies the call's
        # metadata), a fifth of a LeNet-5 step (benchmarks/lenet_mnist_epoch.py).
        metric = self.errors[f"{stage}_errors"]
        if metric.update_called:
            errors = metric.compute().reshape(len(metric.ks))  # torchmetrics squeezes one k
            for k, error in zip(metric.ks, errors, strict=True):
                self.log(f"{stage}/top{k}_error", error, on_step=False, on_epoch=True)
        metric.reset()

    def training_step(self, batch, batch_idx: int):
        """A batch's loss (Lightning takes the optimiser step), or a chunk's optimiser steps."""
        if self.chunk > 1:
            return train_chunk(self, batch, batch_idx)
        return self.training_loss(batch)

    def training_loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """A training batch's loss, added to the epoch's figures and logged every
        `log_every_n_steps` steps."""
        # Nothing here reads a value back from the device: on a GPU each read would stop the
        # host until the step's kernels had run, and the next step's would start late
        # (benchmarks/host_syncs.py counts them; tests/test_module.py keeps them at none).
        images, target = batch
        output = self(images)
        loss = self._loss(output, target)
        logits = output.logits if isinstance(output, AuxLogits) else output
        self._add_step_sums(loss.detach(), logits.detach(), target)
        # The step loss goes to the loggers every `log_every_n_steps` steps, when they write:
        # each `self.log` costs Lightning about 2.5 ms on a CPU, a fifth of a LeNet-5 step
        # (benchmarks/lenet_mnist_epoch.py). Not to the progress bar, which would read it back
        # from the device at every step: `cnnzoo.callbacks.ProgressBar` shows the logged
        # value. The epoch's mean is a metric, logged at the epoch's end.
        if self.logs_loss_this_step():
            self._check_finite_loss()
            self.log("train/loss_step", loss.detach(), on_step=True, on_epoch=False)
        return loss

    def logs_loss_this_step(self) -> bool:
        """Whether the step about to be taken logs its loss: every `log_every_n_steps` steps
        (never when that is 0)."""
        every = self._trainer.log_every_n_steps if self._trainer is not None else 1
        return every > 0 and (self.global_step + 1) % every == 0

    def _add_step_sums(self, loss: torch.Tensor, logits: torch.Tensor, target: torch.Tensor):
        found = self.errors["train_errors"].found(logits, target)
        if self._step_sums is None:
            object.__setattr__(self, "_step_sums", StepSums(loss, found))
        self._step_sums.add(loss, found, len(target))

    def _fold_step_sums(self) -> None:
        """Hand the training steps' sums since the last fold to the epoch's metrics."""
        sums = self._step_sums
        if sums is None:
            return
        # Each step's weight 1, as one value per step: MeanMetric(nan_strategy="disable")
        # ignores a `weight` (torchmetrics 1.x sets it to ones with the NaN check off).
        self.train_loss.update((sums.loss / sums.steps).expand(sums.steps))
        self.errors["train_errors"].update(found=sums.found, total=sums.images)
        object.__setattr__(self, "_step_sums", None)

    def _check_finite_loss(self) -> None:
        """Stop the run if a step's loss was NaN or infinite since the last check: the
        epoch's running sum of losses is not finite then. Checked at each loss log and epoch
        end; the checkpoints refuse non-finite weights meanwhile."""
        self._fold_step_sums()
        running = self.train_loss.mean_value
        if bool(torch.isfinite(running)):
            self._finite_until = self.global_step
            return
        raise FloatingPointError(
            f"the training loss became {float(running)} between steps {self._finite_until} "
            f"and {self.global_step} (epoch {self.current_epoch}). Lower the learning rate or "
            f"check the inputs; the last checkpoint before this is intact."
        )

    def _evaluate(self, batch, stage: str) -> torch.Tensor:
        images, target = batch
        log_probs = self.predict_log_probs(images)
        loss = F.nll_loss(log_probs, target)
        # The batch size said, not guessed from the first tensor (a dense batch is a list).
        self.log(
            f"{stage}/loss", loss, prog_bar=stage == "val", on_epoch=True, batch_size=len(target)
        )
        self._update_metrics(stage, log_probs, target)
        return log_probs

    def predict_log_probs(self, images: torch.Tensor | list[list[torch.Tensor]]) -> torch.Tensor:
        """Log class probabilities; a 5-D batch (N, crops, C, H, W) averages the crops'
        softmax outputs, as AlexNet's 10-crop and GoogLeNet's 144-crop tests do; a list
        (per image, one (views, C, H, W) tensor per scale) is VGG's dense evaluation."""
        if isinstance(images, list):
            return self._dense_log_probs(images)
        if images.ndim == 5:
            batch, crops = images.shape[:2]
            logits = self(images.flatten(0, 1))
            probs = logits.softmax(dim=-1).view(batch, crops, -1).mean(dim=1)
            return probs.clamp_min(1e-12).log()
        return self(images).log_softmax(dim=-1)

    def _dense_log_probs(self, images: list[list[torch.Tensor]]) -> torch.Tensor:
        """VGG §3.2 and §4.2: each image whole, at each test scale, with its mirror image,
        through the model's dense form (`ClassifierNet.dense`); "the soft-max class
        posteriors" averaged over views and scales. Whole images differ in size: one image
        at a time."""
        dense = self._dense_model()
        probs = [
            torch.cat([dense(views).softmax(dim=-1) for views in scales]).mean(dim=0)
            for scales in images
        ]
        return torch.stack(probs).clamp_min(1e-12).log()

    def _dense_model(self) -> torch.nn.Module:
        # A converted copy (VGG's) holds the weights of the moment: built once an evaluation
        # epoch under a trainer, at every call outside one.
        dense = self._dense_form
        if dense is None:
            if not hasattr(self.model, "dense"):
                raise CnnzooError(
                    f"{self.hparams.arch} does not speak cnnzoo's model protocol's dense(): "
                    f"evaluate it on crops (test_crops: center, ten or googlenet144)."
                )
            dense = self.model.dense()
            if self._trainer is not None:
                object.__setattr__(self, "_dense_form", dense)
        return dense.train(self.model.training)

    def _forget_dense_model(self) -> None:
        object.__setattr__(self, "_dense_form", None)

    def on_validation_epoch_start(self) -> None:
        self._forget_dense_model()

    def on_test_epoch_start(self) -> None:
        self._forget_dense_model()

    def on_predict_epoch_start(self) -> None:
        self._forget_dense_model()

    def validation_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._evaluate(batch, "val")

    def test_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._evaluate(batch, "test")

    def on_validation_start(self) -> None:
        logging_step_at(self, "validation")

    def on_train_epoch_start(self) -> None:
        logging_step_at(self, "epoch start")

    def on_train_epoch_end(self) -> None:
        if not self.automatic_optimization:
            logging_step_at(self, "epoch end")
            step_plateau_schedules(self, MONITOR)
        self._check_finite_loss()
        self.log("train/loss_epoch", self.train_loss, on_step=False, on_epoch=True)
        self._log_metrics("train")

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test")

    def predict_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        images = batch[0] if isinstance(batch, list | tuple) else batch
        probs = self.predict_log_probs(images).exp()
        top = probs.topk(min(5, probs.shape[-1]), dim=-1)
        return {"probs": probs, "top_classes": top.indices, "top_probs": top.values}

    def configure_optimizers(self):
        configured = configure_optimization(
            self, self.model, self.optimizer_spec, self.schedule_spec, MONITOR
        )
        if self.chunk > 1 and isinstance(configured, dict):
            configured["lr_scheduler"] = manual_schedule(configured["lr_scheduler"])
        return configured

    def lr_scheduler_step(self, scheduler, metric) -> None:
        step_scheduler(
            scheduler,
            self.schedule_spec.interval,
            epoch=self.current_epoch,
            global_step=self.global_step,
            metric=metric,
        )

    def setup(self, stage: str) -> None:
        if stage == "fit":
            check_chunked_run(self, self.trainer)
        names = getattr(self.trainer.datamodule, "classes", None)
        if names:  # kept in the checkpoints (see `classes`)
            self.classes = [str(name) for name in names]
        # A model with fewer outputs than the data has classes fails here, before any step,
        # rather than as an index error deep in the loss (or a CUDA assert).
        data_classes = getattr(self.trainer.datamodule, "num_classes", None)
        if data_classes is not None and data_classes > self.model.num_classes:
            raise CnnzooError(
                f"the data has {data_classes} classes but the {self.hparams.arch} model has "
                f"{self.model.num_classes} outputs. Build it with num_classes={data_classes} "
                f"(the cnnzoo command links it to the data's), or use data of its classes."
            )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Raising here leaves the previous checkpoint file whole (cnnzoo.checkpoint writes
        # atomically), so a run whose weights blew up never overwrites its last good state.
        names, params = zip(*self.model.named_parameters(), strict=True)
        finite = torch.stack([torch.isfinite(p).all() for p in params]).tolist()  # one sync
        broken = [name for name, ok in zip(names, finite, strict=True) if not ok]
        if broken:
            raise FloatingPointError(
                f"the weights became non-finite by step {self.global_step} (epoch "
                f"{self.current_epoch}; first in {broken[0]}). Not saving them: the last "
                f"checkpoint on disk is the last good one. Lower the learning rate, or add "
                f"gradient clipping (--trainer.gradient_clip_val), and resume from it."
            )
        # The weights are in the checkpoint: loading it must not fetch the published ones
        # again (an offline machine could not), so it rebuilds the model untrained.
        checkpoint["hyper_parameters"]["pretrained"] = False
        checkpoint["cnnzoo"] = {
            "arch": self.hparams.arch,
            "pretrained": self.hparams.pretrained,
            "card": self.card.to_dict(),
            "classes": self.classes,
            "versions": _versions(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("cnnzoo", {})
        hparams = checkpoint.get("hyper_parameters", {})
        arch = saved.get("arch", hparams.get("arch"))
        if arch is not None and arch != self.hparams.arch:
            raise CheckpointError(
                f"the checkpoint holds a {arch!r} model, not {self.hparams.arch!r}. Pass "
                f"--model.arch {arch}, or a checkpoint of {self.hparams.arch!r}."
            )
        self._check_shapes(checkpoint.get("state_dict", {}), hparams)
        chunk = hparams.get("chunk", 1)
        resuming = self._trainer is not None and self.trainer.state.fn == "fit"
        if resuming and chunk != self.chunk:
            raise CheckpointError(
                f"the checkpoint's run trained on chunks of {chunk} batches, this one on "
                f"chunks of {self.chunk}: the position in the epoch is counted in chunks. "
                f"Resume with --data.chunk {chunk}."
            )
        self.classes = saved.get("classes") or self.classes

    def _check_shapes(self, state_dict: dict[str, torch.Tensor], hparams: dict) -> None:
        """Name the mismatch in words: a checkpoint for other classes or channels."""
        own = self.state_dict()
        differ = [
            f"{key} {tuple(value.shape)} in the checkpoint, {tuple(own[key].shape)} here"
            for key, value in state_dict.items()
            if key in own and value.shape != own[key].shape
        ]
        if not differ:
            return
        classes, chans = hparams.get("num_classes"), hparams.get("in_chans")
        raise CheckpointError(
            f"the checkpoint's {self.hparams.arch} was built for num_classes={classes} and "
            f"in_chans={chans} (None: the paper's), this one for num_classes="
            f"{self.model.num_classes} and in_chans={self.model.in_chans}; shapes differ: "
            f"{'; '.join(differ[:3])}. Use data with the checkpoint's classes and channels "
            f"(e.g. --data.in_chans {chans}), or fine-tune with reset_classifier."
        )
