"""ResNet-20 training steps on CIFAR-10: cnnzoo's trainer, with and without the fast path,
against a plain PyTorch loop.

Four runs do the same training work, one after the other in one process:

    cnnzoo            lightning Trainer + ImageClassifier("resnet20") + CIFAR10DataModule,
                      the default path: per-image crops and flips on the loader's workers
    cnnzoo-on-device  the same with `CIFAR10DataModule(on_device=True)`: the images held on
                      the device, each batch gathered, cropped and flipped there
    cnnzoo-chunked    the fast path in chunks of `--chunk` batches (10): one Lightning
                      training step takes that many optimiser steps (`cnnzoo.chunks`)
    plain             a hand-written loop over the same training images held on the device,
                      the same batched crops and flips (`cnnzoo_data.device_augment`), the
                      same normalisation, model, loss and optimiser: cnnzoo-on-device / plain
                      is the trainer's overhead

Each builds `resnet20` (`cnnzoo.create_model`) from the same seed, with the recipe's SGD
(lr 0.1, momentum 0.9, weight decay 1e-4, through `cnnzoo.optim.build_optimizer`), batches
of 128, ResNet §4.2's augmentation; the cnnzoo runs leave out loggers, checkpoints and
validation (the plain loop has none). Each fit or loop runs `--steps` steps; the first
`--skip` steps of each (loader start-up, first kernels) are left out of the timing, which
ends after a device synchronisation. Each run has a warm-up fit first (torch.compile's
compilation, the copy of the images to the device), and the rounds alternate their order;
the medians are reported as images/s with each run's ratio to the plain loop, and as model
FLOP/s: the convolutions' and classifier's FLOPs of a training step (forward and backward, by
torch's FLOP counter) per second, against the device's dense bf16 peak from its maker's spec
sheet (`--peak-tflops` for another device): how close to the GPU's peak the CIFAR path runs.

    uv run python benchmarks/cifar_resnet20_epoch.py --device cuda --steps 200 \
        --channels-last --bf16 --compile --json benchmarks/results/cifar_resnet20_epoch_cuda.json
    uv run python benchmarks/cifar_resnet20_epoch.py --device cpu --steps 8 --skip 2 \
        --batch-size 32 --rounds 1   # a CPU smoke run
"""

from __future__ import annotations

import argparse
import contextlib
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
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from cnnzoo import ImageClassifier, create_model
from cnnzoo.optim import OptimizerSpec, build_optimizer
from cnnzoo_data import CIFAR10DataModule
from cnnzoo_data.device_augment import draw_crop_flips, gather_crops
from lenet_mnist_epoch import TRAINER_SETTINGS  # what the plain loop does not do either
from torch.utils.flop_counter import FlopCounterMode

