"""R-CNN, Fast R-CNN and Faster R-CNN side by side: test seconds an image and mAP after the
same short training, on the same backbone and the same COCO images.

    R-CNN        selective search; each proposal warped to the network's input and passed
                 through the whole network; one SVM a class; box regression
    Fast R-CNN   the same proposals; the image through the trunk once; RoI max pooling;
                 softmax and box regressor; and again with fc6 and fc7 compressed by
                 truncated SVD (top 1,024 and 256 singular values, Fast R-CNN §3.1)
    Faster R-CNN the region proposal network on the same map; no selective search

The papers' headline (VGG-16 on a GPU): R-CNN 47 s an image, Fast R-CNN 0.32 s (plus about
2 s of selective search on a CPU), Faster R-CNN 0.2 s in all. Here the backbone is AlexNet,
R-CNN's and Fast R-CNN's own first network, from random weights (ImageNet weights need a
download), on a CPU: expect that order, not those figures. COCO128's first images train
every method for the same epochs with the papers' SGD (0.001, momentum 0.9, weight decay
0.0005), its last images are the held-out test. Test time is measured image by image (batch
1) with the papers' test settings: 2,000 proposals for R-CNN and Fast R-CNN, 300 RPN
proposals for Faster R-CNN, images at a 600-pixel shorter side. Selective search's own time
is measured on the same images and reported apart, as the papers do.

    uv run python benchmarks/detect_rcnn_line.py --coco /path/to/coco128 \
        --json benchmarks/results/detect_rcnn_line.json \
        --picture docs/images/detect_rcnn_line.png
    uv run python benchmarks/detect_rcnn_line.py --train-images 8 --test-images 4 --epochs 1 \
        --timing-images 1   # a quick look
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from cnnzoo.optim import OptimizerSpec
from cnnzoo_detect import CocoDataModule, Detector, selective_search
from cnnzoo_detect.callbacks import draw_detections
from cnnzoo_detect.data import load_rgb
from torchvision.transforms.v2.functional import pil_to_tensor
from torchvision.utils import draw_bounding_boxes

REPO_ROOT = Path(__file__).resolve().parents[1]
COCO128 = REPO_ROOT.parent / "shared" / "data" / "coco128"
METHODS = ("rcnn", "fast_rcnn", "faster_rcnn")
TITLES = {
    "rcnn": "R-CNN",
    "fast_rcnn": "Fast R-CNN",
    "fast_rcnn_svd": "Fast R-CNN, truncated SVD",
    "faster_rcnn": "Faster R-CNN",
}
# The papers' SGD for all three (R-CNN §2.3, Fast R-CNN §2.3, Faster R-CNN §3.3 on VOC).
PAPERS_SGD = OptimizerSpec(name="sgd", lr=0.001, momentum=0.9, weight_decay=0.0005)
# Faster R-CNN's test: 300 proposals after the RPN's NMS (§3.3, Table 2).
FASTER_TEST = {"rpn_post_nms_top_n_test": 300, "rpn_pre_nms_top_n_test": 6000}


def split_coco(coco: Path, folder: Path, train_images: int, test_images: int) -> Path:
    """A COCO root whose train2017 is COCO128's first images and val2017 its last ones."""
    data = json.loads((coco / "annotations" / "instances_train2017.json").read_text())
    images = sorted(data["images"], key=lambda image: image["id"])
    parts = {"train2017": images[:train_images], "val2017": images[-test_images:]}
    (folder / "annotations").mkdir(parents=True)
    for split, chosen in parts.items():
        ids = {image["id"] for image in chosen}
        subset = data | {
            "images": chosen,
            "annotations": [a for a in data["annotations"] if a["image_id"] in ids],
        }
        (folder / "annotations" / f"instances_{split}.json").write_text(json.dumps(subset))
        (folder / split).symlink_to(coco / "train2017")
    return folder


def data_module(root: Path, method: str, max_proposals: int, args) -> CocoDataModule:
    return CocoDataModule(
        root,
        train_split="train2017",
        val_split="val2017",
        batch_size=2,  # Fast R-CNN's N = 2 images a mini-batch
        eval_batch_size=1,
        num_workers=0,
        min_size=600,  # the papers' single scale
        max_size=1000,
        empty_images="skip",
        proposals="selective_search" if method != "faster_rcnn" else "none",
        max_proposals=max_proposals,
        proposal_cache=args.cache,
        proposal_workers=args.workers,
        seed=0,
    )


def detector(method: str, num_classes: int) -> Detector:
    torch.manual_seed(0)
    options = {"faster_rcnn": FASTER_TEST} if method == "faster_rcnn" else {}
    return Detector(
        "alexnet",
        method=method,
        neck="single" if method == "faster_rcnn" else None,
        num_classes=num_classes,
        representation_size=4096,  # AlexNet's fc6 and fc7
        optimizer=PAPERS_SGD,
        **options,
    )


def train_and_test(method: str, root: Path, args) -> tuple[Detector, dict]:
    data = data_module(root, method, args.max_proposals, args)
    data.setup("fit")
    model = detector(method, data.num_classes)
    trainer = L.Trainer(
        max_epochs=args.epochs,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        accelerator="cpu",
    )
    start = time.perf_counter()
    trainer.fit(model, datamodule=data)
    train_s = time.perf_counter() - start
    (metrics,) = trainer.test(model, datamodule=data, verbose=False)
    return model, {
        "train_s": round(train_s, 1),
        "map": round(float(metrics["test/map"]), 4),
        "map_50": round(float(metrics["test/map_50"]), 4),
    }


