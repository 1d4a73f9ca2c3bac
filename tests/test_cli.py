"""The `cnnzoo` command end to end, run in this process: the models table, recipes by name,
a fit on the digits with everything it writes, clear errors, and resuming a run."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
import torch
import yaml
from cnnzoo import CnnzooError, ModelNotFoundError, list_models
from cnnzoo.recipes import list_recipes
from cnnzoo.sittings import SITTING_ENDED
from cnnzoo_classify.cli import main
from conftest import run_cnnzoo

# A short fit: a few batches an epoch, no loader processes, a rate LeNet-5 learns with.
QUICK = [
    "--trainer.limit_train_batches=5",
    "--trainer.limit_val_batches=2",
    "--data.num_workers=0",
    "--model.optimizer.lr=0.003",
]
PAPER_ROWS = {  # model: (year, our parameter count as the table prints it)
    "lenet5": ("1998", "60,000"),
    "lenet5_relu": ("1998", "61,706"),
    "alexnet": ("2012", "60.965M"),
    "alexnet_owt": ("2014", "61.101M"),
}


def read_metrics(log_dir: Path) -> list[dict[str, str]]:
    with open(log_dir / "metrics.csv", newline="") as file:
        return list(csv.DictReader(file))


def weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> Path:
    """`cnnzoo fit` for two epochs on the digits (the default data), writing under cwd/runs."""
    cwd = tmp_path_factory.mktemp("cli")
    root = cwd / "runs"
    run_cnnzoo(["fit", "--trainer.max_epochs=2", f"--trainer.default_root_dir={root}", *QUICK], cwd)
    return root


@pytest.fixture
def wide_terminal(monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "300")  # rich draws the whole table without folding


def printed_rows(text: str) -> dict[str, list[str]]:
    """The rows of a rich or Markdown table, by model name."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.replace("│", "|").strip("| ").split("|")]
        if cells and cells[0] in PAPER_ROWS:
            rows[cells[0]] = cells
    return rows


def test_models_table_lists_every_model_with_year_and_parameters(capsys, wide_terminal):
    assert main(["models", "--wide"]) == 0
    rows = printed_rows(capsys.readouterr().out)
    assert set(rows) >= set(PAPER_ROWS)
    for name, (year, params) in PAPER_ROWS.items():
        assert year in rows[name], name
        assert params in rows[name], name


