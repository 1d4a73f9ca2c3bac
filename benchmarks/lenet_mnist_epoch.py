"""One MNIST training epoch of LeNet-5: cnnzoo's Trainer against a plain PyTorch loop.

Five runs do the same training work, one after the other in one process:

    cnnzoo-fit-chunked  `cnnzoo fit` with its defaults and chunks of K batches (--chunk,
                        10 by default): one Lightning training step takes K optimiser steps
    cnnzoo-fit          `cnnzoo fit` with its defaults (CSV log, checkpoints, run clock,
                        learning-rate monitor, progress bar; validation and W&B off)
    cnnzoo              lightning Trainer + ImageClassifier("lenet5") + MNISTDataModule
    plain               a hand-written loop over the same data module's own loader,
                        normalised by its own `on_after_batch_transfer`: cnnzoo / plain is
                        the trainer's overhead
    plain-tensors       the same batches, normalised once beforehand and held in memory: the
                        fastest plain loop there is, with no data pipeline at all

Each builds LeNet-5 from the same seed with `cnnzoo.create_model`, SGD with the learning
rate and momentum of ImageClassifier's default `OptimizerSpec` (through
`cnnzoo.optim.build_optimizer`), and runs the same number of forward, loss (the model's
own criterion, eq. 9 for LeNet-5), backward and step passes on the same batches in the same
order; none validates (the cnnzoo run has `limit_val_batches=0`). After a short warm-up of
each, the rounds alternate their order, and the medians are reported.

    uv run python benchmarks/lenet_mnist_epoch.py                  # full epochs, 3 rounds
    uv run python benchmarks/lenet_mnist_epoch.py --max-steps 100  # a quick look
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable
from itertools import islice
from pathlib import Path
from typing import Any

import lightning as L
import torch
from cnnzoo import ImageClassifier, create_model
from cnnzoo.optim import OptimizerSpec, build_optimizer
from cnnzoo_data import MNISTDataModule

REPO_ROOT = Path(__file__).resolve().parents[1]
TARGET = 1.05  # cnnzoo's time over the plain loop's
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
    "loggers (CSV, W&B), checkpointing, progress bar, model summary, sanity validation and "
    "the per-epoch validation pass (Trainer("
    + ", ".join(f"{key}={value}" for key, value in TRAINER_SETTINGS.items())
    + ")); the training step itself is untouched: the loss logged every 50 steps and "
    "averaged over the epoch, train top-1/top-5 error metrics updated every step, the "
    "finite-loss check"
)

RUNS = {
    "cnnzoo-fit-chunked": "cnnzoo fit, chunks of {chunk} batches (--data.chunk {chunk})",
    "cnnzoo-fit": "cnnzoo fit: the command's defaults, W&B off",
    "cnnzoo": "cnnzoo: Trainer + ImageClassifier + MNISTDataModule",
    "plain": "plain loop, the data module's loader",
    "plain-tensors": "plain loop, pre-normalised tensors in memory",
}

OURS = ("cnnzoo-fit-chunked", "cnnzoo-fit", "cnnzoo")

Batch = tuple[torch.Tensor, torch.Tensor]
Result = tuple[float, float, torch.nn.Module]  # wall seconds, CPU seconds, trained model


def recipe_data_settings() -> tuple[dict[str, Any], str]:
    """The MNIST recipe's batch size and validation share when the recipe is installed."""
    try:
        import yaml
        from cnnzoo.recipes import find_recipe

        data = yaml.safe_load(find_recipe(RECIPE).read_text())["data"]["init_args"]
        settings = {key: data[key] for key in ("batch_size", "val_fraction") if key in data}
        return settings, f"recipe {RECIPE}"
    except Exception:
        return {}, f"the data module's defaults (no {RECIPE} recipe found)"


def data_module(root: str, settings: dict[str, Any]) -> MNISTDataModule:
    # num_workers is left to the data module, as a `cnnzoo fit` user gets it.
    dm = MNISTDataModule(root=root, seed=SEED, **settings)
    dm.setup("fit")
    return dm


def fresh_model() -> torch.nn.Module:
    torch.manual_seed(SEED)
    return create_model(ARCH)


def clocks() -> tuple[float, float]:
    # CPU time of this process (all its threads, not loader workers): less disturbed than
    # wall time by other processes on a shared machine.
    return time.perf_counter(), time.process_time()


def elapsed(start: tuple[float, float]) -> tuple[float, float]:
    wall, cpu = clocks()
    return wall - start[0], cpu - start[1]


def run_cnnzoo(dm: MNISTDataModule, steps: int) -> Result:
    torch.manual_seed(SEED)
    module = ImageClassifier(ARCH)  # the default OptimizerSpec and a constant schedule
    start = clocks()
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_epochs=1, max_steps=steps, **TRAINER_SETTINGS
    )
    trainer.fit(module, datamodule=dm)
    wall, cpu = elapsed(start)
    if trainer.global_step != steps:
        raise RuntimeError(f"cnnzoo ran {trainer.global_step} steps, not {steps}.")
    return wall, cpu, module.model


