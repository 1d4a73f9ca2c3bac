"""`cnnzoo reproduce`: run a paper's recipe and write one row, our error next to the paper's.

    cnnzoo reproduce lenet5_mnist --data.root ../shared/data/mnist
    cnnzoo reproduce resnet20 --dataset cifar10 --trainer.max_epochs 5   # a short schedule
    cnnzoo report                                                        # all rows, a table

The first argument is a recipe (`cnnzoo recipes`) or a model with `--dataset`, which picks
that model's recipe for the dataset. Every other option goes to `cnnzoo fit` unchanged. The
row (JSON lines, appended to `--results`) holds the test errors, the paper's for the same
dataset, epochs, wall time, hardware, git commit, W&B run id, the per-epoch curves and the
exact command, so that a table made from it says how to make each row again. The row is
also logged to the run's W&B as a table.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import re
import shlex
import subprocess
import time
from pathlib import Path
from typing import Any

import torch
from cnnzoo import CnnzooError, list_models, model_card
from cnnzoo.card import ModelCard, PublishedError
from cnnzoo.complexity import count_params
from cnnzoo.loggers import WandbLogger
from cnnzoo.recipes import find_recipe, list_recipes, read_recipe, recipe_data
from cnnzoo.runs import run_clock
from cnnzoo.sittings import SITTING_ENDED

from cnnzoo_classify.trainer import make_cli

RESULTS = "runs/reproductions.jsonl"


class SittingEnded(CnnzooError):
    """The run stopped at its sitting's time limit: resume it for the row."""


# ImageNet is read from a folder tree; papers call its validation set ILSVRC-2012.
_SAME_DATASET = {"imagenet": "imagefolder", "ilsvrc2012": "imagefolder"}


def _dataset_key(name: str) -> str:
    """A dataset's name reduced to its first word without punctuation, so that a paper's
    "CIFAR-10+ (standard augmentation)" meets "cifar10", and "ILSVRC-2012 val", "imagenet"
    and "ImageFolder" meet each other."""
    first = name.split()[0] if name.split() else ""
    key = re.sub(r"[^a-z0-9]", "", first.lower())
    return _SAME_DATASET.get(key, key)


def paper_error(card: ModelCard, dataset: str, recipe: str = "") -> PublishedError | None:
    """The card's published error on `dataset` (its first word, as papers name it) that
    `recipe` reproduces: the row that names the recipe, or else the first that names none."""
    key = _dataset_key(dataset)
    rows = [e for e in card.published_errors if _dataset_key(e.dataset) == key]
    named = [e for e in rows if recipe and e.recipe == recipe]
    return next(iter(named or [e for e in rows if not e.recipe]), None)


def _recipe_summary(path: Path) -> tuple[str | None, str]:
    return (read_recipe(path).get("model") or {}).get("arch"), recipe_data(path)[0]


def recipe_for(model: str, dataset: str) -> Path:
    """The installed recipe that trains `model` on `dataset` ("cifar10", "mnist"...)."""
    key = _dataset_key(dataset)
    # A recipe that a published row names (LeNet-5's distortions) is run by its own name.
    card = model_card(model) if model in list_models() else None
    rows = {e.recipe for e in card.published_errors} if card else set()
    found = []
    for path in list_recipes().values():
        arch, data_class = _recipe_summary(path)
        same_data = _dataset_key(data_class.removesuffix("DataModule")) == key
        if arch == model and same_data and path.stem not in rows:
            found.append(path)
    if len(found) != 1:
        ours = [p.stem for p in list_recipes().values() if _recipe_summary(p)[0] == model]
        problem = "no recipe" if not found else f"{len(found)} recipes ({found})"
        raise CnnzooError(
            f"{problem} trains {model} on {dataset!r}; {model}'s recipes: "
            f"{', '.join(ours) or 'none'}. Name a recipe instead (`cnnzoo recipes` lists them)."
        )
    return found[0]


