"""Where the trainer's time goes in a LeNet-5 step on MNIST: subclasses of ImageClassifier
that add one piece of the step at a time, timed against the plain loop in one process.

    uv run python benchmarks/trainer_overhead.py --steps 600 --rounds 5

Each run trains LeNet-5 on the same batches from the same seed (`lenet_mnist_epoch.py`'s
set-up); the rounds alternate their order and the medians are reported as milliseconds a
step above the plain loop's. The runs:

    bare                Lightning's loop around the model's loss alone (automatic
                        optimisation, Lightning's Trainer)
    ImageClassifier     + the epoch's loss and top-k errors summed on the device, the loss
                        logged every 50 steps
    cnnzoo fit          the command's defaults: RunTrainer, CSV log, checkpoints, run
                        clock, learning-rate monitor, progress bar (no validation, no W&B)
    cnnzoo fit, chunks  the same in chunks of 10 batches (--data.chunk 10)

With `--fixed-cost` the model is one linear layer on four pixels instead of LeNet-5 (its
card and loss kept), so that a step's time is the trainer's and the loader's alone: the
microseconds each run adds over the plain loop are then steady to about 10 us on a shared
machine, where whole LeNet-5 steps spread by 20%, and cnnzoo / plain at LeNet-5's step time
is 1 + (microseconds added) / (a plain LeNet-5 step).

and, for comparison, the step's pieces as they were before they were made cheaper:

    metrics per step    the epoch's mean loss and top-k errors updated through torchmetrics
                        at every step
    finite, per step    `if not torch.isfinite(loss)` at every step (a device read)
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
from cnnzoo.module import StepSums
from cnnzoo.run_trainer import NoProfiler
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
from lightning.pytorch.profilers import PassThroughProfiler
from torchmetrics.classification import MulticlassAccuracy


class Bare(ImageClassifier):
    def training_step(self, batch, batch_idx):
        images, target = batch
        return self._loss(self(images), target)


class MetricsPerStep(ImageClassifier):
    """The epoch's figures as they were: torchmetrics updates at every step."""

    def _add_step_sums(self, loss, logits, target) -> None:
        self.train_loss.update(loss)
        self.errors["train_errors"].update(logits, target)


class FinitePerStep(ImageClassifier):
    """The finite-loss check as it was: a device read at every step."""

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        if not torch.isfinite(loss):
            raise FloatingPointError("non-finite loss")
        return loss


MODULES = {
    "bare": Bare,
    "ImageClassifier": ImageClassifier,
    "metrics per step (before)": MetricsPerStep,
    "finite, per step (before)": FinitePerStep,
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
    sums = StepSums(loss, ours.found(logits, target))
    labels = MNISTDataModule(root="unused")  # its label check, without loading anything
    profilers = PassThroughProfiler(), NoProfiler()

    def finite_check() -> None:
        if not torch.isfinite(loss):
            raise FloatingPointError

    def profiled(profiler) -> None:
        with profiler.profile("[Callback]ModelCheckpoint.on_train_batch_end"):
            pass

    pieces = {
        "top-1/top-5 errors, two torchmetrics MulticlassAccuracy (first)": lambda: [
            m.update(logits, target) for m in theirs
        ],
        "top-1/top-5 errors, TopKError.update (before)": lambda: ours.update(logits, target),
        "epoch mean loss, MeanMetric with its NaN check (first)": lambda: mean_theirs.update(loss),
        "epoch mean loss, MeanMetric(nan_strategy='disable').update (before)": lambda: (
            mean_ours.update(loss)
        ),
        "loss and top-k counts summed on the device, StepSums (now)": lambda: sums.add(
            loss, ours.found(logits, target), batch
        ),
        "finite-loss check, every step (first; now at the loss logs)": finite_check,
        "labels checked, every batch (first; now once at setup)": lambda: labels._check_labels(
            target
        ),
        "a hook's profiler context, PassThroughProfiler (before)": lambda: profiled(profilers[0]),
        "a hook's profiler context, NoProfiler (now)": lambda: profiled(profilers[1]),
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


class FixedCost(torch.nn.Module):
    """A model whose step costs next to nothing, in place of LeNet-5: one linear layer on
    four pixels of the first row, with LeNet-5's card, loss and classes."""

    def __init__(self, lenet: torch.nn.Module) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, lenet.num_classes)
        self.criterion, self.card = lenet.criterion, lenet.card
        self.num_classes, self.in_chans, self.classes = lenet.num_classes, lenet.in_chans, None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x[:, 0, 0, :4])


def fixed_cost_models() -> None:
    """Build FixedCost wherever the runs build LeNet-5 (the plain loop's `create_model` and
    ImageClassifier's), for this process only."""
    import cnnzoo.module
    import lenet_mnist_epoch

    def create(*args, **kwargs):
        return FixedCost(lenet(*args, **kwargs))

    lenet = cnnzoo.module.create_model
    cnnzoo.module.create_model = lenet_mnist_epoch.create_model = create


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
    parser.add_argument(
        "--fixed-cost", action="store_true", help="a near-free model: the trainer's cost alone"
    )
    args = parser.parse_args()
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*was called before the ``update`` method.*")  # bare
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)
    if args.fixed_cost:
        fixed_cost_models()

    dm = data_module(args.data_root, settings)
    plain_dm = data_module(args.data_root, settings)
    folder = Path(tempfile.mkdtemp(prefix="cnnzoo-overhead-"))
    runs: dict[str, Callable[[int], float]] = {
        "plain": lambda n: run_plain(plain_dm, n)[0],
        **{name: (lambda n, c=cls: run_module(c, dm, n)) for name, cls in MODULES.items()},
        "cnnzoo fit": lambda n: run_cnnzoo_fit(args.data_root, settings, n, folder)[0],
        "cnnzoo fit, chunks of 10": lambda n: run_cnnzoo_fit(
            args.data_root, settings, n, folder, "--data.chunk=10"
        )[0],
    }
    for run in runs.values():
        run(50)
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for index in range(args.rounds):
        for name in list(runs) if index % 2 == 0 else reversed(list(runs)):
            seconds[name].append(runs[name](args.steps))
    us = {name: 1e6 * statistics.median(times) / args.steps for name, times in seconds.items()}
    model = "a near-free model (--fixed-cost)" if args.fixed_cost else "LeNet-5"
    print(f"\n{model}, MNIST batches of {settings.get('batch_size')}, {args.threads} threads, ")
    print(f"medians of {args.rounds} rounds of {args.steps} steps\n")
    print("| piece of the step | µs a call |")
    print("|---|---:|")
    for name, cost in piece_costs().items():
        print(f"| {name} | {cost:.1f} |")
    print()
    print("| run | µs/step | above plain, µs | / plain |")
    print("|---|---:|---:|---:|")
    for name, value in us.items():
        print(f"| {name} | {value:.0f} | {value - us['plain']:+.0f} | {value / us['plain']:.3f} |")


if __name__ == "__main__":
    main()
