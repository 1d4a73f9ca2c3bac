"""The `cnnzoo-detect` command: LightningCLI around the Detector and the COCO/VOC data modules.

cnnzoo-detect fit --model.backbone resnet50 --model.neck fpn \\
    --data CocoDataModule --data.root /coco
cnnzoo-detect fit --model.backbone alexnet --model.method rcnn --data.root /coco
cnnzoo-detect fit --model.backbone vgg16 --model.method fast_rcnn --data.root /coco
cnnzoo-detect fit --model.backbone vgg16 --model.neck single \\
    --model.backbone_checkpoint runs/vgg16/checkpoints/last.ckpt \\
    --data VocDataModule --data.root /voc --data.min_size 600 --data.max_size 1000
cnnzoo-detect test|validate --config runs/resnet50_fpn/config.yaml --ckpt_path <ckpt>
cnnzoo-detect predict --config ... --ckpt_path <ckpt> --save_images true
"""

from __future__ import annotations

import sys

from cnnzoo.runs import RunCLI, run_command
from jsonargparse import Namespace

from cnnzoo_detect.callbacks import DetectionWriter
from cnnzoo_detect.data import DetectionDataModule
from cnnzoo_detect.module import MONITOR, PROPOSAL_METHODS, Detector


class DetectCLI(RunCLI):
    """The detection command's runs: the data decides num_classes, runs land in
    runs/<backbone>_<neck>/, `predict` writes a COCO results file (and pictures with
    --save_images)."""

    best_monitor = MONITOR
    best_mode = "max"
    best_filename = "epoch{epoch:03d}-map{val/map:.4f}"
    run_max_epochs = 12  # the "1x" schedule: 90k iterations of 16 images on COCO
    default_data = "cnnzoo_detect.CocoDataModule"
    run_callbacks = ({"class_path": "cnnzoo_detect.callbacks.DetectionGallery"},)

    def add_run_arguments(self, parser) -> None:
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        # R-CNN and Fast R-CNN classify selective search's proposals; Faster R-CNN makes its own.
        parser.link_arguments(
            "model.method",
            "data.init_args.proposals",
            compute_fn=lambda method: "selective_search" if method in PROPOSAL_METHODS else "none",
        )
        parser.add_argument(
            "--output_dir",
            type=str | None,
            default=None,
            help="where predict writes detections.json (and PNGs); default "
            "<default_root_dir>/<backbone>_<neck>/predictions (predict only)",
        )
        parser.add_argument(
            "--save_images",
            type=bool,
            default=False,
            help="predict also writes each image with its boxes as <image_id>.png (predict only)",
        )
        parser.add_argument(
            "--score_threshold",
            type=float,
            default=0.3,
            help="the lowest score drawn in the PNGs (predict only)",
        )

    def run_name(self, config: Namespace) -> str:
        model = config.model
        method = model.get("method") or "faster_rcnn"
        if method != "faster_rcnn":
            return f"{model.backbone}_{method}"
        return f"{model.backbone}_{model.neck or 'fpn'}"

    def test_checkpoint(self) -> str:
        # R-CNN's SVMs are fit after the last epoch: only the last checkpoint holds them.
        if self.config.fit.model.get("method") == "rcnn":
            return "last"
        return super().test_checkpoint()

    def before_predict(self) -> None:
        config = self.config["predict"]
        output_dir = config.get("output_dir") or self.trainer.run_dir / "predictions"
        self.trainer.callbacks.append(
            DetectionWriter(output_dir, config.get("save_images"), config.get("score_threshold"))
        )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    return DetectCLI(Detector, DetectionDataModule, args=argv).exit_status()


def run(argv: list[str] | None = None) -> int:
    """The `cnnzoo-detect` command (see `cnnzoo.runs.run_command`)."""
    return run_command(main, "cnnzoo-detect", argv)


if __name__ == "__main__":
    sys.exit(run())
