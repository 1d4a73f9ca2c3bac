"""What a run resumed from the middle of an epoch needs beyond Lightning's own checkpoint, so
that it ends on the weights an uninterrupted run would have: the random number generators'
states (dropout masks, the augmentations drawn from the global generators) and the training
loader's position in its epoch.

`ExactResume` is among the `cnnzoo` and `cnnzoo-detect` commands' callbacks; a script that
builds its own `lightning.Trainer` adds it to the trainer's callbacks.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch

from cnnzoo.lightning_internals import (
    collect_rng_states,
    load_training_loader_state,
    set_rng_states,
)


def rng_states() -> dict[str, Any]:
    """torch's, numpy's and Python's RNG states, in types `torch.load(weights_only=True)` reads."""
    states = collect_rng_states(include_cuda=torch.cuda.is_available())
    name, keys, position, has_gauss, cached = states["numpy"]
    states["numpy"] = (name, keys.tolist(), position, has_gauss, cached)
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    name, keys, position, has_gauss, cached = states["numpy"]
    states = {
        **states,
        "numpy": (name, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached),
    }
    if "torch.cuda" in states and not torch.cuda.is_available():
        states.pop("torch.cuda")
    set_rng_states(states)


class ExactResume(L.Callback):
    """Saves the RNG states in every checkpoint and restores them on resuming; hands the
    training loader its checkpointed position when training starts."""

    def state_dict(self) -> dict[str, Any]:
        return {"rng_states": rng_states()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        restore_rng_states(state_dict["rng_states"])

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        load_training_loader_state(trainer)