REPO_ROOT = Path(__file__).resolve().parents[1]
ARCH = "resnet20"
SEED = 0
# resnet20_cifar10's optimiser (ResNet §4.2).
OPTIMIZER = OptimizerSpec(name="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4)
PADDING = 4  # ResNet §4.2: "4 pixels are padded on each side"
# Dense (not 2:4 sparse) bf16 tensor-core peaks, TFLOP/s, from NVIDIA's spec sheets; the first
# name found in the device's name is taken.
RUNS = ("cnnzoo", "cnnzoo-on-device", "cnnzoo-chunked", "plain")
BF16_PEAK_TFLOPS = {"H100 PCIe": 756.0, "H100": 989.4, "H200": 989.4, "A100": 312.0}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StepTimer(L.Callback):
    """Wall time from the start of step `skip` to the end of training, synchronised."""

    def __init__(self, skip: int) -> None:
        self.skip = skip
        self.start = self.end = 0.0

    def on_train_batch_start(self, trainer, module, batch, batch_idx: int) -> None:
        if trainer.global_step == self.skip:
            _sync(module.device)
            self.start = time.perf_counter()

    def on_train_end(self, trainer, module) -> None:
        _sync(module.device)
        self.end = time.perf_counter()


class Profile(L.Callback):
    """torch.profiler over steps `skip`..`skip + steps` of a fit, one `prof.step()` a batch."""

    def __init__(self, skip: int, steps: int) -> None:
        activities = [torch.profiler.ProfilerActivity.CPU]
        if torch.cuda.is_available():
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        self.profiler = torch.profiler.profile(
            activities=activities,
            schedule=torch.profiler.schedule(wait=skip, warmup=2, active=steps, repeat=1),
        )

    def on_train_start(self, trainer, module) -> None:
        self.profiler.start()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.profiler.step()

    def on_train_end(self, trainer, module) -> None:
        self.profiler.stop()


def profile_table(args: argparse.Namespace, steps: int = 20) -> str:
    """Where a step of the cnnzoo fast path spends its time: the profiler's tables by GPU
    kernel time (CPU time without a GPU) and by host time, totals over `steps` steps."""
    profile = Profile(args.skip, steps)
    cnnzoo_run(args, on_device=True, callbacks=[profile])(args.skip + 2 + steps + 1)
    averages = profile.profiler.key_averages()
    by_kernels = "self_cuda_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
    return (
        f"{steps} steps of the cnnzoo fast path (totals over the steps)\n\n"
        f"by GPU kernel time:\n{averages.table(sort_by=by_kernels, row_limit=30)}\n"
        f"by host time:\n{averages.table(sort_by='self_cpu_time_total', row_limit=30)}\n"
    )


def data_module(args: argparse.Namespace, on_device: bool, chunk: int = 1) -> CIFAR10DataModule:
    dm = CIFAR10DataModule(
        root=args.root, batch_size=args.batch_size, seed=SEED, on_device=on_device, chunk=chunk
    )
    dm.setup("fit")
    return dm


def cnnzoo_run(
    args: argparse.Namespace, on_device: bool, callbacks: list[L.Callback] = (), chunk: int = 1
) -> Callable[[int], float]:
    """A run of the cnnzoo trainer; the module (and its compiled forward) kept across fits."""
    dm = data_module(args, on_device, chunk)
    torch.manual_seed(SEED)
    module = ImageClassifier(
        ARCH,
        chunk=chunk,
        optimizer=OPTIMIZER,
        channels_last=args.channels_last,
        compile=args.compile_mode if args.compile else False,
    )
    device = torch.device(args.device)

    def run(steps: int) -> float:
        timer = StepTimer(args.skip)
        trainer = L.Trainer(
            accelerator=device.type,
            devices=1,
            max_epochs=-1,
            max_steps=steps,
            precision="bf16-mixed" if args.bf16 else "32-true",
            callbacks=[timer, *callbacks],
            **TRAINER_SETTINGS,
        )
        trainer.fit(module, datamodule=dm)
        if trainer.global_step != steps:
            raise RuntimeError(f"cnnzoo ran {trainer.global_step} steps, not {steps}.")
        return timer.end - timer.start

    return run


def plain_run(args: argparse.Namespace) -> Callable[[int], float]:
    """The plain loop: images on the device, batched crops and flips, one SGD step a batch."""
    device = torch.device(args.device)
    dm = data_module(args, on_device=True)  # only for its training images and normalisation
    images, labels = dm.train_set.on(device)
    normalize = dm.normalize.to(device)
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    torch.manual_seed(SEED)
    model = create_model(ARCH).to(device, memory_format=memory_format)
    forward = torch.compile(model, mode=args.compile_mode, dynamic=False) if args.compile else model
    optimizer = build_optimizer(model, OPTIMIZER)
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16) if args.bf16 else contextlib.nullcontext()
    )
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(SEED)).to(device)

    def run(steps: int) -> float:
        model.train()
        start = 0.0
        for step in range(steps):
            if step == args.skip:
                _sync(device)
                start = time.perf_counter()
            first = step * args.batch_size % (len(order) - args.batch_size)
            indices = order[first : first + args.batch_size]
            crops = draw_crop_flips(indices, PADDING, SEED, epoch=0)
            x = normalize(gather_crops(images, indices, PADDING, crops), train=True)
            x = x.contiguous(memory_format=memory_format)
            with autocast:
                loss = F.cross_entropy(forward(x), labels[indices])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        _sync(device)
        return time.perf_counter() - start

    return run


def training_flops_per_image() -> float:
    """FLOPs of one image's training step, forward and backward: the convolutions and the
    classifier, as torch's FLOP counter counts them (normalisation and activations are
    memory-bound and left out, as model-FLOPs utilisation does)."""
    model = create_model(ARCH)
    batch = 2  # batch-norm needs more than one image
    with FlopCounterMode(display=False) as counter:
        model(torch.randn(batch, 3, 32, 32)).sum().backward()
    return counter.get_total_flops() / batch


