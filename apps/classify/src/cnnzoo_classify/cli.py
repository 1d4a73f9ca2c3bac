"""The `cnnzoo` command: LightningCLI around the core ImageClassifier and the data modules.

cnnzoo models [PATTERN]              the registered models and their papers' figures
cnnzoo recipes                       the installed recipes
cnnzoo fit --config lenet5_mnist     train with a paper's recipe (a name or a YAML path)
cnnzoo fit --model.arch alexnet --data ImageFolderDataModule --data.root /imagenet
cnnzoo fit --config lenet5_mnist --ckpt_path last      resume where the run stopped
cnnzoo test|validate --config ... --ckpt_path runs/lenet5/checkpoints/last.ckpt
cnnzoo predict --ckpt_path PATH.ckpt --data ...  the model comes from the checkpoint
cnnzoo explain VIEW ...              deconvnet, occlusion, filters, retrieval, Grad-CAM
cnnzoo export [MODEL] --checkpoint PATH --format onnx|torchscript|exported-program
cnnzoo reproduce RECIPE [fit options]   run a paper's recipe, append a row of results
cnnzoo report                        the rows as a Markdown table and plots
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from dataclasses import dataclass
from typing import Literal

from cnnzoo import CnnzooError, ImageClassifier, InputShapeError, model_card
from cnnzoo.checkpoint import check_checkpoint_file
from cnnzoo.recipes import find_recipe, list_recipes
from cnnzoo.sittings import SITTING_ENDED, RunClock, continued_log_versions
from cnnzoo_data import ClassificationDataModule
from jsonargparse import Namespace
from lightning.pytorch.cli import LightningCLI

RUNS = "runs"
LAST_EVERY_N_STEPS = 1000  # mid-epoch `last.ckpt`: at most this many steps lost to a kill

# Set as parser defaults (not LightningCLI's trainer_defaults) so that recipes and the
# command line can still change or replace every one of them.
TRAINER_DEFAULTS = {
    "trainer.default_root_dir": RUNS,
    "trainer.max_epochs": 10,
    # Checkpoints written atomically: a kill during the write leaves the previous one whole.
    "trainer.plugins": [{"class_path": "cnnzoo.checkpoint.AtomicCheckpointIO"}],
    "trainer.logger": [
        {"class_path": "cnnzoo.loggers.CSVLogger", "init_args": {"save_dir": RUNS}},
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
            # last.ckpt after every epoch and every n steps, to resume from (`--ckpt_path
            # last`): since Lightning 2.6 `save_last` of a checkpoint that monitors a metric
            # writes it only when the metric improves.
            "class_path": "cnnzoo.checkpoint.LastCheckpoint",
            "init_args": {"every_n_train_steps": LAST_EVERY_N_STEPS},
        },
        {"class_path": "lightning.pytorch.callbacks.LearningRateMonitor"},
        # The run's clock and log names in its checkpoints: a resumed run goes on with both.
        {"class_path": "cnnzoo.sittings.RunClock"},
        {"class_path": "cnnzoo.callbacks.PredictionGallery"},
        # The training loss as the loggers last wrote it, read from the device only then.
        {"class_path": "cnnzoo.callbacks.ProgressBar"},
        {"class_path": "cnnzoo.callbacks.PredictionWriter"},
    ],
}


@dataclass
class WandbOptions:
    """`--wandb.*`: the W&B logger's options (None leaves the logger's or a recipe's own).

    Args:
        enabled: False drops the W&B logger (the CSV logger stays).
        project, entity, name, group, tags, notes: where and how the run appears in W&B
            (name defaults to the arch).
        offline: None is offline unless W&B has credentials; WANDB_MODE, when set, decides.
        log_model: True logs the checkpoints as model artifacts (with the model card) when
            training ends, "all" as they are written.
    """

    enabled: bool = True
    project: str | None = None
    entity: str | None = None
    name: str | None = None
    group: str | None = None
    tags: list[str] | None = None
    notes: str | None = None
    offline: bool | None = None
    log_model: bool | Literal["all"] | None = None


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
        parser.add_class_arguments(WandbOptions, "wandb")
        parser.add_argument(
            "--sitting_minutes",
            type=float | None,
            default=None,
            help="end this sitting at the last epoch end within this many minutes (a job's "
            "time limit); the run goes on with --ckpt_path last, on the same clock and logs",
        )
        parser.add_argument(
            "--checkpoint_every_n_steps",
            type=int,
            default=LAST_EVERY_N_STEPS,
            help="also write last.ckpt every n training steps inside an epoch (0: only at "
            "epoch ends), so that a killed run resumes with --ckpt_path last losing < n steps",
        )

    def _parse_ckpt_path(self) -> None:
        # Lightning reads the model's hyper-parameters from --ckpt_path (so `predict` needs no
        # training config); a damaged file gets a clear error here, not an unpickling trace.
        subcommand = self.config.get("subcommand")
        path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if path and path not in ("last", "best", "hpc", "registry"):
            check_checkpoint_file(path)
        super()._parse_ckpt_path()

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        arch = config.model.arch
        card = model_card(arch)  # fails here, clearly, on an unknown name
        data_args = config.data.init_args
        if data_args.get("image_size") is None:
            data_args.image_size = card.input_size[-1]
        if card.min_input_size and data_args.image_size < card.min_input_size:
            raise InputShapeError(
                f"{arch} needs images of at least {card.min_input_size}x{card.min_input_size} "
                f"(its paper used {card.input_size[1]}x{card.input_size[2]}); "
                f"--data.image_size is {data_args.image_size}. Leave it out to use the paper's."
            )
        self._apply_wandb_options(config)
        self._choose_progress_bar(config)
        has_clock = False
        for callback in config.trainer.callbacks or []:
            class_path = getattr(callback, "class_path", "")
            is_checkpoint = class_path.endswith(("ModelCheckpoint", "LastCheckpoint"))
            if class_path.endswith("LastCheckpoint"):
                callback.init_args.every_n_train_steps = config.checkpoint_every_n_steps
            if class_path.endswith("RunClock"):
                has_clock = True
                if config.get("sitting_minutes") is not None:
                    callback.init_args.sitting_minutes = config.sitting_minutes
            if is_checkpoint and callback.init_args.get("dirpath") is None:
                callback.init_args.dirpath = f"{config.trainer.default_root_dir}/{arch}/checkpoints"
        if config.get("sitting_minutes") is not None and not has_clock:  # callbacks replaced
            clock = Namespace(class_path="cnnzoo.sittings.RunClock")
            clock.init_args = Namespace(sitting_minutes=config.sitting_minutes)
            config.trainer.callbacks = [*(config.trainer.callbacks or []), clock]
        resumed = self._resumed_log_versions(config)
        for logger in config.trainer.logger or []:
            if isinstance(logger, dict) or not hasattr(logger, "init_args"):
                continue
            if logger.init_args.get("name") in (None, "lightning_logs"):
                logger.init_args.name = arch
            if logger.init_args.get("save_dir") == RUNS:  # follow --trainer.default_root_dir
                logger.init_args.save_dir = config.trainer.default_root_dir
            if logger.class_path.endswith("CSVLogger") and "csv" in resumed:
                logger.init_args.version = resumed["csv"]
            if logger.class_path.endswith("WandbLogger") and "wandb" in resumed:
                logger.init_args.id = resumed["wandb"]

    @staticmethod
    def _choose_progress_bar(config) -> None:
        """The live bar on a terminal; plain lines at an interval when the output goes to a
        file (a live bar there shows nothing until the epoch ends); none when the trainer
        has the bar switched off (Lightning refuses one then)."""
        off = config.trainer.get("enable_progress_bar") is False
        kept = []
        for callback in config.trainer.callbacks or []:
            if getattr(callback, "class_path", "") == "cnnzoo.callbacks.ProgressBar":
                if off:
                    continue
                if not sys.stdout.isatty():
                    callback = Namespace(class_path="cnnzoo.callbacks.ProgressLines")
            kept.append(callback)
        config.trainer.callbacks = kept

    def _resumed_log_versions(self, config) -> dict:
        """The CSV log version (and W&B run id, after a clean sitting) of the run that
        `fit --ckpt_path` resumes, so that its curves go on in the same log and W&B run."""
        path = config.get("ckpt_path") if self.subcommand == "fit" else None
        if path == "last":  # where LastCheckpoint writes it (its dirpath, set above)
            folders = [
                callback.init_args.get("dirpath")
                for callback in config.trainer.callbacks or []
                if getattr(callback, "class_path", "").endswith("LastCheckpoint")
            ]
            folder = next(filter(None, folders), None)
            path = f"{folder}/last.ckpt" if folder else None
        if not path or path in ("best", "hpc", "registry"):
            return {}
        return continued_log_versions(path)

    @staticmethod
    def _apply_wandb_options(config) -> None:
        options = config.get("wandb")
        loggers = config.trainer.logger
        if options is None or not isinstance(loggers, list):
            return
        is_wandb = [getattr(lg, "class_path", "").endswith("WandbLogger") for lg in loggers]
        if not options.enabled:
            config.trainer.logger = [lg for lg, w in zip(loggers, is_wandb, strict=True) if not w]
            return
        for logger, wandb in zip(loggers, is_wandb, strict=True):
            if not wandb:
                continue
            for key, value in vars(options).items():
                if key != "enabled" and value is not None:
                    logger.init_args[key] = value

    def after_fit(self) -> None:
        if not self.config.fit.get("test_after_fit", True) or self.trainer.interrupted:
            return
        clock = run_clock(self.trainer)
        if clock is not None and clock.stopped_for_time:  # tested when the last sitting ends
            return
        checkpoint = self.trainer.checkpoint_callback
        which = self.config.fit.get("test_ckpt", "best")
        if checkpoint is None:
            path = ""
        else:
            path = checkpoint.best_model_path if which == "best" else checkpoint.last_model_path
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=path or None)


def run_clock(trainer) -> RunClock | None:
    return next((cb for cb in trainer.callbacks if isinstance(cb, RunClock)), None)


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
    if argv[:1] == ["export"]:
        from cnnzoo_classify.export import main as export_main

        return export_main(argv[1:])
    if argv[:1] == ["explain"]:
        try:
            from cnnzoo_explain.cli import main as explain_main
        except ImportError as exc:
            raise SystemExit(
                f"`cnnzoo explain` needs the cnnzoo-explain package: pip install cnnzoo-explain "
                f"({exc})"
            ) from exc
        return explain_main(argv[1:])
    if argv[:1] in (["reproduce"], ["report"]):
        from cnnzoo_classify import report, reproduce

        return (reproduce if argv[0] == "reproduce" else report).main(argv[1:])
    cli = make_cli(argv)
    clock = run_clock(cli.trainer) if cli.subcommand == "fit" else None
    return SITTING_ENDED if clock is not None and clock.stopped_for_time else 0


def _no_tips(record: logging.LogRecord) -> bool:
    """Leave out Lightning's advertisements ("Tip: try installing litlogger ...")."""
    return "Tip: " not in record.getMessage()


