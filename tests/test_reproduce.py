"""`cnnzoo reproduce` and `cnnzoo report`: a recipe run on real MNIST becomes one row with
the paper's figure beside ours, the row is logged to W&B, and the report renders it."""

from __future__ import annotations

import csv
import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import torch
from cnnzoo import CnnzooError, model_card
from cnnzoo.sittings import SITTING_ENDED, saved_clock
from cnnzoo_classify import report
from cnnzoo_classify.reproduce import paper_error, recipe_for
from conftest import run_cnnzoo

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory, mnist_root) -> tuple[Path, list[str]]:
    """A short `cnnzoo reproduce lenet5 --dataset mnist`: 2 epochs of 20 batches."""
    cwd = tmp_path_factory.mktemp("reproduce")
    args = [
        "reproduce",
        "lenet5",
        "--dataset=mnist",
        f"--data.root={mnist_root}",
        "--data.num_workers=0",
        "--trainer.max_epochs=2",
        "--trainer.limit_train_batches=20",
        "--trainer.limit_val_batches=4",
        "--trainer.limit_test_batches=8",
        "--note=(20 batches an epoch: a test)",
        f"--results={cwd / 'results.jsonl'}",
    ]
    assert run_cnnzoo(args, cwd) == 0
    return cwd, args


def rows(cwd: Path) -> list[dict]:
    return [json.loads(line) for line in (cwd / "results.jsonl").read_text().splitlines()]