def peak_tflops(device: torch.device, given: float | None) -> float | None:
    if given is not None or device.type != "cuda":
        return given
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in BF16_PEAK_TFLOPS.items() if key in name), None)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--root",
        default=str(REPO_ROOT.parent / "shared" / "data" / "cifar10-jpg.tar.gz"),
        help="CIFAR-10 as CIFAR10DataModule reads it (default: ../shared/data's JPEG copy)",
    )
    parser.add_argument("--steps", type=int, default=200, help="steps of each fit or loop")
    parser.add_argument("--skip", type=int, default=10, help="first steps left out of the timing")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (bf16-mixed)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument(
        "--compile-mode",
        default="default",
        choices=["default", "reduce-overhead", "max-autotune"],
        help="torch.compile's mode (reduce-overhead: each step replayed as CUDA graphs)",
    )
    parser.add_argument(
        "--peak-tflops",
        type=float,
        help="the device's peak TFLOP/s to compare with (default: the spec sheet's dense bf16 "
        "peak for the GPUs in BF16_PEAK_TFLOPS; none on CPU)",
    )
    parser.add_argument(
        "--runs",
        nargs="+",
        default=list(RUNS),
        choices=list(RUNS),
        help="which runs to time (default all; plain is always one, the ratios' base)",
    )
    parser.add_argument(
        "--profile", type=Path, help="also profile 20 steps of cnnzoo-on-device, tables here"
    )
    parser.add_argument(
        "--chunk", type=int, default=10, help="batches per training step of cnnzoo-chunked"
    )
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    if not 0 <= args.skip < args.steps:
        parser.error("--skip must be at least 0 and below --steps")
    if "cnnzoo-chunked" in args.runs and args.skip % args.chunk:
        # The timing starts at a training step's start: after a whole number of chunks.
        parser.error(f"--skip {args.skip} must be a multiple of --chunk {args.chunk}")
    return args


def main() -> None:
    args = parse_args()
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    device = torch.device(args.device)
    load_before = os.getloadavg()
    makers = {
        "cnnzoo": lambda: cnnzoo_run(args, on_device=False),
        "cnnzoo-on-device": lambda: cnnzoo_run(args, on_device=True),
        "cnnzoo-chunked": lambda: cnnzoo_run(args, on_device=True, chunk=args.chunk),
        "plain": lambda: plain_run(args),
    }
    chosen = {*args.runs, "plain"}
    runs: dict[str, Callable[[int], float]] = {n: makers[n]() for n in RUNS if n in chosen}
    for run in runs.values():  # warm-up: compilation, the copy to the device, kernels chosen
        run(args.steps)
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for round_index in range(args.rounds):
        order = list(runs) if round_index % 2 == 0 else list(reversed(runs))
        for name in order:
            seconds[name].append(runs[name](args.steps))
    timed_images = (args.steps - args.skip) * args.batch_size
    rates = {name: timed_images / statistics.median(times) for name, times in seconds.items()}
    ratios = {f"{name}/plain": rates[name] / rates["plain"] for name in runs}
    flops = training_flops_per_image()
    tflops = {name: rate * flops / 1e12 for name, rate in rates.items()}
    peak = peak_tflops(device, args.peak_tflops)
    report: dict[str, Any] = {
        "date": datetime.date.today().isoformat(),
        "device": device_name(device),
        "torch": torch.__version__,
        "lightning": L.__version__,
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "load_average_before": load_before,
        "seconds": seconds,
        "images_per_s": {name: round(rate, 1) for name, rate in rates.items()},
        "ms_per_step": {name: round(1e3 * args.batch_size / r, 4) for name, r in rates.items()},
        "ratios": {key: round(ratio, 3) for key, ratio in ratios.items()},
        "training_gflops_per_image": round(flops / 1e9, 4),
        "model_tflops_per_s": {name: round(t, 3) for name, t in tflops.items()},
        "peak_tflops": peak,
        "of_peak": {name: round(t / peak, 5) for name, t in tflops.items()} if peak else None,
    }
    print(f"ResNet-20 on CIFAR-10, {device_name(device)}: {args.steps} steps of {args.batch_size}")
    for name, rate in rates.items():
        of_peak = f"   {100 * tflops[name] / peak:.2f}% of {peak:g} TFLOP/s" if peak else ""
        print(
            f"{name:18s} {rate:10.1f} img/s {1e3 * args.batch_size / rate:8.3f} ms/step   "
            f"{ratios[f'{name}/plain']:.3f} of plain   "
            f"{tflops[name]:.3f} model TFLOP/s{of_peak}"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.profile:
        args.profile.parent.mkdir(parents=True, exist_ok=True)
        args.profile.write_text(profile_table(args))
        print(f"profile written to {args.profile}")


if __name__ == "__main__":
    main()
