"""Weights & Biases logging that never reaches for the network unless the user is logged in,
and a CSV log that a resumed run continues.

Checkpoints go to W&B as model artifacts that carry the model card, and results as tables;
offline, both are written into the run's folder and upload with `wandb sync`.
"""

from __future__ import annotations

import csv
import netrc
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger as LightningCSVLogger
from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from cnnzoo.lightning_internals import (
    checkpoints_to_log,
    place_csv_log,
    place_wandb_run,
    wandb_init_arguments,
)

RUNS = "runs"  # where runs are kept unless told otherwise


def wandb_logged_in() -> bool:
    """True when W&B has an API key (environment or ~/.netrc); reads no network."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc().authenticators(host or "api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def wandb_offline() -> bool:
    """Offline unless the user is logged in; WANDB_MODE, when set, decides."""
    mode = os.environ.get("WANDB_MODE")
    if mode is not None:
        return mode in ("offline", "dryrun", "disabled")
    return not wandb_logged_in()


class WandbLogger(LightningWandbLogger):
    """Lightning's WandbLogger, offline by default unless W&B has credentials.

    Offline runs are written under `save_dir/wandb/` and can be uploaded later with
    `wandb sync`. With `log_model=True` the checkpoints are logged as `model` artifacts when
    training ends ("all": as they are written), with the cnnzoo section of the checkpoint
    (arch, model card, library versions) as the artifact's metadata, so a model found in
    W&B says which paper's network it is and how to load it.
    """

    def __init__(
        self,
        name: str | None = None,
        save_dir: str | None = None,
        project: str = "cnnzoo",
        offline: bool | None = None,
        log_model: bool | Literal["all"] = False,
        **kwargs: Any,
    ) -> None:
        # Unset, the run's name and folder (`RunTrainer` sets them; elsewhere: runs/).
        self._unset = {"name": name is None, "save_dir": save_dir is None}
        super().__init__(
            name=name,
            save_dir=save_dir or RUNS,
            project=project,
            offline=wandb_offline() if offline is None else offline,
            **kwargs,
        )
        # Set after Lightning's check, which refuses artifacts offline: W&B keeps them in
        # the offline run, and `wandb sync` uploads them with it.
        self._log_model = log_model
        # Unset, it is left out: W&B warns that the setting has no effect at every run.
        arguments = wandb_init_arguments(self)
        if arguments.get("anonymous") is None:
            arguments.pop("anonymous", None)

    def follow_run(self, root: str | os.PathLike, run_name: str | None) -> None:
        """Keep the W&B run in `root/wandb/`, named after the run, unless given others."""
        place_wandb_run(
            self,
            save_dir=root if self._unset["save_dir"] else None,
            name=run_name if self._unset["name"] else None,
        )

    def continue_version(self, run_id: str) -> None:
        """Go on in the W&B run `run_id` (a resumed run's), unless given a run id."""
        if self.version is None:
            place_wandb_run(self, run_id=run_id)

    @property
    def experiment(self):
        # Made when the run starts, not when the logger is built: until then its folder may
        # still change (`follow_run`). W&B falls back to a temporary folder where none is.
        os.makedirs(self.save_dir, exist_ok=True)
        return super().experiment

    @rank_zero_only
    def _scan_and_log_checkpoints(self, checkpoint_callback: ModelCheckpoint) -> None:
        # Lightning's own version, with the checkpoint's cnnzoo section as metadata.
        import wandb

        for mtime, path, score, _ in checkpoints_to_log(
            checkpoint_callback, self._logged_model_time
        ):
            metadata = {
                "score": score.item() if isinstance(score, torch.Tensor) else score,
                "monitor": getattr(checkpoint_callback, "monitor", None),
                "original_filename": Path(path).name,
                **checkpoint_metadata(path),
            }
            if not self._checkpoint_name:
                self._checkpoint_name = f"model-{self.experiment.id}"
            artifact = wandb.Artifact(name=self._checkpoint_name, type="model", metadata=metadata)
            artifact.add_file(path, name="model.ckpt", policy=self.add_file_policy)
            # A callback without a metric (last.ckpt) calls its latest file its "best".
            best = checkpoint_callback.monitor and path == checkpoint_callback.best_model_path
            self.experiment.log_artifact(
                artifact, aliases=["latest", "best"] if best else ["latest"]
            )
            self._logged_model_time[path] = mtime

    @rank_zero_only
    def log_rows(self, key: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Log dict rows (e.g. reproduction results) as one W&B table; columns in first-seen
        order, a row without a column gets None."""
        columns = list(dict.fromkeys(column for row in rows for column in row))
        self.log_table(key, columns=columns, data=[[row.get(c) for c in columns] for row in rows])


def checkpoint_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The cnnzoo section of a checkpoint (arch, card, pretrained, versions), JSON-ready.

    Read through mmap: a large checkpoint's weights are never loaded for this.
    """
    checkpoint = torch.load(path, map_location="cpu", mmap=True, weights_only=False)
    section = checkpoint.get("cnnzoo", {})
    return {
        key: section[key] for key in ("arch", "card", "pretrained", "versions") if key in section
    } | {"epoch": checkpoint.get("epoch"), "global_step": checkpoint.get("global_step")}


class _ContinuedWriter(ExperimentWriter):
    """Lightning's CSV writer, except that a log that exists is continued: Lightning's deletes
    its metrics.csv, which would cut a resumed run's curves in two."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                self.metrics_keys = list(csv.DictReader(file).fieldnames or [])


class CSVLogger(LightningCSVLogger):
    """Lightning's CSVLogger whose log, given the version of an existing one (as a resumed
    run is, by `cnnzoo.run_trainer.RunTrainer`), goes on where it ended.

    Unset, `save_dir` and `name` are the run's (`RunTrainer` sets them; elsewhere the log is
    `runs/version_<n>/`).
    """

    def __init__(
        self,
        save_dir: str | os.PathLike | None = None,
        name: str | None = None,
        version: int | str | None = None,
        prefix: str = "",
        flush_logs_every_n_steps: int = 100,
    ) -> None:
        self._unset = {"save_dir": save_dir is None, "name": name is None}
        self._version_given = version is not None
        super().__init__(save_dir or RUNS, name, version, prefix, flush_logs_every_n_steps)

    def follow_run(self, root: str | os.PathLike, run_name: str | None) -> None:
        """Log under `root/<run_name>/`, unless given a folder and name of its own."""
        place_csv_log(
            self,
            save_dir=root if self._unset["save_dir"] else None,
            name=run_name if self._unset["name"] else None,
        )

    def continue_version(self, version: int | str) -> None:
        """Go on in the log `version` (a resumed run's), unless given a version."""
        if not self._version_given:
            place_csv_log(self, version=version)

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ContinuedWriter(log_dir=self.log_dir)
        return self._experiment