def test_a_reproduction_writes_our_error_next_to_the_papers(reproduced):
    cwd, args = reproduced
    (row,) = rows(cwd)
    assert (row["model"], row["recipe"], row["dataset"]) == ("lenet5", "lenet5_mnist", "MNIST")
    assert row["paper_top1_error"] == 0.95  # LeCun et al. 1998, §III.C
    assert row["paper_source"] == model_card("lenet5").published_errors[0].source
    (log_dir,) = (cwd / "runs" / "lenet5").glob("version_*")
    with open(log_dir / "metrics.csv", newline="") as file:
        logged = [r for r in csv.DictReader(file)]
    tested = [float(r["test/top1_error"]) for r in logged if r.get("test/top1_error")]
    assert row["top1_error"] == pytest.approx(100 * tested[-1], abs=1e-3)
    validated = [100 * float(r["val/top1_error"]) for r in logged if r.get("val/top1_error")]
    assert row["curves"]["epoch"] == [1, 2]
    assert row["curves"]["val_top1_error"] == pytest.approx(validated, abs=1e-3)
    assert row["epochs"] == 2 and row["steps"] == 40
    assert row["params"] == row["published_params"] == 60_000
    assert row["accelerator"] == "cpu" and "threads" in row["device"]
    assert shlex.split(row["command"]) == ["cnnzoo", *(a for a in args if "--note" not in a)]
    assert row["note"] == "(20 batches an epoch: a test)"
    head = subprocess.run(
        ["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    assert row["git_commit"].removesuffix("+dirty") == head


def test_the_row_is_logged_to_the_runs_wandb_table(reproduced):
    cwd, _ = reproduced
    (row,) = rows(cwd)
    (run,) = (cwd / "runs" / "wandb").glob(f"offline-run-*-{row['wandb_run_id']}")
    (table,) = run.glob("files/media/table/reproduction_*.table.json")
    logged = json.loads(table.read_text())
    (values,) = logged["data"]
    as_logged = dict(zip(logged["columns"], values, strict=True))
    assert as_logged["top1_error"] == row["top1_error"]
    assert as_logged["paper_top1_error"] == 0.95
    assert "curves" not in as_logged


def test_the_report_renders_the_rows_and_their_pictures(reproduced, capsys):
    cwd, _ = reproduced
    results = cwd / "results.jsonl"
    (row,) = rows(cwd)
    assert report.main(["--results", str(results)]) == 0
    printed = capsys.readouterr().out
    assert f"**{row['top1_error']:.2f}** (0.95)" in printed
    assert row["wandb_run_id"] in printed
    page = cwd / "docs" / "results.md"
    assert report.main(["--results", str(results), "--write", str(page)]) == 0
    text = page.read_text()
    assert f"1. `{row['command']}` (20 batches an epoch: a test)" in text
    for picture in ("error_vs_params.png", "curves.png"):
        assert f"images/results/{picture}" in text
        assert (page.parent / "images" / "results" / picture).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.bad_input
def test_a_reproduction_in_two_sittings_writes_the_same_row_as_one_straight_run(
    reproduced, tmp_path
):
    """A sitting's time limit ends the run after an epoch (exit 75, no row); the same command
    with --ckpt_path last goes on in the same CSV log and W&B run, and the row it writes has
    the straight run's errors and curves and the time of both sittings."""
    straight_cwd, args = reproduced
    (straight,) = rows(straight_cwd)
    sitting = [*args[:-1], f"--results={tmp_path / 'results.jsonl'}", "--sitting_minutes=1e-4"]
    assert run_cnnzoo(sitting, tmp_path) == SITTING_ENDED  # another epoch would not fit
    assert not (tmp_path / "results.jsonl").exists()
    last = tmp_path / "runs" / "lenet5" / "checkpoints" / "last.ckpt"
    first = saved_clock(last)
    assert first["sittings"] == 1 and first["log_versions"]["csv"] == 0
    assert torch.load(last, map_location="cpu", weights_only=False)["epoch"] == 0

    assert run_cnnzoo([*sitting, "--ckpt_path=last"], tmp_path) == 0  # the last epoch: done
    (row,) = rows(tmp_path)
    assert row["sittings"] == 2 and (row["epochs"], row["steps"]) == (2, 40)
    assert row["top1_error"] == pytest.approx(straight["top1_error"], abs=1e-6)
    assert row["curves"] == straight["curves"]
    assert row["wall_time_s"] > first["wall_time_s"]
    assert "--ckpt_path" not in row["command"]  # the row is made again in one straight run
    runs = tmp_path / "runs"
    assert [d.name for d in (runs / "lenet5").glob("version_*")] == ["version_0"]
    wandb_runs = list((runs / "wandb").glob("offline-run-*"))
    assert len(wandb_runs) == 2
    # offline-run-<date>_<time>-<run id>, and "-1" after it when both sittings started
    # within the same second.
    run_ids = {re.fullmatch(r"offline-run-\d{8}_\d{6}-(\w+)(-\d+)?", d.name)[1] for d in wandb_runs}
    assert run_ids == {row["wandb_run_id"]}


def test_the_papers_row_is_the_one_for_the_same_dataset():
    card = model_card("densenet_bc100_k12")
    assert paper_error(card, "CIFAR-10").top1 == 4.51  # "CIFAR-10+ (standard augmentation)"
    assert paper_error(card, "CIFAR-100").top1 == 22.27
    assert paper_error(card, "MNIST") is None
    assert paper_error(model_card("alexnet"), "ILSVRC-2012 val").top5 == 18.2


def test_a_model_and_dataset_name_their_recipe():
    assert recipe_for("lenet5", "mnist").stem == "lenet5_mnist"
    assert recipe_for("lenet5", "digits").stem == "lenet5_digits"
    assert recipe_for("resnet20", "cifar10").stem == "resnet20_cifar10"
    assert recipe_for("resnet50", "imagenet").stem == "resnet50_imagenet"  # an ImageFolder


@pytest.mark.bad_input
def test_a_model_without_a_recipe_for_the_dataset_is_refused_with_its_recipes():
    with pytest.raises(CnnzooError, match=r"no recipe trains lenet5 on 'cifar10'.*lenet5_mnist"):
        recipe_for("lenet5", "cifar10")


@pytest.mark.bad_input
def test_a_missing_or_corrupt_results_file_is_named(tmp_path):
    with pytest.raises(CnnzooError, match=r"no results file at .*cnnzoo reproduce"):
        report.main(["--results", str(tmp_path / "none.jsonl")])
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"model": "lenet5"}\n{"model": \n')
    with pytest.raises(CnnzooError, match="line 2, is not a JSON row"):
        report.main(["--results", str(broken)])
