"""What a run shows of its predictions: a picture of sample predictions (PNG, and W&B when
it is a logger), and the predictions of `cnnzoo predict` as a CSV file."""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter, RichProgressBar, TQDMProgressBar
from lightning.pytorch.callbacks import ProgressBar as LightningProgressBar
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_info

from cnnzoo.chunks import training_steps
from cnnzoo.lightning_internals import RICH_AVAILABLE


def prediction_figure(images: torch.Tensor, target: torch.Tensor, predicted: torch.Tensor, classes):
    """A grid of images titled "predicted (true)", wrong ones in red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = len(images)
    cols = min(8, count)
    rows = (count + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.8 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, true, pred in zip(
        axes.flat, images, target.tolist(), predicted.tolist(), strict=False
    ):
        low, high = image.amin(), image.amax()
        shown = ((image - low) / (high - low + 1e-8)).permute(1, 2, 0).cpu().float().numpy()
        ax.imshow(shown.squeeze(-1) if shown.shape[-1] == 1 else shown, cmap="gray")
        name = classes[pred] if classes else str(pred)
        truth = classes[true] if classes else str(true)
        ax.set_title(f"{name} ({truth})", fontsize=8, color="black" if pred == true else "red")
    fig.tight_layout()
    return fig


class PredictionGallery(L.Callback):
    """Draw the first `num_images` validation and test images with their predictions.

    Saved as `predictions-<stage>.png` in the run's log folder and logged to W&B, for
    validation every `every_n_epochs` epochs and after the last.
    """

    def __init__(self, num_images: int = 16, every_n_epochs: int = 5) -> None:
        self.num_images = num_images
        self.every_n_epochs = every_n_epochs

    def _draw(self, trainer: L.Trainer, module: L.LightningModule, batch, stage: str) -> None:
        if trainer.sanity_checking:
            return
        # Every process asks: under DDP `log_dir` is a broadcast, which rank 0 alone would wait
        # on forever.
        folder = Path(trainer.log_dir or trainer.default_root_dir)
        if not trainer.is_global_zero:
            return
        images, target = batch[0][: self.num_images], batch[1][: self.num_images]
        with torch.no_grad():
            predicted = module.predict_log_probs(images).argmax(dim=-1)
        if isinstance(images, list):  # dense evaluation: each image whole, its first scale
            images = [scales[0][0] for scales in images]
        elif images.ndim == 5:  # multi-crop batches: show the first crop
            images = images[:, 0]
        classes = _class_names(trainer, module)
        fig = prediction_figure(images, target, predicted, classes)
        folder.mkdir(parents=True, exist_ok=True)
        fig.savefig(folder / f"predictions-{stage}.png", dpi=100)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key=f"{stage}/predictions", images=[fig], step=trainer.global_step)
        import matplotlib.pyplot as plt

        plt.close(fig)

    def on_validation_batch_end(self, trainer, module, outputs, batch, batch_idx, dataloader_idx=0):
        epoch = trainer.current_epoch + 1
        if batch_idx == 0 and (epoch % self.every_n_epochs == 0 or epoch == trainer.max_epochs):
            self._draw(trainer, module, batch, "val")

    def on_test_batch_end(self, trainer, module, outputs, batch, batch_idx, dataloader_idx=0):
        if batch_idx == 0:
            self._draw(trainer, module, batch, "test")


class ProgressBar(RichProgressBar if RICH_AVAILABLE else TQDMProgressBar):
    """Lightning's progress bar (Rich's where it is installed), showing the training loss as
    the loggers last wrote it, and redrawn at most `per_second` times a second.

    A metric logged with `prog_bar=True` is read back from the device at every step to be
    shown, which on a GPU stalls the next step's launches; `ImageClassifier` logs its step
    loss for the loggers alone, and this bar shows the value they were given. Redrawing it
    at every step cost about 0.15 ms of a 6 ms LeNet-5 step on a CPU
    (benchmarks/trainer_overhead.py), more than an eye can follow at hundreds of steps a
    second; the epoch's last step is always drawn.
    """

    def __init__(self, per_second: float = 10.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.per_second = per_second
        self._drawn_at = -math.inf

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        now = time.monotonic()
        last = batch_idx + 1 >= trainer.num_training_batches
        if now - self._drawn_at < 1 / self.per_second and not last:
            return
        self._drawn_at = now
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict:
        metrics = super().get_metrics(trainer, pl_module)
        loss = trainer.logged_metrics.get("train/loss_step")
        if loss is not None:
            metrics["train/loss_step"] = loss
        return metrics


class ProgressLines(LightningProgressBar):
    """The progress of a run whose output goes to a file (nohup, a batch queue's log), where
    a live bar shows nothing until the epoch ends: one plain line every `every_s` seconds and
    at each epoch's end, with the epoch, the step, images a second, the loss as the loggers
    last wrote it, the validation error, and the time gone and left. `cnnzoo fit` uses it
    when its standard output is not a terminal."""

    def __init__(self, every_s: float = 30.0) -> None:
        super().__init__()
        self.every_s = every_s
        self._enabled = True
        self._start = self._last = 0.0
        self._first_step = 0
        self._images = 0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = self._last = time.monotonic()
        self._first_step = trainer.global_step
        self._images = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if getattr(pl_module, "chunk", 1) > 1:  # a chunk of (images, labels) batches
            self._images += sum(len(images) for images, _ in batch)
        else:
            self._images += len(batch[0] if isinstance(batch, list | tuple) else batch)
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            self._print(trainer, now)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last = now = time.monotonic()
        self._print(trainer, now, epoch_end=True)

    def _print(self, trainer: L.Trainer, now: float, epoch_end: bool = False) -> None:
        if not self._enabled or not trainer.is_global_zero:
            return
        epochs = trainer.max_epochs if trainer.max_epochs not in (None, -1) else None
        total = training_steps(trainer)[0]  # in optimiser steps, as global_step
        step = trainer.global_step
        gone = now - self._start
        parts = [
            f"epoch {trainer.current_epoch + 1}" + (f"/{epochs}" if epochs else ""),
            f"step {step:,}" + (f"/{total:,}" if math.isfinite(total) else ""),
            f"{self._images / gone:,.0f} img/s" if gone > 0 else "",
        ]
        metrics = trainer.logged_metrics
        if "train/loss_step" in metrics:
            parts.append(f"loss {float(metrics['train/loss_step']):.4g}")
        if epoch_end and "val/top1_error" in trainer.callback_metrics:
            parts.append(
                f"val top-1 error {100 * float(trainer.callback_metrics['val/top1_error']):.2f}%"
            )
        done = step - self._first_step
        left = ""
        if done > 0 and math.isfinite(total) and total > step:
            left = f", about {_clock((total - step) * gone / done)} left"
        parts.append(f"{_clock(gone)} gone{left}")
        print(" | ".join(part for part in parts if part), flush=True)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _class_names(trainer: L.Trainer, module: L.LightningModule) -> list[str] | None:
    """The data's class names, or, for data that names none (a folder of unlabelled images
    to predict), those of the data the model learned, from its checkpoint."""
    return getattr(trainer.datamodule, "classes", None) or getattr(module, "classes", None)


def _image_name(dataset, index: int) -> str:
    """The file an item came from, when the dataset knows it (ImageFolder), else its index."""
    while hasattr(dataset, "base") or hasattr(dataset, "indices"):
        if hasattr(dataset, "indices"):  # a Subset
            index = int(dataset.indices[index])
            dataset = dataset.dataset
        else:  # a TransformedDataset
            dataset = dataset.base
    samples = getattr(dataset, "samples", None)
    return str(samples[index][0]) if samples is not None else str(index)


class PredictionWriter(BasePredictionWriter):
    """`cnnzoo predict` writes `predictions.csv` in the run's log folder: for each image,
    its file (or index), its label where the data has one, and the top-5 classes with
    their probabilities. Under DDP each process writes `predictions-rank<r>.csv`."""

    def __init__(self, output_dir: str | None = None, top_k: int = 5) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = output_dir
        self.top_k = top_k
        self._file = None
        self._writer = None
        self.path: Path | None = None

    def on_predict_start(self, trainer, pl_module) -> None:
        folder = Path(self.output_dir or trainer.log_dir or trainer.default_root_dir)
        folder.mkdir(parents=True, exist_ok=True)
        name = (
            "predictions.csv"
            if trainer.world_size == 1
            else f"predictions-rank{trainer.global_rank}.csv"
        )
        self.path = folder / name
        self._file = open(self.path, "w", newline="")  # noqa: SIM115 (closed at predict end)
        self._writer = csv.writer(self._file)
        header = ["image", "label"]
        for k in range(1, self.top_k + 1):
            header += [f"top{k}_class", f"top{k}_prob"]
        self._writer.writerow(header)

    def write_on_batch_end(
        self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx
    ) -> None:
        classes = _class_names(trainer, pl_module)
        dataset = trainer.predict_dataloaders.dataset
        labels = batch[1].tolist() if isinstance(batch, list | tuple) and len(batch) > 1 else None
        probs = prediction["probs"].float().cpu()
        top = probs.topk(min(self.top_k, probs.shape[-1]), dim=-1)
        for row, index in enumerate(batch_indices or range(len(probs))):
            label = labels[row] if labels is not None else ""
            cells = [
                _image_name(dataset, index),
                classes[label] if classes and label != "" else label,
            ]
            for cls, prob in zip(top.indices[row].tolist(), top.values[row].tolist(), strict=True):
                cells += [classes[cls] if classes else cls, f"{prob:.6f}"]
            self._writer.writerow(cells)

    def on_predict_end(self, trainer, pl_module) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            rank_zero_info(f"predictions written to {self.path}")
