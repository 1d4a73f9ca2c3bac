"""Checkpoints that survive a kill: written atomically, and written often enough.

- `AtomicCheckpointIO` writes each checkpoint to a partial file beside its target, flushes it
  to disk and renames it over the target. A rename within one folder is atomic on POSIX and
  Windows, so a process killed at any moment leaves either the previous checkpoint or the
  new one, never half of one. (Lightning's own writer stages the file in the system's
  temporary folder and moves it across file systems, which is a copy, and no fsync.)
  Reading names the file and says what to do when it is truncated or not a checkpoint.
- `LastCheckpoint` keeps `last.ckpt` current: at the end of every epoch and, if asked,
  every n training steps inside an epoch, so that a run resumes (`--ckpt_path last`) from
  the middle of an epoch, with the same result as if it had never stopped.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins import TorchCheckpointIO

from cnnzoo.errors import CnnzooError
from cnnzoo.lightning_internals import checkpoint_step_interval

_PATH = str | os.PathLike  # a local path or an fsspec URL

PARTIAL_SUFFIX = ".partial"


class CheckpointError(CnnzooError, ValueError):
    """A checkpoint that cannot be read, or that does not fit the model or data."""


def _fsync_folder(folder: Path) -> None:
    if os.name != "posix":  # folders cannot be opened for fsync on Windows
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def atomic_torch_save(obj: Any, path: _PATH) -> None:
    """`torch.save` that leaves `path` whole or untouched, whenever the process dies."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + PARTIAL_SUFFIX)
    with open(partial, "wb") as file:
        torch.save(obj, file)
        file.flush()
        os.fsync(file.fileno())
    os.replace(partial, path)
    _fsync_folder(path.parent)  # make the rename itself durable


def _is_local(path: _PATH) -> bool:
    return isinstance(get_filesystem(path), LocalFileSystem)


def check_checkpoint_file(path: _PATH) -> None:
    """Fail clearly, and cheaply, on a missing checkpoint or one cut short: torch writes
    checkpoints as zip archives, whose directory is the last thing written."""
    if not Path(path).is_file():
        raise CheckpointError(f"no checkpoint at {path}: check the path (`ls` its folder).")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"{path} is not a readable checkpoint: it is truncated (a write cut short) or "
            f"not a PyTorch checkpoint. Resume from another one, e.g. the best checkpoint "
            f"in the same folder."
        )


def load_checkpoint_file(
    path: _PATH, map_location: Any = "cpu", weights_only: bool | None = None, mmap: bool = False
):
    """`torch.load` of a checkpoint, with a clear error for a missing or damaged file
    (`mmap`: tensors mapped, not read, for a look at the rest)."""
    check_checkpoint_file(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=weights_only, mmap=mmap)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as exc:
        raise CheckpointError(
            f"{path} is not a readable checkpoint ({type(exc).__name__}: {exc}). It is "
            f"truncated or not a PyTorch checkpoint; resume from another one, e.g. the "
            f"best checkpoint in the same folder."
        ) from exc


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, made atomic for local folders (see the module notes)."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options.")
        if not _is_local(path):
            return super().save_checkpoint(checkpoint, path)  # object stores: Lightning's way
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(self, path: _PATH, map_location: Any = None, weights_only=None):
        if not _is_local(path):
            return super().load_checkpoint(path, map_location, weights_only)
        return load_checkpoint_file(path, map_location=map_location, weights_only=weights_only)


class LastCheckpoint(ModelCheckpoint):
    """`last.ckpt`, written at the end of every epoch and every `every_n_train_steps` steps.

    Lightning's ModelCheckpoint takes either a step or an epoch trigger; a run that should
    lose neither a finished epoch nor more than n steps of one needs both.
    """

    def __init__(self, dirpath: _PATH | None = None, every_n_train_steps: int = 0) -> None:
        if every_n_train_steps < 0:
            raise ValueError(f"every_n_train_steps must be 0 (off) or more: {every_n_train_steps}")
        super().__init__(
            dirpath=dirpath,
            filename=self.CHECKPOINT_NAME_LAST,
            enable_version_counter=False,
            every_n_train_steps=every_n_train_steps or None,
            save_on_train_epoch_end=True,
        )

    # A chunked training step (`cnnzoo.chunks`) takes several optimiser steps: saved when
    # they crossed a multiple of every_n_train_steps.
    saves_on_crossing = True

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not self._should_skip_saving_checkpoint(trainer):
            self._save_topk_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_start(self, trainer, pl_module) -> None:
        super().on_train_start(trainer, pl_module)
        self._steps_saved = self._multiples(trainer)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if pl_module.automatic_optimization:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
            return
        # Lightning's own manual-optimisation save would warn at every save that it holds
        # the weights after the step, as ours do at any step.
        crossed = self._multiples(trainer)
        if crossed == self._steps_saved:
            return
        self._steps_saved = crossed
        if not self._should_skip_saving_checkpoint(trainer):
            self._save_topk_checkpoint(trainer, self._monitor_candidates(trainer))

    def _multiples(self, trainer) -> int:
        """How many multiples of the step interval the optimiser steps have passed."""
        every = checkpoint_step_interval(self)
        return trainer.global_step // every if every else 0
