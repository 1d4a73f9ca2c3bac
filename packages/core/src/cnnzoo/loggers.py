"""Weights & Biases logging that never reaches for the network unless the user is logged in."""

from __future__ import annotations

import netrc
import os
from typing import Any
from urllib.parse import urlparse

from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger


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
    `wandb sync`.
    """

    def __init__(
        self,
        name: str | None = None,
        save_dir: str = "runs",
        project: str = "cnnzoo",
        offline: bool | None = None,
        log_model: bool = False,
        **kwargs: Any,
    ) -> None:
        os.makedirs(save_dir, exist_ok=True)
        super().__init__(
            name=name,
            save_dir=save_dir,
            project=project,
            offline=wandb_offline() if offline is None else offline,
            log_model=log_model,
            **kwargs,
        )