def make_cli(argv: list[str], run: bool = True) -> CnnzooCLI:
    """Run a LightningCLI subcommand (fit, validate, test, predict) and return the CLI, whose
    trainer, model and data module hold what the run ended with. With `run=False`, `argv`
    has no subcommand and the CLI only builds them (benchmarks time their own `fit`)."""
    # `argv` is the command line, passed on: not the mix of two that LightningCLI warns of.
    warnings.filterwarnings("ignore", "LightningCLI's args parameter is intended")
    # Lightning 2.6 asks torch's pytree in a way torch 2.14 deprecates: nothing a user can
    # change, printed at every run.
    warnings.filterwarnings("ignore", r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_no_tips)
    return CnnzooCLI(
        ImageClassifier,
        ClassificationDataModule,
        subclass_mode_data=True,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        args=_expand_recipe_names(argv),
        run=run,
    )


# What a user can act on: our own errors, and a training that blew up (its message says what
# to do). Anything else is a bug, and keeps its traceback.
USER_ERRORS = (CnnzooError, FloatingPointError)
DEBUG_FLAG = "--debug"


def user_error(exc: BaseException) -> BaseException | None:
    """The user-facing error in `exc`'s chain: jsonargparse and Lightning re-raise ours
    inside their own (a data module's check fails while the config is instantiated)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, USER_ERRORS):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def error_message(error: BaseException) -> str:
    """The error's own words: without the quotes str() gives a KeyError, and without the
    worker's traceback that a DataLoader puts before an error raised in its processes."""
    text = error.args[0] if len(error.args) == 1 and isinstance(error.args[0], str) else str(error)
    if "Original Traceback" in text:
        text = text.rsplit(f"{type(error).__name__}: ", 1)[-1]
    return text.strip()


def _finish_wandb_run() -> None:
    """Close a W&B run as failed, so that its own closing lines come before our message."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish(exit_code=1)


def run(argv: list[str] | None = None) -> int:
    """The `cnnzoo` command: `main`, with an error the user can act on printed as one message,
    last, and exit status 1; the traceback with --debug or CNNZOO_DEBUG=1."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in argv or os.environ.get("CNNZOO_DEBUG", "") not in ("", "0")
    argv = [arg for arg in argv if arg != DEBUG_FLAG]
    try:
        return main(argv)
    except Exception as exc:
        error = user_error(exc)
        if error is None or debug:
            raise
        _finish_wandb_run()
        print(
            f"\ncnnzoo: error: {error_message(error)} ({DEBUG_FLAG} shows the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(run())
