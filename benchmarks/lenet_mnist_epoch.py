"""One MNIST training epoch of LeNet-5: cnnzoo's Trainer against a plain PyTorch loop.

Three runs do the same training work, one after the other in one process:

    cnnzoo        lightning Trainer + ImageClassifier("lenet5") + MNISTDataModule
    plain         a hand-written loop over the same data module's own loader, normalised
                  by its own `on_after_batch_transfer`: the ratio cnnzoo / plain is the
                  trainer's overhead
    plain-tensors the same batches, normalised once and held in memory: the fastest
                  plain loop there is, with no data pipeline at all

Each builds LeNet-5 from the same seed with `cnnzoo.create_model`, SGD with the learning
rate and momentum of ImageClassifier's default `OptimizerSpec` (through
`cnnzoo.optim.build_optimizer`), and runs the same number of forward, cross-entropy,
backward and step passes on the same batches in the same order; none validates (the
cnnzoo run has `limit_val_batches=0`). After a short warm-up of each, the rounds alternate
their order, and the medians are reported.

    uv run python benchmarks/lenet_mnist_epoch.py                  # full epochs, 3 rounds
    uv run python benchmarks/lenet_mnist_epoch.py --max-steps 100  # a quick look
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import logging
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from cnnzoo import ImageClassifier, create_model
from cnnzoo.optim import OptimizerSpec, build_optimizer
from cnnzoo_data import MNISTDataModule

REPO_ROOT = Path(__file__).resolve().parents[1]
ARCH = "lenet5"
RECIPE = "lenet5_mnist"
SEED = 0

# What the cnnzoo run leaves out because the plain loop does not do it.
TRAINER_SETTINGS = {
    "logger": False,
    "enable_checkpointing": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
    "num_sanity_val_steps": 0,
    "limit_val_batches": 0,
}
DISABLED = (
    "loggers (CSV, W&B), checkpointing, progress bar, model summary, sanity validation "
    "and the per-epoch validation pass: "
    + ", ".join(f"{key}={value}" for key, value in TRAINER_SETTINGS.items())
)

RUNS = {
    "cnnzoo": "cnnzoo: Trainer + ImageClassifier + MNISTDataModule",
    "plain": "plain loop, the data module's loader",
    "plain-tensors": "plain loop, pre-normalised tensors in memory",
}


def recipe_batch_size() -> tuple[int, str]:
    """The MNIST recipe's batch size when the recipe is installed, else the data module's."""
    try:
        import yaml
        from cnnzoo.recipes import find_recipe

        path = find_recipe(RECIPE)
        batch_size = yaml.safe_load(path.read_text())["data"]["init_args"]["batch_size"]
        return int(batch_size), f"recipe {RECIPE}"
    except Exception:
        return 64, "the data module's default; no lenet5_mnist recipe with a batch size found"


@dataclasses.dataclass
class Setup:
    data_root: str
    batch_size: int
    threads: int
    max_steps: int | None

    def data_module(self) -> MNISTDataModule:
        # num_workers left to the data module (its default_num_workers), on both sides.
        dm = MNISTDataModule(root=self.data_root, batch_size=self.batch_size, seed=SEED)
        dm.setup("fit")
        return dm

    def steps(self, dm: MNISTDataModule) -> int:
        per_epoch = len(dm.train_dataloader())
        return per_epoch if self.max_steps is None else min(per_epoch, self.max_steps)


def fresh_model() -> torch.nn.Module:
    torch.manual_seed(SEED)
    return create_model(ARCH)


def run_cnnzoo(setup: Setup, dm: MNISTDataModule, steps: int) -> tuple[float, torch.nn.Module]:
    torch.manual_seed(SEED)
    module = ImageClassifier(ARCH)  # the default OptimizerSpec and a constant schedule
    start = time.perf_counter()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        max_steps=steps,
        **TRAINER_SETTINGS,
    )
    trainer.fit(module, datamodule=dm)
    seconds = time.perf_counter() - start
    if trainer.global_step != steps:
        raise RuntimeError(f"cnnzoo ran {trainer.global_step} steps, not {steps}.")
    return seconds, module.model


def _train(model, optimizer, batches, steps: int, prepare: Callable) -> int:
    done = 0
    for batch in batches:
        if done == steps:
            break
        images, target = prepare(batch)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(images), target)
        loss.backward()
        optimizer.step()
        done += 1
    return done


def run_plain(setup: Setup, dm: MNISTDataModule, steps: int) -> tuple[float, torch.nn.Module]:
    model = fresh_model()
    start = time.perf_counter()
    optimizer = build_optimizer(model, OptimizerSpec())
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(0)  # as Lightning does before each epoch
    model.train()
    done = _train(
        model, optimizer, loader, steps, lambda batch: dm.on_after_batch_transfer(batch, 0)
    )
    seconds = time.perf_counter() - start
    if done != steps:
        raise RuntimeError(f"the plain loop ran {done} steps, not {steps}.")
    return seconds, model


def run_plain_tensors(
    setup: Setup, batches: list[tuple[torch.Tensor, torch.Tensor]], steps: int
) -> tuple[float, torch.nn.Module]:
    model = fresh_model()
    start = time.perf_counter()
    optimizer = build_optimizer(model, OptimizerSpec())
    model.train()
    done = _train(model, optimizer, batches, steps, lambda batch: batch)
    seconds = time.perf_counter() - start
    if done != steps:
        raise RuntimeError(f"the plain-tensors loop ran {done} steps, not {steps}.")
    return seconds, model


def max_difference(a: torch.nn.Module, b: torch.nn.Module) -> float:
    return max(
        (x - y).abs().max().item()
        for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


def machine() -> dict[str, object]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "lightning": L.__version__,
        "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
    }


def parse_args() -> argparse.Namespace:
    batch_size, batch_source = recipe_batch_size()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data-root",
        default=str(REPO_ROOT / ".." / "shared" / "data" / "mnist"),
        help="folder holding MNIST/raw/ (default: ../shared/data/mnist from the repo root)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=batch_size, help=f"default {batch_size}: {batch_source}"
    )
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds of each run")
    parser.add_argument(
        "--max-steps", type=int, default=None, help="stop each run after this many steps"
    )
    parser.add_argument(
        "--warmup-steps", type=int, default=50, help="steps of each run before timing"
    )
    parser.add_argument(
        "--threads", type=int, default=torch.get_num_threads(), help="torch threads (all runs)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    args.batch_source = batch_source if args.batch_size == batch_size else "--batch-size"
    return args


def main() -> None:
    args = parse_args()
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)
    setup = Setup(args.data_root, args.batch_size, args.threads, args.max_steps)

    # Each side has its own, identical data module: the plain one never meets a Trainer.
    cnnzoo_dm, plain_dm = setup.data_module(), setup.data_module()
    steps = setup.steps(plain_dm)
    batches = [
        plain_dm.on_after_batch_transfer(batch, 0)
        for batch, _ in zip(plain_dm.train_dataloader(), range(steps), strict=False)
    ]
    runs: dict[str, Callable[[int], tuple[float, torch.nn.Module]]] = {
        "cnnzoo": lambda n: run_cnnzoo(setup, cnnzoo_dm, n),
        "plain": lambda n: run_plain(setup, plain_dm, n),
        "plain-tensors": lambda n: run_plain_tensors(setup, batches, n),
    }
    print(
        f"LeNet-5, MNIST, {steps} steps of batch {setup.batch_size} ({args.batch_source}), "
        f"{plain_dm.num_workers} loader worker(s), {args.threads} torch threads"
    )
    for run in runs.values():
        run(min(args.warmup_steps, steps))
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    models: dict[str, torch.nn.Module] = {}
    for round_index in range(args.rounds):
        order = list(runs) if round_index % 2 == 0 else list(reversed(runs))
        for name in order:
            elapsed, models[name] = runs[name](steps)
            if torch.get_num_threads() != args.threads:
                raise RuntimeError(f"{name} changed the torch thread count.")
            seconds[name].append(elapsed)
            print(f"  round {round_index + 1}: {name:14s} {elapsed:8.3f} s")

    median = {name: statistics.median(times) for name, times in seconds.items()}
    ratio = {
        "cnnzoo/plain": median["cnnzoo"] / median["plain"],
        "cnnzoo/plain-tensors": median["cnnzoo"] / median["plain-tensors"],
    }
    # The same work: the three runs end on the same weights (up to float reordering).
    difference = {
        "cnnzoo vs plain": max_difference(models["cnnzoo"], models["plain"]),
        "plain vs plain-tensors": max_difference(models["plain"], models["plain-tensors"]),
    }
    info = machine()
    lines = [
        "",
        "| run | median s/epoch | ms/step | min s | max s | cnnzoo / run |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, times in seconds.items():
        lines.append(
            f"| {RUNS[name]} | {median[name]:.3f} | {1000 * median[name] / steps:.2f} "
            f"| {min(times):.3f} | {max(times):.3f} | {median['cnnzoo'] / median[name]:.3f} |"
        )
    verdict = "met" if ratio["cnnzoo/plain"] < 1.15 else "NOT met"
    lines += [
        "",
        f"cnnzoo / plain = {ratio['cnnzoo/plain']:.3f} (target < 1.15: {verdict}); "
        f"cnnzoo / plain-tensors = {ratio['cnnzoo/plain-tensors']:.3f}",
        f"{steps} steps of batch {setup.batch_size}, median of {args.rounds} rounds "
        f"(alternating order, after {min(args.warmup_steps, steps)} warm-up steps of each)",
        "max |weight difference| at the end: "
        + ", ".join(f"{key} {value:.2e}" for key, value in difference.items()),
        f"disabled in the cnnzoo run: {DISABLED}",
        f"machine: {info['cpu']}, {info['cpu_count']} CPUs, torch {info['torch']}, "
        f"lightning {info['lightning']}, Python {info['python']}, "
        f"{args.threads} torch threads, {plain_dm.num_workers} loader worker(s)",
    ]
    print("\n".join(lines))
    if args.json is not None:
        results = {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "arch": ARCH,
            "batch_size": setup.batch_size,
            "batch_size_source": args.batch_source,
            "steps": steps,
            "rounds": args.rounds,
            "warmup_steps": min(args.warmup_steps, steps),
            "num_workers": plain_dm.num_workers,
            "seconds": seconds,
            "median_seconds": median,
            "ratios": ratio,
            "max_weight_difference": difference,
            "cnnzoo_trainer_settings": TRAINER_SETTINGS,
            "machine": info,
        }
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"results written to {args.json}")


if __name__ == "__main__":
    main()