def run_cnnzoo_fit(
    root: str, settings: dict[str, Any], steps: int, folder: Path, *options: str
) -> Result:
    """`cnnzoo fit` as a user runs it, with everything its defaults keep on during training:
    the CSV log, last.ckpt every 1,000 steps and at each epoch end, the run clock, the
    learning-rate monitor and the progress bar (W&B off: it would start a service process).
    Only the validation pass is left out, as the plain loop has none. The model and
    optimiser are ImageClassifier's defaults, as in the other runs."""
    from cnnzoo_classify.trainer import make_cli

    cli = make_cli(
        [
            f"--model.arch={ARCH}",
            "--data=cnnzoo_data.MNISTDataModule",
            f"--data.root={root}",
            f"--data.seed={SEED}",
            *(f"--data.{key}={value}" for key, value in settings.items()),
            f"--trainer.default_root_dir={folder}",
            f"--trainer.max_steps={steps}",
            "--trainer.max_epochs=1",
            "--trainer.limit_val_batches=0",
            "--trainer.num_sanity_val_steps=0",
            "--trainer.enable_model_summary=false",
            "--wandb.enabled=false",
            "--seed_everything=0",
            *options,
        ],
        run=False,
    )
    cli.datamodule.setup("fit")  # read before the clock starts, as the other runs' data are
    torch.manual_seed(SEED)
    # Built from the same seed as the other runs' models; the chunk the data was given.
    cli.model = ImageClassifier(ARCH, chunk=cli.datamodule.chunk)
    start = clocks()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    wall, cpu = elapsed(start)
    if cli.trainer.global_step != steps:
        raise RuntimeError(f"cnnzoo fit ran {cli.trainer.global_step} steps, not {steps}.")
    return wall, cpu, cli.model.model


def _train(
    model: torch.nn.Module,
    batches: Callable[[], Iterable],
    steps: int,
    prepare: Callable[[Any], Batch],
) -> tuple[float, float]:
    start = clocks()
    optimizer = build_optimizer(model, OptimizerSpec())
    model.train()
    done = 0
    for batch in batches():
        if done == steps:
            break
        images, target = prepare(batch)
        optimizer.zero_grad()
        loss = model.criterion(model(images), target)  # the trainer's loss: eq. 9 for LeNet-5
        loss.backward()
        optimizer.step()
        done += 1
    if done != steps:
        raise RuntimeError(f"the plain loop ran {done} steps, not {steps}.")
    return elapsed(start)


def run_plain(dm: MNISTDataModule, steps: int) -> Result:
    def loader() -> Iterable:
        # Made inside the timed part, as Lightning makes it inside the timed fit.
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(0)  # as Lightning does before each epoch
        return loader

    model = fresh_model()
    wall, cpu = _train(model, loader, steps, lambda batch: dm.on_after_batch_transfer(batch, 0))
    return wall, cpu, model


def run_plain_tensors(batches: list[Batch], steps: int) -> Result:
    model = fresh_model()
    wall, cpu = _train(model, lambda: batches, steps, lambda batch: batch)
    return wall, cpu, model


def max_difference(a: torch.nn.Module, b: torch.nn.Module) -> float:
    return max(
        (x - y).abs().max().item()
        for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


def machine(threads: int, num_workers: int) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
        cpu = names[0].split(":", 1)[1].strip() if names else cpu
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "lightning": L.__version__,
        "python": platform.python_version(),
        "torch_threads": threads,
        "loader_workers": num_workers,
    }


