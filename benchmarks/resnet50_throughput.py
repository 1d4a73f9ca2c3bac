"""ResNet-50 training and inference throughput: cnnzoo's against torchvision's and timm's.

The three are the same network (torchvision's "v1.5" bottleneck, stride on the 3x3), so
this measures implementation overhead only: cnnzoo `resnet50_v1_5`, torchvision
`resnet50`, timm `resnet50`. Each is timed on the same random batch (throughput does not
depend on pixel values) for inference (eval, no_grad) and training (forward, cross-entropy,
backward, SGD step). After a warm-up of each, the rounds alternate their order and the
medians are reported, with cnnzoo / other as images-per-second ratios (above 1: ours is
faster).

    uv run python benchmarks/resnet50_throughput.py --device cuda --batch-size 256 \
        --channels-last --bf16 --json benchmarks/results/resnet50_throughput_h100.json
    uv run python benchmarks/resnet50_throughput.py --batch-size 8 --image-size 160  # CPU
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import timm
import torch
import torchvision
from cnnzoo import create_model
from torch import nn

CONTENDERS: dict[str, Callable[[], nn.Module]] = {
    "cnnzoo": lambda: create_model("resnet50_v1_5"),
    "torchvision": lambda: torchvision.models.resnet50(),
    "timm": lambda: timm.create_model("resnet50"),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, bf16: bool):
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def make_steps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, bf16: bool):
    """The two timed passes of one model: inference and one training step."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)

    def infer() -> None:
        model.eval()
        with torch.no_grad(), _autocast(x.device, bf16):
            model(x)

    def train() -> None:
        model.train()
        with _autocast(x.device, bf16):
            loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return {"inference": infer, "training": train}


def time_it(step: Callable[[], None], iterations: int, device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    for _ in range(iterations):
        step()
    _sync(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--iterations", type=int, default=20, help="timed steps a round")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast")
    parser.add_argument("--compile", action="store_true", help="torch.compile each model")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()

    device = torch.device(args.device)
    torch.manual_seed(0)
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    x = torch.randn(args.batch_size, 3, args.image_size, args.image_size, device=device)
    x = x.contiguous(memory_format=memory_format)
    y = torch.randint(0, 1000, (args.batch_size,), device=device)
    steps = {}
    for name, build in CONTENDERS.items():
        model = build().to(device, memory_format=memory_format)
        if args.compile:
            model = torch.compile(model)
        steps[name] = make_steps(model, x, y, args.bf16)
        params = sum(p.numel() for p in model.parameters())
        print(f"{name:12s} {params:,} parameters")

    results: dict[str, dict[str, float]] = {}
    for mode in ("inference", "training"):
        for name in steps:  # warm-up: kernels chosen, caches filled, compile done
            time_it(steps[name][mode], args.warmup, device)
        seconds: dict[str, list[float]] = {name: [] for name in steps}
        for round_index in range(args.rounds):
            order = list(steps) if round_index % 2 == 0 else list(reversed(steps))
            for name in order:
                seconds[name].append(time_it(steps[name][mode], args.iterations, device))
        for name, times in seconds.items():
            rate = args.iterations * args.batch_size / statistics.median(times)
            results.setdefault(name, {})[f"{mode}_images_per_s"] = round(rate, 2)
    ratios = {
        f"cnnzoo/{other}_{mode}": round(
            results["cnnzoo"][f"{mode}_images_per_s"] / results[other][f"{mode}_images_per_s"], 3
        )
        for other in ("torchvision", "timm")
        for mode in ("inference", "training")
    }
    device_name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    )
    report = {
        "date": datetime.date.today().isoformat(),
        "device": device_name,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "timm": timm.__version__,
        "settings": vars(args) | {"json": str(args.json) if args.json else None},
        "images_per_s": results,
        "ratios": ratios,
    }
    for name, rates in results.items():
        print(
            f"{name:12s} inference {rates['inference_images_per_s']:9.1f} img/s   "
            f"training {rates['training_images_per_s']:9.1f} img/s"
        )
    for key, ratio in ratios.items():
        print(f"{key:36s} {ratio:.3f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