@torch.inference_mode()
def seconds_an_image(model: Detector, batches: list) -> float:
    """The median test time of one image (batch 1), after one image of warm-up."""
    model.eval()
    times = []
    for index, (images, targets) in enumerate(batches):
        start = time.perf_counter()
        model.detect(images, targets)
        if index or len(batches) == 1:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def timing_batches(root: Path, method: str, args) -> list:
    """The first test images, one a batch, with the papers' 2,000 proposals."""
    data = data_module(root, method, 2000, args)
    data.setup("test")
    batches = []
    for batch in data.test_dataloader():
        batches.append(batch)
        if len(batches) == args.timing_images:
            break
    return batches


def search_seconds(root: Path, count: int) -> float:
    """Selective search's median time an image (fast mode, one core), on the test images."""
    data = json.loads((root / "annotations" / "instances_val2017.json").read_text())
    times = []
    for image in data["images"][:count]:
        pixels = pil_to_tensor(load_rgb(root / "val2017" / image["file_name"]))
        start = time.perf_counter()
        selective_search(pixels, "fast", 2000)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def picture(models: dict[str, Detector], root: Path, args, path: Path) -> None:
    """The ground truth, the 50 best-ranked proposals and each method's five best detections
    on the same test image, in a row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    data = data_module(root, "rcnn", args.max_proposals, args)
    data.setup("test")
    images, targets = next(iter(data.test_dataloader()))
    classes = data.classes
    file_image = pil_to_tensor(load_rgb(data.datasets["test"].base.images[0].path))
    height, width = (int(v) for v in targets[0]["orig_size"])
    scale = torch.tensor([width / images[0].shape[-1], height / images[0].shape[-2]] * 2)
    proposals = targets[0]["proposals"][:50] * scale
    truth = targets[0]["boxes"] * scale
    names = [classes[label] for label in targets[0]["labels"].tolist()]
    panels.append(("ground truth", draw_bounding_boxes(file_image, truth, names, "lime", 2)))
    panels.append(
        ("selective search, 50 best", draw_bounding_boxes(file_image, proposals, colors="red"))
    )
    for name, model in models.items():
        with torch.inference_mode():
            model.eval()
            (detection,) = model.detect(images, targets)
        top = detection["scores"].argsort(descending=True)[:5]
        best = {key: value[top] for key, value in detection.items()}
        threshold = float(best["scores"].min()) if len(top) else 0.0
        panels.append((TITLES[name], draw_detections(file_image, best, classes, threshold)))
    figure, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.4))
    for axis, (title, image) in zip(axes, panels, strict=True):
        axis.imshow(image.permute(1, 2, 0).numpy())
        axis.set_title(title, fontsize=10)
        axis.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coco", type=Path, default=COCO128, help="COCO128 (or a COCO folder)")
    parser.add_argument("--train-images", type=int, default=64)
    parser.add_argument("--test-images", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-proposals", type=int, default=500, help="while training and for mAP")
    parser.add_argument("--timing-images", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2, help="selective search processes")
    parser.add_argument("--cache", type=str, default=None, help="proposal cache folder")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--picture", type=Path, default=None)
    args = parser.parse_args()
    os.environ.setdefault("WANDB_MODE", "offline")
    with tempfile.TemporaryDirectory() as folder:
        root = split_coco(args.coco, Path(folder) / "coco", args.train_images, args.test_images)
        rows, models = {}, {}
        for method in METHODS:
            model, row = train_and_test(method, root, args)
            row["s_per_image"] = round(
                seconds_an_image(model, timing_batches(root, method, args)), 3
            )
            rows[method], models[method] = row, model
            print(method, row, flush=True)
            if method == "fast_rcnn":  # §3.1: the same model, fc6 and fc7 compressed
                compressed = copy.deepcopy(model)
                before, after = compressed.model.compress(fc6_rank=1024, fc7_rank=256)
                svd = seconds_an_image(compressed, timing_batches(root, method, args))
                rows["fast_rcnn_svd"] = {
                    "s_per_image": round(svd, 3),
                    "params_before": before,
                    "params_after": after,
                }
        proposal_s = round(search_seconds(root, args.timing_images), 3)
        if args.picture is not None:
            args.picture.parent.mkdir(parents=True, exist_ok=True)
            picture(models, root, args, args.picture)
    print(f"selective search: {proposal_s} s an image")
    print("| method | test s/image (network) | + selective search | mAP | mAP@0.5 | training s |")
    for name, row in rows.items():
        search = proposal_s if name != "faster_rcnn" else 0.0
        print(
            f"| {TITLES[name]} | {row['s_per_image']:.3f} | {row['s_per_image'] + search:.3f} | "
            f"{row.get('map', '')} | {row.get('map_50', '')} | {row.get('train_s', '')} |"
        )
    if args.json is not None:
        result = {
            "date": datetime.date.today().isoformat(),
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "settings": {k: str(v) for k, v in vars(args).items() if k not in ("json", "picture")},
            "selective_search_s": proposal_s,
            "methods": rows,
        }
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