def parse_args() -> argparse.Namespace:
    settings, source = recipe_data_settings()
    batch_size = settings.get("batch_size", 64)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data-root",
        default=str(REPO_ROOT.parent / "shared" / "data" / "mnist"),
        help="folder holding MNIST/raw/ (default: ../shared/data/mnist from the repo root)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=batch_size, help=f"default {batch_size}, from {source}"
    )
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds of each run")
    parser.add_argument(
        "--max-steps", type=int, default=None, help="stop each run after this many steps"
    )
    parser.add_argument(
        "--warmup-steps", type=int, default=50, help="untimed steps of each run first"
    )
    parser.add_argument(
        "--threads", type=int, default=torch.get_num_threads(), help="torch threads (all runs)"
    )
    parser.add_argument(
        "--chunk", type=int, default=10, help="batches per training step of the chunked run"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    args.data_settings = {**settings, "batch_size": args.batch_size}
    args.data_source = source if args.batch_size == batch_size else f"{source}; --batch-size"
    return args


def main() -> None:
    args = parse_args()
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()

    # Each side has its own, identical data module: the plain one never meets a Trainer.
    cnnzoo_dm = data_module(args.data_root, args.data_settings)
    plain_dm = data_module(args.data_root, args.data_settings)
    loader = plain_dm.train_dataloader()
    per_epoch = len(loader)
    steps = per_epoch if args.max_steps is None else min(per_epoch, args.max_steps)
    warmup = min(args.warmup_steps, steps)
    images = len(plain_dm.train_set)
    batches = [plain_dm.on_after_batch_transfer(batch, 0) for batch in islice(loader, steps)]
    folder = Path(tempfile.mkdtemp(prefix="cnnzoo-fit-"))
    chunk = f"--data.chunk={args.chunk}"
    runs: dict[str, Callable[[int], Result]] = {
        "cnnzoo-fit-chunked": lambda n: run_cnnzoo_fit(
            args.data_root, args.data_settings, n, folder, chunk
        ),
        "cnnzoo-fit": lambda n: run_cnnzoo_fit(args.data_root, args.data_settings, n, folder),
        "cnnzoo": lambda n: run_cnnzoo(cnnzoo_dm, n),
        "plain": lambda n: run_plain(plain_dm, n),
        "plain-tensors": lambda n: run_plain_tensors(batches, n),
    }
    print(
        f"LeNet-5 on MNIST: {steps} of {per_epoch} steps of {args.batch_size} images "
        f"({images} training images; {args.data_source}), {loader.num_workers} loader "
        f"workers, {args.threads} torch threads"
    )
    for run in runs.values():
        run(warmup)
    wall: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    models: dict[str, torch.nn.Module] = {}
    for round_index in range(args.rounds):
        order = list(runs) if round_index % 2 == 0 else list(reversed(runs))
        for name in order:
            seconds, cpu_seconds, models[name] = runs[name](steps)
            if torch.get_num_threads() != args.threads:
                raise RuntimeError(f"the {name} run changed the torch thread count.")
            wall[name].append(seconds)
            cpu[name].append(cpu_seconds)
            print(
                f"  round {round_index + 1}: {name:14s} {seconds:8.3f} s  ({cpu_seconds:.3f} CPU s)"
            )
    load_after = os.getloadavg()

    median = {name: statistics.median(times) for name, times in wall.items()}
    median_cpu = {name: statistics.median(times) for name, times in cpu.items()}
    ratio = {
        f"{ours}/{name}": median[ours] / median[name]
        for ours in OURS
        for name in ("plain", "plain-tensors")
    }
    cpu_ratio = {
        f"{ours}/{name}": median_cpu[ours] / median_cpu[name]
        for ours in OURS
        for name in ("plain", "plain-tensors")
    }
    # The same work: the runs end on the same weights (bit for bit, or up to float reordering).
    difference = {
        "cnnzoo fit chunked vs plain": max_difference(
            models["cnnzoo-fit-chunked"], models["plain"]
        ),
        "cnnzoo fit vs plain": max_difference(models["cnnzoo-fit"], models["plain"]),
        "cnnzoo vs plain": max_difference(models["cnnzoo"], models["plain"]),
        "plain vs plain-tensors": max_difference(models["plain"], models["plain-tensors"]),
    }
    info = machine(args.threads, loader.num_workers)
    epoch = "s/epoch" if steps == per_epoch else f"s/{steps} steps"
    lines = [
        "",
        f"| run | median {epoch} | ms/step | min–max s | median CPU s | run / plain |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, times in wall.items():
        lines.append(
            f"| {RUNS[name].format(chunk=args.chunk)} | {median[name]:.2f} "
            f"| {1000 * median[name] / steps:.2f} "
            f"| {min(times):.2f}–{max(times):.2f} | {median_cpu[name]:.2f} "
            f"| {median[name] / median['plain']:.3f} |"
        )
    lines += [""]
    for ours in OURS:
        verdict = "met" if ratio[f"{ours}/plain"] <= TARGET else "not met"
        lines.append(
            f"{ours} / plain = {ratio[f'{ours}/plain']:.3f} (target <= {TARGET}: {verdict}); "
            f"/ plain-tensors = {ratio[f'{ours}/plain-tensors']:.3f}; in CPU time "
            f"{cpu_ratio[f'{ours}/plain']:.3f} and {cpu_ratio[f'{ours}/plain-tensors']:.3f}"
        )
    lines += [
        f"medians of {args.rounds} rounds in alternating order, after {warmup} warm-up steps "
        f"of each; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after",
        "max |weight difference| at the end: "
        + ", ".join(f"{key} {value:.1e}" for key, value in difference.items()),
        f"disabled in the cnnzoo run: {DISABLED}; the cnnzoo-fit run keeps the command's "
        "defaults but validation and W&B",
        f"machine: {info['cpu']}, {info['cpu_count']} CPUs, torch {info['torch']}, "
        f"lightning {info['lightning']}, Python {info['python']}, {args.threads} torch "
        f"threads, {loader.num_workers} loader workers",
    ]
    print("\n".join(lines))
    if args.json is not None:
        results = {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "arch": ARCH,
            "data_settings": args.data_settings,
            "data_source": args.data_source,
            "training_images": images,
            "steps": steps,
            "steps_per_epoch": per_epoch,
            "rounds": args.rounds,
            "warmup_steps": warmup,
            "wall_seconds": wall,
            "cpu_seconds": cpu,
            "median_wall_seconds": median,
            "median_cpu_seconds": median_cpu,
            "ratios": ratio,
            "cpu_ratios": cpu_ratio,
            "max_weight_difference": difference,
            "cnnzoo_trainer_settings": TRAINER_SETTINGS,
            "load_average": {"before": load_before, "after": load_after},
            "machine": info,
        }
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"results written to {args.json}")


if __name__ == "__main__":
    main()
