"""One Faster R-CNN R50-FPN training iteration: cnnzoo-detect's against torchvision's.

    ours         build_faster_rcnn("resnet50_v1_5", neck="fpn"): the registry's ResNet-50
                 traced and cut through its feature_info, torchvision's FPN, RPN and heads
    torchvision  torchvision.models.detection.fasterrcnn_resnet50_fpn

Both are built as torchvision builds the model without pretrained weights (BatchNorm,
every stage trainable), ours loaded with torchvision's random weights, and both train on
the same batch of real COCO128 images (resized by the data module, so torchvision's own
resize is 1:1) with the same SGD. An iteration is forward, loss, backward and step. After a
warm-up of each, the rounds alternate their order, and the medians are reported with their
ratio (ours / torchvision; 1.0 means no cost of the generic cut).

    OMP_NUM_THREADS=1 uv run python benchmarks/detect_r50fpn_iteration.py --repeats 5
    uv run python benchmarks/detect_r50fpn_iteration.py \
        --json benchmarks/results/detect_r50fpn_iteration.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from cnnzoo_detect import CocoDataModule, build_faster_rcnn
from cnnzoo_resnet import from_torchvision_state_dict
from torchvision.models.detection import fasterrcnn_resnet50_fpn

REPO_ROOT = Path(__file__).resolve().parents[1]
COCO128 = REPO_ROOT.parent / "shared" / "data" / "coco128"


def build_pair(min_size: int, max_size: int):
    torch.manual_seed(0)
    theirs = fasterrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=91, min_size=min_size, max_size=max_size
    )
    ours = build_faster_rcnn("resnet50_v1_5", 90, "fpn", frozen_bn=False, trainable_stages=5)
    state = theirs.state_dict()
    body = {k.removeprefix("backbone.body."): v for k, v in state.items() if "body." in k}
    mapped = {f"backbone.body.model.{k}": v for k, v in from_torchvision_state_dict(body).items()}
    mapped |= {k: v for k, v in state.items() if "body." not in k}
    ours.load_state_dict(mapped, strict=True)
    return {"ours": ours.train(), "torchvision": theirs.train()}


def batch(root: Path, images: int, min_size: int, max_size: int):
    data = CocoDataModule(
        root,
        val_split="train2017",
        batch_size=images,
        max_images=images,
        min_size=min_size,
        max_size=max_size,
        hflip_prob=0.0,
        num_workers=0,
        empty_images="skip",
    )
    data.setup("fit")
    uint8, targets = next(iter(data.train_dataloader()))
    targets = [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets]
    return [image.float() / 255 for image in uint8], targets


def iteration(model, optimizer, images, targets) -> float:
    start = time.perf_counter()
    losses = model(images, targets)
    optimizer.zero_grad(set_to_none=True)
    sum(losses.values()).backward()
    optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=COCO128)
    parser.add_argument("--images", type=int, default=2, help="images in the batch")
    parser.add_argument("--min-size", type=int, default=512)
    parser.add_argument("--max-size", type=int, default=853)
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds of each")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    args = parser.parse_args()

    images, targets = batch(args.root, args.images, args.min_size, args.max_size)
    models = build_pair(args.min_size, args.max_size)
    optimizers = {
        name: torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
        for name, model in models.items()
    }
    for name in models:
        for _ in range(args.warmup):
            iteration(models[name], optimizers[name], images, targets)
    times: dict[str, list[float]] = {name: [] for name in models}
    order = list(models)
    for round_ in range(args.repeats):
        for name in order if round_ % 2 == 0 else reversed(order):
            # The same sampling of anchors and RoIs for both, round by round.
            torch.manual_seed(round_)
            times[name].append(iteration(models[name], optimizers[name], images, targets))
    medians = {name: statistics.median(values) for name, values in times.items()}
    results = {
        "benchmark": "detect_r50fpn_iteration",
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "batch": {"images": args.images, "sizes": [list(i.shape[-2:]) for i in images]},
        "repeats": args.repeats,
        "seconds_per_iteration": {n: round(m, 4) for n, m in medians.items()},
        "all_seconds": {n: [round(t, 4) for t in ts] for n, ts in times.items()},
        "ratio_ours_over_torchvision": round(medians["ours"] / medians["torchvision"], 3),
    }
    for name, median in medians.items():
        print(f"{name:12s} {median:.3f} s/iteration (median of {args.repeats})")
    print(f"ours / torchvision = {results['ratio_ours_over_torchvision']:.3f}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
