"""The private pieces of Lightning that cnnzoo uses (`cnnzoo.lightning_internals`) are still
there and still do what we rely on: a Lightning release that changes one fails here, by
name, rather than as a resumed run that quietly replays the wrong batches."""

from __future__ import annotations

import inspect
import random
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from cnnzoo import lightning_internals as internals

SOURCES = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("owner", "name"), internals.OVERRIDDEN, ids=lambda x: getattr(x, "__name__", x)
)
def test_the_private_hooks_we_override_still_exist(owner, name):
    assert callable(getattr(owner, name, None)), (
        f"Lightning {L.__version__}: {owner.__name__}.{name} is gone; the cnnzoo subclass "
        "that overrides or calls it must follow the release (cnnzoo.lightning_internals)."
    )


def test_rng_states_round_trip():
    states = internals.collect_rng_states(include_cuda=False)
    assert {"torch", "numpy", "python"} <= set(states)
    drawn = (torch.rand(3), np.random.rand(3), random.random())
    internals.set_rng_states(states)
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(drawn[0], again[0]) and np.array_equal(drawn[1], again[1])
    assert drawn[2] == again[2]


def test_the_fit_loop_still_loads_its_loaders_states():
    loop = L.Trainer(logger=False).fit_loop
    assert inspect.signature(loop._load_combined_loader_states).parameters == {}


def test_the_checkpoint_scan_takes_the_callback_and_the_logged_times():
    from lightning.pytorch.loggers.utilities import _scan_checkpoints

    assert list(inspect.signature(_scan_checkpoints).parameters) == [
        "checkpoint_callback",
        "logged_model_time",
    ]


def test_no_other_source_file_reaches_into_lightnings_private_names():
    """Only cnnzoo.lightning_internals imports a private Lightning name."""
    offenders = []
    for path in [*SOURCES.glob("packages/**/src/**/*.py"), *SOURCES.glob("apps/*/src/**/*.py")]:
        if path.name == "lightning_internals.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            stripped = line.strip()
            if stripped.startswith("from lightning") and " import _" in stripped:
                offenders.append(f"{path.relative_to(SOURCES)}:{number}")
            if "fit_loop._" in stripped or "_collect_rng_states" in stripped:
                offenders.append(f"{path.relative_to(SOURCES)}:{number}")
    assert not offenders, f"private Lightning names outside lightning_internals: {offenders}"


def test_the_wandb_loggers_init_arguments_are_the_dict_it_passes_to_wandb(tmp_path):
    from cnnzoo.loggers import WandbLogger

    logger = WandbLogger(name="run", save_dir=str(tmp_path), offline=True)
    arguments = internals.wandb_init_arguments(logger)
    assert arguments["name"] == "run" and arguments["project"] == "cnnzoo"
    # Left out when unset: W&B would warn "The anonymous setting has no effect" at every run.
    assert "anonymous" not in arguments


def test_a_built_checkpoint_callback_takes_a_folder_and_a_step_interval(tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    callback = ModelCheckpoint()
    internals.place_checkpoints(callback, dirpath=tmp_path / "checkpoints", every_n_train_steps=7)
    assert callback.dirpath == str((tmp_path / "checkpoints").resolve())
    assert callback._every_n_train_steps == 7
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"")
    # What `fit(ckpt_path="last")` asks before setup: the placed folder, not a logger's.
    found = callback._find_last_checkpoints(L.Trainer(logger=False))
    assert found == {str((tmp_path / "checkpoints" / "last.ckpt").resolve())}


def test_a_built_csv_logger_takes_a_folder_name_and_version(tmp_path):
    from lightning.pytorch.loggers import CSVLogger

    logger = CSVLogger(save_dir=tmp_path / "a", name="first")
    internals.place_csv_log(logger, save_dir=tmp_path / "b", name="run", version=3)
    assert Path(logger.log_dir) == tmp_path / "b" / "run" / "version_3"
    assert (logger.save_dir, logger.name, logger.version) == (str(tmp_path / "b"), "run", 3)


def test_a_built_wandb_logger_takes_a_folder_name_and_run_id(tmp_path):
    from lightning.pytorch.loggers import WandbLogger

    logger = WandbLogger(save_dir=str(tmp_path / "a"), offline=True)
    internals.place_wandb_run(logger, save_dir=tmp_path / "b", name="run", run_id="abc123")
    arguments = internals.wandb_init_arguments(logger)
    assert (arguments["dir"], arguments["name"], arguments["id"]) == (
        str(tmp_path / "b"),
        "run",
        "abc123",
    )
    assert (logger.save_dir, logger.version) == (str(tmp_path / "b"), "abc123")


class _Counted(L.Callback):
    def __init__(self) -> None:
        self.calls = 0

    def on_train_batch_end(self, *args) -> None:
        self.calls += 1


class _Regression(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(3, 1)

    def training_step(self, batch, batch_idx):
        return torch.nn.functional.mse_loss(self.layer(batch[0]), batch[1])

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", torch.nn.functional.mse_loss(self.layer(batch[0]), batch[1]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_lightning_skips_the_hooks_a_callback_or_module_inherits_as_no_ops():
    """Lightning calls a hook only when it is callable, so a no-op set to None is skipped,
    while the hooks a class defines are called at every step as before."""
    from torch.utils.data import DataLoader, TensorDataset

    counted, plain, module = _Counted(), L.Callback(), _Regression()
    assert "on_train_batch_end" not in internals.skip_unused_hooks(counted)
    assert set(internals.skip_unused_hooks(plain)) == set(
        internals.TRAINING_STEP_HOOKS + internals.EVALUATION_BATCH_HOOKS
    )
    # A module keeps its evaluation batch hooks, whose signatures Lightning reads.
    assert internals.skip_unused_hooks(module) == list(internals.TRAINING_STEP_HOOKS)
    assert plain.on_before_backward is None and module.on_train_batch_start is None
    data = TensorDataset(torch.randn(12, 3), torch.randn(12, 1))
    trainer = L.Trainer(
        max_epochs=2,
        callbacks=[counted, plain],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, DataLoader(data, batch_size=4), DataLoader(data, batch_size=4))
    assert trainer.global_step == 6 and counted.calls == 6
    assert L.Callback.on_before_backward is not None  # the class is left as it was