def hardware() -> dict[str, Any]:
    """The device the run trained on, in words, with what decides its speed."""
    if torch.cuda.is_available():
        device = torch.cuda.get_device_name()
        count = torch.cuda.device_count()
        return {"device": f"{count} x {device}" if count > 1 else device, "accelerator": "cuda"}
    cpu = platform.processor() or platform.machine()
    with open("/proc/cpuinfo") if Path("/proc/cpuinfo").exists() else open(os.devnull) as info:
        names = [line.split(":", 1)[1].strip() for line in info if line.startswith("model name")]
    cpu = names[0] if names else cpu
    return {
        "device": f"{cpu}, {torch.get_num_threads()} threads ({os.cpu_count()} cores)",
        "accelerator": "cpu",
    }


def git_commit() -> str | None:
    """The commit of the cnnzoo code that ran (a source checkout's HEAD, "+dirty" with
    uncommitted changes); for installed wheels, CNNZOO_GIT_COMMIT where the installer set it
    to the commit they were built from (benchmarks/device does), else None."""
    here = Path(__file__).parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=here, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        head = git("rev-parse", "--short=12", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("CNNZOO_GIT_COMMIT")
    return f"{head}+dirty" if dirty else head


def curves(metrics_csv: Path) -> dict[str, list[float]]:
    """Per-epoch validation top-1 error (percent) and mean training loss, from the CSV log
    (one log over all sittings: a resumed run appends to it)."""
    by_epoch: dict[int, dict[str, float]] = {}
    with open(metrics_csv, newline="") as file:
        for row in csv.DictReader(file):
            epoch = by_epoch.setdefault(int(row["epoch"] or -1), {})
            for key in ("val/top1_error", "train/loss_epoch"):
                if row.get(key):  # the last wins: an epoch redone after a resume
                    epoch[key] = float(row[key])
    epochs = sorted(e for e, values in by_epoch.items() if e >= 0 and "val/top1_error" in values)
    return {
        "epoch": [e + 1 for e in epochs],
        "val_top1_error": [round(100 * by_epoch[e]["val/top1_error"], 4) for e in epochs],
        "train_loss": [_rounded(by_epoch[e].get("train/loss_epoch"), 5) for e in epochs],
    }


def _rounded(value: Any, digits: int) -> float | None:
    return None if value is None else round(float(value), digits)


def _percent(value: Any) -> float | None:
    return None if value is None else round(100 * float(value), 4)


# Not part of what makes the row again: the note is kept in the row apart, and a sitting's
# resume is how the run was cut, not what it ran.
_SITTING_OPTIONS = ("--note", "--ckpt_path")


def _remade_by(argv: list[str]) -> list[str]:
    """The arguments that make the row again: all but `_SITTING_OPTIONS`."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in _SITTING_OPTIONS:
            skip = True
        elif not arg.startswith(tuple(f"{option}=" for option in _SITTING_OPTIONS)):
            kept.append(arg)
    return kept


def reproduce(argv: list[str]) -> dict[str, Any]:
    """Run the recipe through `cnnzoo fit` (which tests after fitting) and return the row."""
    parser = argparse.ArgumentParser(
        prog="cnnzoo reproduce",
        description="Run a paper's recipe; append our error next to the paper's to --results.",
        epilog="Every other option goes to `cnnzoo fit` (e.g. --trainer.max_epochs 5).",
    )
    parser.add_argument("recipe", help="a recipe name or YAML path, or a model with --dataset")
    parser.add_argument("--dataset", help="with a model name: the dataset whose recipe to run")
    parser.add_argument(
        "--paper_dataset",
        help="the dataset as the paper's table names it (default: the data module's), "
        'e.g. "ILSVRC-2012 val" for an ImageNet folder',
    )
    parser.add_argument(
        "--note",
        help="a remark kept with the row and shown by `cnnzoo report`, e.g. what else ran on "
        "the machine (wall times depend on it) or why the schedule was shortened",
    )
    parser.add_argument("--results", default=RESULTS, help=f"JSON-lines file (default {RESULTS})")
    options, fit_args = parser.parse_known_args(argv)
    recipe = recipe_for(options.recipe, options.dataset) if options.dataset else None
    recipe = recipe or find_recipe(options.recipe)

    commit = git_commit()  # before the run: the code that trains, whatever changes meanwhile
    start = time.perf_counter()
    cli = make_cli(["fit", "--config", str(recipe), *fit_args, "--test_after_fit=true"])
    trainer, model, data = cli.trainer, cli.model, cli.datamodule
    clock = run_clock(trainer)
    # The earlier sittings' time, as their checkpoints recorded it, and all of this one's.
    wall_time = (clock.earlier_s if clock else 0.0) + time.perf_counter() - start
    if trainer.interrupted:
        raise CnnzooError(
            "the run was interrupted: no row written. Run the same command with "
            "--ckpt_path last to go on from its last checkpoint."
        )
    if clock is not None and clock.stopped_for_time:
        raise SittingEnded(
            f"this sitting ended at epoch {trainer.current_epoch} (step {trainer.global_step}) "
            f"with the schedule unfinished: no row yet. Run the same command with --ckpt_path "
            f"last to go on; the row is written when the last sitting ends."
        )
    tested = trainer.callback_metrics
    if "test/top1_error" not in tested:
        raise CnnzooError("the run ended without a test result: no row written.")

    arch = model.hparams.arch
    card = model_card(arch)
    dataset = options.paper_dataset or data.dataset_name
    paper = paper_error(card, dataset, recipe.stem)
    csv_logger = next((lg for lg in trainer.loggers if type(lg).__name__ == "CSVLogger"), None)
    wandb_logger = next((lg for lg in trainer.loggers if isinstance(lg, WandbLogger)), None)
    row = {
        "model": arch,
        "recipe": recipe.stem,
        "dataset": data.dataset_name,
        "evaluation": getattr(data, "test_crops", "center"),
        "top1_error": _percent(tested["test/top1_error"]),
        "top5_error": _percent(tested.get("test/top5_error")),
        "paper_top1_error": paper.top1 if paper else None,
        "paper_top5_error": paper.top5 if paper else None,
        "paper_evaluation": paper.evaluation if paper else None,
        "paper_source": paper.source if paper else None,
        "params": count_params(model.model),
        "published_params": card.published_params,
        "epochs": trainer.current_epoch,
        "steps": trainer.global_step,
        "wall_time_s": round(wall_time, 1),
        "sittings": clock.sittings if clock else 1,
        **hardware(),
        "git_commit": commit,
        "wandb_run_id": wandb_logger.experiment.id if wandb_logger else None,
        "date": datetime.date.today().isoformat(),
        "command": shlex.join(["cnnzoo", "reproduce", *_remade_by(argv)]),
        "note": options.note,
        "curves": curves(Path(csv_logger.log_dir) / "metrics.csv") if csv_logger else {},
    }
    if wandb_logger is not None:
        wandb_logger.log_rows("reproduction", [{k: v for k, v in row.items() if k != "curves"}])
    results = Path(options.results)
    results.parent.mkdir(parents=True, exist_ok=True)
    with open(results, "a") as file:
        file.write(json.dumps(row) + "\n")
    return row


def main(argv: list[str]) -> int:
    try:
        row = reproduce(argv)
    except SittingEnded as ended:
        print(ended)
        return SITTING_ENDED
    paper = row["paper_top1_error"]
    print(
        f"{row['model']} on {row['dataset']}: top-1 error {row['top1_error']:.2f}% "
        f"(paper: {'—' if paper is None else f'{paper:.2f}%'}) after {row['epochs']} epochs in "
        f"{row['wall_time_s'] / 60:.1f} min on {row['device']}; row appended to the results "
        f"file (`cnnzoo report` renders them)."
    )
    return 0
