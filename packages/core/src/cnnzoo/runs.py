"""The run framework under both commands, `cnnzoo` (classification) and `cnnzoo-detect`.

The trainer is `cnnzoo.run_trainer.RunTrainer`, which keeps a run in
`<default_root_dir>/<run name>/` and resumes it into the same logs. Here are its defaults:
`checkpoints/` (the best by the monitored metric, and `last.ckpt` written atomically at every
epoch end and every n steps), the CSV log and the W&B run, the run clock over sittings
(`--sitting_minutes`, exit status 75 while the schedule goes on), exact resume, and a test of
a checkpoint after `fit`. A command is a `RunCLI` subclass that names its runs, its monitored
metric and its own callbacks; everything else is here, once.

LightningCLI needs jsonargparse (`lightning[pytorch-extra]`, the `cli` extra of cnnzoo).
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from jsonargparse import Namespace
from lightning.pytorch.cli import LightningCLI

from cnnzoo.checkpoint import check_checkpoint_file
from cnnzoo.errors import CnnzooError
from cnnzoo.loggers import RUNS
from cnnzoo.run_trainer import RunTrainer
from cnnzoo.sittings import SITTING_ENDED, RunClock

LAST_EVERY_N_STEPS = 1000  # mid-epoch `last.ckpt`: at most this many steps lost to a kill


@dataclass
class WandbOptions:
    """`--wandb.*`: the W&B logger's options (None leaves the logger's or a recipe's own).

    Args:
        enabled: False drops the W&B logger (the CSV logger stays).
        project, entity, name, group, tags, notes: where and how the run appears in W&B
            (name defaults to the run's name).
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


def _no_tips(record: logging.LogRecord) -> bool:
    """Leave out Lightning's advertisements ("Tip: try installing litlogger ...")."""
    return "Tip: " not in record.getMessage()


def _silence_what_users_cannot_change() -> None:
    # `args` is the command line, passed on: not the mix of two that LightningCLI warns of.
    warnings.filterwarnings("ignore", "LightningCLI's args parameter is intended")
    # Lightning 2.6 asks torch's pytree in a way torch 2.14 deprecates: nothing a user can
    # change, printed at every run.
    warnings.filterwarnings("ignore", r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_no_tips)


class RunCLI(LightningCLI):
    """LightningCLI with cnnzoo's runs: the folder layout, checkpoints, logs, the run clock,
    W&B options, resuming into the same log, and a test after `fit`.

    A subclass sets the class attributes below and `run_name`, and may add its own
    arguments (`add_run_arguments`) and config checks (`check_config`).
    """

    best_monitor: str  # the metric that picks the best checkpoint
    best_mode: Literal["min", "max"]
    best_filename: str  # the best checkpoints' file names, e.g. "epoch{epoch:03d}-..."
    run_max_epochs: int = 10
    default_data: str | None = None  # a data module's class path, or None: --data is needed
    run_callbacks: tuple[dict[str, Any], ...] = ()  # the command's own, after the shared ones

    def __init__(self, *args, **kwargs) -> None:
        _silence_what_users_cannot_change()
        kwargs.setdefault("trainer_class", RunTrainer)
        kwargs.setdefault("subclass_mode_data", True)
        kwargs.setdefault("seed_everything_default", 0)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        super().__init__(*args, **kwargs)

    def run_name(self, config: Namespace) -> str:
        """The run's folder under the root directory, and its loggers' name."""
        raise NotImplementedError

    def add_run_arguments(self, parser) -> None:
        """The command's own arguments."""

    def check_config(self, config: Namespace) -> None:
        """Check or complete the parsed config before anything is built."""

    @classmethod
    def run_trainer_defaults(cls) -> dict[str, Any]:
        """The trainer's defaults, set on the parser (not as LightningCLI's trainer_defaults)
        so that recipes and the command line can change or replace every one of them."""
        best = {
            "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
            "init_args": {
                "monitor": cls.best_monitor,
                "mode": cls.best_mode,
                "filename": cls.best_filename,
                "auto_insert_metric_name": False,
            },
        }
        return {
            "trainer.default_root_dir": RUNS,
            "trainer.max_epochs": cls.run_max_epochs,
            # Checkpoints written atomically: a kill during the write leaves the last one whole.
            "trainer.plugins": [{"class_path": "cnnzoo.checkpoint.AtomicCheckpointIO"}],
            "trainer.logger": [
                # The CSV log that a resumed run goes on writing (its version is in the clock).
                {"class_path": "cnnzoo.loggers.CSVLogger"},
                {"class_path": "cnnzoo.loggers.WandbLogger"},
            ],
            "trainer.callbacks": [
                best,
                # last.ckpt after every epoch and every n steps, to resume from (`--ckpt_path
                # last`): since Lightning 2.6 `save_last` of a checkpoint that monitors a
                # metric writes it only when the metric improves.
                {"class_path": "cnnzoo.checkpoint.LastCheckpoint"},
                {"class_path": "lightning.pytorch.callbacks.LearningRateMonitor"},
                # The run's clock and log names in its checkpoints: a resumed run goes on
                # with both.
                {"class_path": "cnnzoo.sittings.RunClock"},
                # The RNG states and the loader's position: a run resumed mid-epoch ends on
                # the weights an uninterrupted one would have.
                {"class_path": "cnnzoo.resume.ExactResume"},
                # The training loss as the loggers last wrote it, read from the device only then.
                {"class_path": "cnnzoo.callbacks.ProgressBar"},
                *cls.run_callbacks,
            ],
        }

    def add_arguments_to_parser(self, parser) -> None:
        if self.default_data is not None:
            parser.set_defaults({"data": {"class_path": self.default_data}})
        parser.set_defaults(self.run_trainer_defaults())
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
            help="which checkpoint to test after fit: best by the monitored metric, or the "
            "last (when validation watches the test split, as in papers that trained on all "
            "data)",
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
        # The trainer's own (RunTrainer), under the names the command has always had.
        parser.link_arguments("sitting_minutes", "trainer.sitting_minutes")
        parser.link_arguments("checkpoint_every_n_steps", "trainer.checkpoint_every_n_steps")
        self.add_run_arguments(parser)

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
        self.check_config(config)
        self._apply_wandb_options(config)
        self._choose_progress_bar(config)

    def instantiate_trainer(self, **kwargs) -> RunTrainer:
        # The run's name from its model unless given: given to the trainer, not written into
        # the config, so that the saved config trains another model under that one's name.
        config = self.config[self.subcommand] if self.subcommand else self.config
        if config.trainer.get("run_name") is None:
            kwargs.setdefault("run_name", self.run_name(config))
        return super().instantiate_trainer(**kwargs)

    @staticmethod
    def _choose_progress_bar(config: Namespace) -> None:
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

    @staticmethod
    def _apply_wandb_options(config: Namespace) -> None:
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
        which = self.test_checkpoint()
        if checkpoint is None:
            path = ""
        else:
            path = checkpoint.best_model_path if which == "best" else checkpoint.last_model_path
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=path or None)

    def test_checkpoint(self) -> Literal["best", "last"]:
        """Which checkpoint `fit` tests: --test_ckpt."""
        return self.config.fit.get("test_ckpt", "best")

    def exit_status(self) -> int:
        """0, or SITTING_ENDED (75) when `fit` stopped for its sitting's time: run again."""
        clock = run_clock(self.trainer) if self.subcommand == "fit" else None
        return SITTING_ENDED if clock is not None and clock.stopped_for_time else 0


def run_clock(trainer) -> RunClock | None:
    return next((cb for cb in trainer.callbacks if isinstance(cb, RunClock)), None)


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


def run_command(main: Callable[[list[str]], int], prog: str, argv: list[str] | None) -> int:
    """A console script: `main(argv)`, with an error the user can act on printed as one
    message, last, and exit status 1; the traceback with --debug or CNNZOO_DEBUG=1."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in argv or os.environ.get("CNNZOO_DEBUG", "") not in ("", "0")
    argv = [arg for arg in argv if arg != DEBUG_FLAG]
    try:
        return main(argv)
    except BrokenPipeError:
        # `cnnzoo models | head`: the reader has what it wanted. Python's own advice: point
        # standard output at /dev/null, so that the flush at exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:
        error = user_error(exc)
        if error is None or debug:
            raise
        _finish_wandb_run()
        print(
            f"\n{prog}: error: {error_message(error)} ({DEBUG_FLAG} shows the traceback)",
            file=sys.stderr,
        )
        return 1
