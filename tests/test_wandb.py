"""W&B, offline: checkpoints as model artifacts carrying the model card, results as tables,
and the `--wandb.*` options of the `cnnzoo` command; read back from the run's own file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import wandb
from cnnzoo import ImageClassifier, model_card
from cnnzoo.loggers import WandbLogger
from conftest import run_cnnzoo, wandb_records

QUICK = [
    "--trainer.limit_train_batches=3",
    "--trainer.limit_val_batches=2",
    "--data.num_workers=0",
    "--model.optimizer.lr=0.003",
]


def offline_run(root: Path) -> Path:
    (run,) = (root / "wandb").glob("offline-run-*")
    return run


def of_kind(records: list, kind: str) -> list:
    return [getattr(r, kind) for r in records if r.WhichOneof("record_type") == kind]


@pytest.fixture(scope="module")
def logged(tmp_path_factory) -> Path:
    """`cnnzoo fit` with checkpoints logged as artifacts and W&B options from the command."""
    cwd = tmp_path_factory.mktemp("wandb")
    root = cwd / "runs"
    args = [
        "fit",
        "--trainer.max_epochs=2",
        f"--trainer.default_root_dir={root}",
        "--wandb.log_model=true",
        "--wandb.project=zoo-tests",
        "--wandb.name=lenet5-digits",
        "--wandb.tags=[paper, quick]",
        "--wandb.group=lenet",
        *QUICK,
    ]
    run_cnnzoo(args, cwd)
    return root


def test_checkpoints_become_model_artifacts_with_the_model_card(logged):
    artifacts = of_kind(wandb_records(offline_run(logged)), "artifact")
    models = [a for a in artifacts if a.type == "model"]
    # The best checkpoint by validation error and last.ckpt, once each at the end.
    assert len(models) == 2
    assert all(a.name.startswith("model-") for a in models)
    assert sorted(tuple(sorted(a.aliases)) for a in models) == [
        ("best", "latest"),
        ("latest",),
    ]
    card = model_card("lenet5")
    for artifact in models:
        metadata = json.loads(artifact.metadata)
        assert metadata["arch"] == "lenet5"
        assert metadata["card"]["paper"] == card.paper
        assert metadata["card"]["published_params"] == card.published_params
        if "best" in artifact.aliases:
            assert metadata["monitor"] == "val/top1_error" and metadata["epoch"] in (0, 1)
        else:
            assert metadata["original_filename"] == "last.ckpt" and metadata["epoch"] == 1
        assert set(metadata["versions"]) >= {"torch", "lightning"}
        (entry,) = artifact.manifest.contents
        assert entry.path == "model.ckpt"
    best = next(a for a in models if "best" in a.aliases)
    score = json.loads(best.metadata)["score"]
    original = logged / "lenet5" / "checkpoints" / json.loads(best.metadata)["original_filename"]
    assert f"top1err{score:.4f}" in original.name  # the file the best score belongs to
    assert ImageClassifier.from_checkpoint(str(original)).hparams.arch == "lenet5"


def test_wandb_options_from_the_command_line_reach_the_run(logged):
    (run,) = of_kind(wandb_records(offline_run(logged)), "run")
    assert run.project == "zoo-tests"
    assert run.display_name == "lenet5-digits"
    assert list(run.tags) == ["paper", "quick"]
    assert run.run_group == "lenet"


def test_wandb_can_be_left_out_and_the_csv_log_stays(tmp_path):
    root = tmp_path / "runs"
    args = ["fit", "--trainer.max_epochs=1", f"--trainer.default_root_dir={root}"]
    run_cnnzoo([*args, "--wandb.enabled=false", "--test_after_fit=false", *QUICK], tmp_path)
    assert not (root / "wandb").exists()
    assert (root / "lenet5" / "version_0" / "metrics.csv").is_file()


def test_rows_are_logged_as_a_table(tmp_path):
    logger = WandbLogger(name="rows", save_dir=str(tmp_path), offline=True)
    rows = [
        {"model": "resnet20", "top1_error": 8.2, "paper_top1_error": 8.75},
        {"model": "resnet32", "top1_error": 7.4, "epochs": 182},
    ]
    logger.log_rows("reproductions", rows)
    run_dir = Path(logger.experiment.dir).parent
    wandb.finish()
    (table,) = run_dir.glob("files/media/table/reproductions_*.table.json")
    saved = json.loads(table.read_text())
    assert saved["columns"] == ["model", "top1_error", "paper_top1_error", "epochs"]
    assert saved["data"] == [["resnet20", 8.2, 8.75, None], ["resnet32", 7.4, None, 182]]
