"""The `cnnzoo` command: LightningCLI around the core ImageClassifier and the data modules.

cnnzoo models [PATTERN]              the registered models and their papers' figures
cnnzoo recipes                       the installed recipes
cnnzoo fit --config lenet5_mnist     train with a paper's recipe (a name or a YAML path)
cnnzoo fit --model.arch alexnet --data ImageFolderDataModule --data.root /imagenet
cnnzoo test|validate|predict --config ... --ckpt_path runs/lenet5/checkpoints/last.ckpt
"""

from __future__ import annotations

import sys
from typing import Literal

from cnnzoo import ImageClassifier, model_card
from cnnzoo.recipes import find_recipe, list_recipes
from cnnzoo_data import ClassificationDataModule
from lightning.pytorch.cli import LightningCLI

RUNS = "runs"

# Set as parser defaults (not LightningCLI's trainer_defaults) so that recipes and the
# command line can still change or replace every one of them.
TRAINER_DEFAULTS = {
    "trainer.default_root_dir": RUNS,
    "trainer.max_epochs": 10,
    "trainer.logger": [
        {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": RUNS}},
        {"class_path": "cnnzoo.loggers.WandbLogger", "init_args": {"save_dir": RUNS}},
    ],
    "trainer.callbacks": [
        {
            "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
            "init_args": {
                "monitor": "val/top1_error",
                "mode": "min",
                "filename": "epoch{epoch:03d}-top1err{val/top1_error:.4f}",
                "auto_insert_metric_name": False,
            },
        },
        {
            # last.ckpt after every epoch, to resume from: since Lightning 2.6 `save_last` of a
            # checkpoint that monitors a metric writes it only when the metric improves.
            "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
            "init_args": {"filename": "last", "enable_version_counter": False},
        },
        {"class_path": "lightning.pytorch.callbacks.LearningRateMonitor"},
        {"class_path": "cnnzoo.callbacks.PredictionGallery"},
    ],
}


class CnnzooCLI(LightningCLI):
    """LightningCLI wired for cnnzoo: the data decides num_classes and in_chans, the model
    card decides the input size, runs land in runs/<arch>/, and `fit` ends with a test of
    the best checkpoint."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.set_defaults({"data": {"class_path": "cnnzoo_data.DigitsDataModule"}})
        parser.set_defaults(TRAINER_DEFAULTS)
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.in_chans", "model.in_chans", apply_on="instantiate")
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=True,
            help="after fit, test a checkpoint on the test split (fit only)",
        )
        parser.add_argument(
            "--test_ckpt",
            type=Literal["best", "last"],
            default="best",
            help="which checkpoint to test after fit: best by validation error, or the last "
            "(when validation watches the test split, as in papers that trained on all data)",
        )

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        arch = config.model.arch
        card = model_card(arch)  # fails here, clearly, on an unknown name
        data_args = config.data.init_args
        if data_args.get("image_size") is None:
            data_args.image_size = card.input_size[-1]
        for logger in config.trainer.logger or []:
            if isinstance(logger, dict) or not hasattr(logger, "init_args"):
                continue
            if logger.init_args.get("name") in (None, "lightning_logs"):
                logger.init_args.name = arch
            if logger.init_args.get("save_dir") == RUNS:  # follow --trainer.default_root_dir
                logger.init_args.save_dir = config.trainer.default_root_dir
        for callback in config.trainer.callbacks or []:
            is_checkpoint = getattr(callback, "class_path", "").endswith("ModelCheckpoint")
            if is_checkpoint and callback.init_args.get("dirpath") is None:
                callback.init_args.dirpath = f"{config.trainer.default_root_dir}/{arch}/checkpoints"

    def after_fit(self) -> None:
        if not self.config.fit.get("test_after_fit", True) or self.trainer.interrupted:
            return
        checkpoint = self.trainer.checkpoint_callback
        which = self.config.fit.get("test_ckpt", "best")
        if checkpoint is None:
            path = ""
        else:
            path = checkpoint.best_model_path if which == "best" else checkpoint.last_model_path
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=path or None)


def _expand_recipe_names(argv: list[str]) -> list[str]:
    """Let `--config lenet5_mnist` name a shipped recipe as well as a YAML path."""
    expanded = list(argv)
    for i, arg in enumerate(expanded):
        if arg == "--config" and i + 1 < len(expanded):
            expanded[i + 1] = str(find_recipe(expanded[i + 1]))
        elif arg.startswith("--config="):
            expanded[i] = "--config=" + str(find_recipe(arg.split("=", 1)[1]))
    return expanded


def _print_recipes() -> int:
    for name, path in list_recipes().items():
        print(f"{name:32s} {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["models"]:
        from cnnzoo_classify.models_table import main as models_main

        return models_main(argv[1:])
    if argv[:1] == ["recipes"]:
        return _print_recipes()
    CnnzooCLI(
        ImageClassifier,
        ClassificationDataModule,
        subclass_mode_data=True,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        args=_expand_recipe_names(argv),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