def test_models_pattern_and_markdown(capsys, wide_terminal):
    assert main(["models", "alex*", "--wide"]) == 0
    assert set(printed_rows(capsys.readouterr().out)) == {"alexnet", "alexnet_owt"}
    assert main(["models", "lenet5*", "--markdown"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| model | paper | year |")
    assert set(lines[1].strip("|").split("|")) == {"---"}
    assert len(lines) == 4
    header = [c.strip() for c in lines[0].strip("| ").split("|")]
    lenet5 = dict(zip(header, [c.strip() for c in lines[2].strip("| ").split("|")], strict=True))
    assert lenet5["model"] == "lenet5"
    assert lenet5["params (ours)"] == lenet5["params (paper)"] == "60,000"
    assert lenet5["top-1 err %"] == "0.95"
    assert main(["models", "nosuchnet*"]) == 1
    assert "no registered model matches 'nosuchnet*'" in capsys.readouterr().out


def test_models_into_a_pipe_is_one_line_per_model_that_grep_finds(capsys):
    """Not a terminal (a pipe, a file): one model per line, at most 100 columns."""
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["model", "year", "params", "MACs", "top-1%", "paper"]
    assert len(lines) == 1 + len(list_models())
    assert all(len(line) <= 100 for line in lines)
    lenet5 = next(line for line in lines if line.startswith("lenet5 "))
    assert lenet5.split()[:5] == ["lenet5", "1998", "60,000", "0.416M", "0.95"]
    assert "Gradient-Based Learning" in lenet5


def test_the_command_lists_every_subcommand(capsys):
    assert main(["--help"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()[2:] if line]
    for subcommand in ("fit", "validate", "test", "predict", "models", "recipes", "reproduce",
                       "report", "explain", "export"):  # fmt: skip
        assert subcommand in listed


@pytest.mark.bad_input
def test_models_table_shows_a_broken_plugin_and_the_others(capsys, fake_plugins):
    fake_plugins("cnnzoo-broken", {"brokennet": "cnnzoo_no_such_module:brokennet"})
    assert main(["models", "--markdown"]) == 0
    out = capsys.readouterr().out
    broken = next(line for line in out.splitlines() if line.startswith("| brokennet |"))
    assert "BROKEN: plugin distribution 'cnnzoo-broken'" in broken
    assert set(printed_rows(out)) >= set(PAPER_ROWS)


def test_recipes_lists_the_installed_recipes(capsys):
    assert main(["recipes"]) == 0
    printed = dict(line.split() for line in capsys.readouterr().out.splitlines())
    assert printed == {name: str(path) for name, path in list_recipes().items()}
    assert all(Path(path).is_file() for path in printed.values())


def test_config_names_a_shipped_recipe(capsys, tmp_path):
    recipe = list_recipes().get("lenet5_digits")
    if recipe is None:
        pytest.skip("the lenet5_digits recipe is not installed")
    with pytest.raises(SystemExit) as exit_info:
        run_cnnzoo(["fit", "--config", "lenet5_digits", "--print_config"], tmp_path)
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    shipped = yaml.safe_load(recipe.read_text())
    assert printed["model"]["arch"] == shipped["model"]["arch"]
    assert printed["model"]["optimizer"]["lr"] == shipped["model"]["optimizer"]["lr"]
    assert printed["data"]["class_path"] == shipped["data"]["class_path"]
    assert printed["trainer"]["max_epochs"] == shipped["trainer"]["max_epochs"]


@pytest.mark.bad_input
def test_an_unknown_recipe_is_refused(tmp_path):
    with pytest.raises(CnnzooError, match="no recipe file or recipe named 'no_such_recipe'"):
        run_cnnzoo(["fit", "--config", "no_such_recipe"], tmp_path)


@pytest.mark.bad_input
def test_an_unknown_arch_suggests_close_names(tmp_path):
    with pytest.raises(ModelNotFoundError, match=r"'lenet'.*Did you mean: lenet5"):
        run_cnnzoo(
            ["fit", "--model.arch=lenet", f"--trainer.default_root_dir={tmp_path}"], tmp_path
        )
    assert os.listdir(tmp_path) == []  # it fails before anything is written


def test_fit_writes_checkpoints_metrics_pictures_and_an_offline_wandb_run(fitted):
    assert sorted(os.listdir(fitted.parent)) == ["runs"]  # every logger follows the root dir
    checkpoints = fitted / "lenet5" / "checkpoints"
    assert (checkpoints / "last.ckpt").is_file()
    assert len(list(checkpoints.glob("epoch*-top1err*.ckpt"))) == 1  # the best by val error
    saved = torch.load(checkpoints / "last.ckpt", map_location="cpu", weights_only=False)
    assert saved["cnnzoo"]["arch"] == "lenet5"
    assert saved["epoch"] == 1
    log_dir = fitted / "lenet5" / "version_0"
    metrics = read_metrics(log_dir)
    val_epochs = [row["epoch"] for row in metrics if row.get("val/top1_error")]
    assert val_epochs == ["0", "1"]
    tested = [row for row in metrics if row.get("test/top1_error")]
    assert len(tested) == 1  # the test after fit
    assert 0 <= float(tested[0]["test/top1_error"]) <= 1
    assert any(row.get("lr-SGD") for row in metrics)  # the learning-rate monitor
    for stage in ("val", "test"):
        assert (log_dir / f"predictions-{stage}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    config = yaml.safe_load((log_dir / "config.yaml").read_text())
    assert config["model"]["arch"] == "lenet5"
    runs = list((fitted / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    assert list(runs[0].glob("run-*.wandb"))


def test_ckpt_path_resumes_a_run_exactly(fitted, tmp_path):
    root = tmp_path / "runs"
    common = [f"--trainer.default_root_dir={root}", "--test_after_fit=false", *QUICK]
    run_cnnzoo(["fit", "--trainer.max_epochs=1", *common], tmp_path)
    last = root / "lenet5" / "checkpoints" / "last.ckpt"
    after_one_epoch = weights(last)
    run_cnnzoo(["fit", "--trainer.max_epochs=2", f"--ckpt_path={last}", *common], tmp_path)
    resumed = weights(last)
    straight = weights(fitted / "lenet5" / "checkpoints" / "last.ckpt")
    assert resumed.keys() == straight.keys()
    assert all(torch.equal(resumed[k], straight[k]) for k in straight)
    assert not all(torch.equal(resumed[k], after_one_epoch[k]) for k in resumed)


@pytest.mark.bad_input
def test_a_sitting_limit_ends_fit_at_an_epoch_end_with_status_75_and_no_test(fitted, tmp_path):
    root = tmp_path / "runs"
    common = [f"--trainer.default_root_dir={root}", "--sitting_minutes=1e-4", *QUICK]
    assert run_cnnzoo(["fit", "--trainer.max_epochs=2", *common], tmp_path) == SITTING_ENDED
    last = root / "lenet5" / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=False)["epoch"] == 0
    logged = read_metrics(root / "lenet5" / "version_0")
    assert not [row for row in logged if row.get("test/top1_error")]  # tested at the end only
    resume = ["fit", "--trainer.max_epochs=2", "--ckpt_path=last", *common]
    assert run_cnnzoo(resume, tmp_path) == 0  # the last epoch always runs to the end
    resumed = weights(last)
    straight = weights(fitted / "lenet5" / "checkpoints" / "last.ckpt")
    assert all(torch.equal(resumed[k], straight[k]) for k in straight)
    logged = read_metrics(root / "lenet5" / "version_0")
    assert [row["epoch"] for row in logged if row.get("test/top1_error")] == ["2"]


def test_a_sitting_limit_holds_when_the_callbacks_are_replaced(tmp_path):
    replaced = '[{"class_path": "lightning.pytorch.callbacks.LearningRateMonitor"}]'
    args = ["fit", "--trainer.max_epochs=2", f"--trainer.callbacks={replaced}", *QUICK]
    args += [f"--trainer.default_root_dir={tmp_path / 'runs'}", "--sitting_minutes=1e-4"]
    assert run_cnnzoo(args, tmp_path) == SITTING_ENDED


def test_predict_needs_only_the_checkpoint(tmp_path):
    """The model comes from the checkpoint (here not the default arch), the predictions go to
    predictions.csv: one row per test digit, its label and the top-5 classes."""
    root = tmp_path / "runs"
    common = [f"--trainer.default_root_dir={root}", "--data.num_workers=0"]
    fit = ["fit", "--model.arch=lenet5_relu", "--trainer.max_epochs=1", "--test_after_fit=false"]
    run_cnnzoo([*fit, "--trainer.limit_train_batches=5", *common], tmp_path)
    checkpoint = root / "lenet5_relu" / "checkpoints" / "last.ckpt"
    run_cnnzoo(["predict", f"--ckpt_path={checkpoint}", *common], tmp_path)
    (written,) = (root / "lenet5_relu").glob("version_*/predictions.csv")
    with open(written, newline="") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 359  # the digits' test split
    assert [row["image"] for row in rows[:3]] == ["0", "1", "2"]
    probs = [float(rows[0][f"top{k}_prob"]) for k in range(1, 6)]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-5
    assert {row["label"] for row in rows} == {str(d) for d in range(10)}


def test_explain_is_a_cnnzoo_subcommand(tmp_path):
    assert main(["explain", "filters", "--model", "alexnet", "--out", str(tmp_path)]) == 0
    assert [p.suffix for p in tmp_path.iterdir()] == [".png"]
