"""Where the trainer's time goes in a LeNet-5 step on MNIST: subclasses of ImageClassifier
that add one piece of the step at a time, timed against the plain loop in one process.

    uv run python benchmarks/trainer_overhead.py --steps 600 --rounds 5

Each run trains LeNet-5 on the same batches from the same seed (`lenet_mnist_epoch.py`'s
set-up); the rounds alternate their order and the medians are reported as milliseconds a
step above the plain loop's. The pieces, in the order they are added:

    bare          Lightning's loop around the model's loss alone (automatic optimisation)
    + loss mean   the epoch's mean loss (MeanMetric) and the loss logged every 50 steps
    + errors      top-1/top-5 training error (cnnzoo.metrics.TopKError): ImageClassifier
    cnnzoo fit    the command's defaults: CSV log, checkpoints, run clock, learning-rate
                  monitor, progress bar (no validation, no W&B)

and, for comparison, the pieces as they were before they were made cheaper:

    errors, torchmetrics   one MulticlassAccuracy per k (checks, formats, one-hot encodes)
    finite, per step       `if not torch.isfinite(loss)` at every step (a device read)
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch
from cnnzoo import ImageClassifier
from cnnzoo_data import MNISTDataModule
from lenet_mnist_epoch import (
    ARCH,
    REPO_ROOT,
    SEED,
    TRAINER_SETTINGS,
    data_module,
    recipe_data_settings,
    run_cnnzoo_fit,
    run_plain,
)
from torchmetrics.classification import MulticlassAccuracy


class Bare(ImageClassifier):
    def training_step(self, batch, batch_idx):
        images, target = batch
        return self._loss(self(images), target)


class LossMean(ImageClassifier):
    def _update_metrics(self, stage, logits, target) -> None:
        pass


class TorchmetricsErrors(ImageClassifier):
    """The errors as they were: torchmetrics' MulticlassAccuracy, one metric per k."""

    def __init__(self, arch: str) -> None:
        super().__init__(arch)
        self.accuracy = torch.nn.ModuleList(
            MulticlassAccuracy(self.model.num_classes, top_k=k, average="micro") for k in (1, 5)
        )

    def _update_metrics(self, stage, logits, target) -> None:
        for metric in self.accuracy:
            metric.update(logits, target)


class FinitePerStep(ImageClassifier):
    """The finite-loss check as it was: a device read at every step."""

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        if not torch.isfinite(loss):
            raise FloatingPointError("non-finite loss")
        return loss


MODULES = {
    "bare": Bare,
    "+ loss mean": LossMean,
    "+ errors (ImageClassifier)": ImageClassifier,
    "errors, torchmetrics": TorchmetricsErrors,
    "finite, per step": FinitePerStep,
}


def piece_costs(batch: int = 32, classes: int = 10, repeats: int = 5000) -> dict[str, float]:
    """Microseconds a call of each piece of the step costs alone, before and after it was
    made cheaper (the median of 5 timings of `repeats` calls): steadier than whole fits on a
    shared machine, where the rounds spread by more than these differences."""
    from cnnzoo.metrics import TopKError
    from torchmetrics import MeanMetric

    logits, target = torch.randn(batch, classes), torch.randint(0, classes, (batch,))
    loss = torch.tensor(2.3)
    ours, mean_ours = TopKError((1, 5)), MeanMetric(nan_strategy="disable")
    theirs = [MulticlassAccuracy(classes, top_k=k, average="micro") for k in (1, 5)]
    mean_theirs = MeanMetric()

    labels = MNISTDataModule(root="unused")  # its label check, without loading anything

    def finite_check() -> None:
        if not torch.isfinite(loss):
            raise FloatingPointError

    pieces = {
        "top-1/top-5 errors, torchmetrics (before)": lambda: [
            m.update(logits, target) for m in theirs
        ],
        "top-1/top-5 errors, TopKError (now)": lambda: ours.update(logits, target),
        "epoch mean loss, MeanMetric with its NaN check (before)": lambda: mean_theirs.update(loss),
        "epoch mean loss, MeanMetric(nan_strategy='disable') (now)": lambda: mean_ours.update(loss),
        "finite-loss check, every step (before; now at the loss logs)": finite_check,
        "labels checked, every batch (before; now once at setup)": lambda: labels._check_labels(
            target
        ),
    }
    costs = {}
    for name, piece in pieces.items():
        timings = []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(repeats):
                piece()
            timings.append((time.perf_counter() - start) / repeats * 1e6)
        costs[name] = statistics.median(timings)
    return costs


def run_module(cls: type[ImageClassifier], dm, steps: int) -> float:
    torch.manual_seed(SEED)
    module = cls(ARCH)
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_epochs=1, max_steps=steps, **TRAINER_SETTINGS
    )
    start = time.perf_counter()
    trainer.fit(module, datamodule=dm)
    return time.perf_counter() - start


def main() -> None:
    settings, _ = recipe_data_settings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", default=str(REPO_ROOT.parent / "shared" / "data" / "mnist"))
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)

    dm = data_module(args.data_root, settings)
    plain_dm = data_module(args.data_root, settings)
    folder = Path(tempfile.mkdtemp(prefix="cnnzoo-overhead-"))
    runs: dict[str, Callable[[int], float]] = {
        "plain": lambda n: run_plain(plain_dm, n)[0],
        **{name: (lambda n, c=cls: run_module(c, dm, n)) for name, cls in MODULES.items()},
        "cnnzoo fit": lambda n: run_cnnzoo_fit(args.data_root, settings, n, folder)[0],
    }
    for run in runs.values():
        run(50)
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for index in range(args.rounds):
        for name in list(runs) if index % 2 == 0 else reversed(list(runs)):
            seconds[name].append(runs[name](args.steps))
    ms = {name: 1e3 * statistics.median(times) / args.steps for name, times in seconds.items()}
    print(f"\nLeNet-5, MNIST batches of {settings.get('batch_size')}, {args.threads} threads, ")
    print(f"medians of {args.rounds} rounds of {args.steps} steps\n")
    print("| piece of the step | µs a call |")
    print("|---|---:|")
    for name, cost in piece_costs().items():
        print(f"| {name} | {cost:.1f} |")
    print()
    print("| run | ms/step | above plain, ms | / plain |")
    print("|---|---:|---:|---:|")
    for name, value in ms.items():
        print(f"| {name} | {value:.2f} | {value - ms['plain']:+.2f} | {value / ms['plain']:.3f} |")


if __name__ == "__main__":
    main()
