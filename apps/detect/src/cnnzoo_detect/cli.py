"""The `cnnzoo-detect` command: LightningCLI around the Detector and the COCO/VOC data modules.

cnnzoo-detect fit --model.backbone resnet50 --model.neck fpn \\
    --data CocoDataModule --data.root /coco
cnnzoo-detect fit --model.backbone vgg16 --model.neck single \\
    --model.backbone_checkpoint runs/vgg16/checkpoints/last.ckpt \\
    --data VocDataModule --data.root /voc --data.min_size 600 --data.max_size 1000
cnnzoo-detect test|validate --config runs/resnet50_fpn/config.yaml --ckpt_path <ckpt>
cnnzoo-detect predict --config ... --ckpt_path <ckpt> --save_images true
"""

from __future__ import annotations

import sys
from pathlib import Path

from lightning.pytorch.cli import LightningCLI

from cnnzoo_detect.callbacks import DetectionWriter
from cnnzoo_detect.data import DetectionDataModule
from cnnzoo_detect.module import MONITOR, Detector

RUNS = "runs"

# Parser defaults (not trainer_defaults), so that configs and the command line can still
# change or replace every one of them.
TRAINER_DEFAULTS = {
    "trainer.default_root_dir": RUNS,
    "trainer.max_epochs": 12,  # the "1x" schedule: 90k iterations of 16 images on COCO
    # Checkpoints written atomically: a kill during the write leaves the previous one whole.
    "trainer.plugins": [{"class_path": "cnnzoo.checkpoint.AtomicCheckpointIO"}],
    "trainer.logger": [
        {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": RUNS}},
        {"class_path": "cnnzoo.loggers.WandbLogger", "init_args": {"save_dir": RUNS}},
    ],
    "trainer.callbacks": [
        {
            "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
            "init_args": {
                "monitor": MONITOR,
                "mode": "max",
                "filename": "epoch{epoch:03d}-map{val/map:.4f}",
                "auto_insert_metric_name": False,
            },
        },
        {
            # last.ckpt at every epoch's end and every 1000 steps: `--ckpt_path last` resumes.
            "class_path": "cnnzoo.checkpoint.LastCheckpoint",
            "init_args": {"every_n_train_steps": 1000},
        },
        {"class_path": "lightning.pytorch.callbacks.LearningRateMonitor"},
        {"class_path": "cnnzoo_detect.callbacks.DetectionGallery"},
    ],
}


class DetectCLI(LightningCLI):
    """LightningCLI wired for detection: the data decides num_classes, runs land in
    runs/<backbone>_<neck>/, `fit` ends with a test of the best checkpoint, and `predict`
    writes a COCO results file (and pictures with --save_images)."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.set_defaults(TRAINER_DEFAULTS)
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=True,
            help="after fit, test the best checkpoint on the test split (fit only)",
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

    def _run_name(self, config) -> str:
        return f"{config.model.backbone}_{config.model.neck}"

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        name = self._run_name(config)
        root = config.trainer.default_root_dir
        for logger in config.trainer.logger or []:
            if isinstance(logger, dict) or not hasattr(logger, "init_args"):
                continue
            if logger.init_args.get("name") in (None, "lightning_logs"):
                logger.init_args.name = name
            if logger.init_args.get("save_dir") == RUNS:  # follow --trainer.default_root_dir
                logger.init_args.save_dir = root
        for callback in config.trainer.callbacks or []:
            class_path = getattr(callback, "class_path", "")
            is_checkpoint = class_path.endswith(("ModelCheckpoint", "LastCheckpoint"))
            if is_checkpoint and callback.init_args.get("dirpath") is None:
                callback.init_args.dirpath = f"{root}/{name}/checkpoints"

    def before_predict(self) -> None:
        config = self.config["predict"]
        output_dir = config.get("output_dir") or Path(
            config.trainer.default_root_dir, self._run_name(config), "predictions"
        )
        self.trainer.callbacks.append(
            DetectionWriter(output_dir, config.get("save_images"), config.get("score_threshold"))
        )

    def after_fit(self) -> None:
        if not self.config.fit.get("test_after_fit", True) or self.trainer.interrupted:
            return
        checkpoint = self.trainer.checkpoint_callback
        path = checkpoint.best_model_path if checkpoint is not None else ""
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=path or None)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    DetectCLI(
        Detector,
        DetectionDataModule,
        subclass_mode_data=True,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        args=argv,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
