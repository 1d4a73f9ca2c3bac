"""Every timm model in cnnzoo's registry as `timm/<name>`, with a card from timm's
pretrained config.

The entry point `timm = "cnnzoo_timm.namespace:namespace"` in the group `cnnzoo.namespaces`
makes the registry ask `namespace` for names that start with `timm/`: `timm/resnet18`, or
with a pretrained tag, `timm/resnet18.tv_in1k`. timm's cards carry no published figures
(parameters, errors); they carry what timm knows: the input size, the classes, the paper's
arXiv id where timm's config gives one, and every set of weights timm publishes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import timm
from cnnzoo import ModelCard, variant
from cnnzoo.card import PretrainedWeights
from timm.models import (
    PretrainedCfg,
    get_arch_pretrained_cfgs,
    get_pretrained_cfg,
    split_model_name_tag,
)

from cnnzoo_timm.classifier import TimmClassifier
from cnnzoo_timm.in_timm import CNNZOO_PREFIX

CONVERT = "cnnzoo_timm.classifier:from_timm_state_dict"
TIMM_URL = "https://github.com/huggingface/pytorch-image-models"
UNKNOWN_YEAR = 0  # timm's configs give no year; an arXiv id gives the year it was posted
ARXIV = re.compile(r"arXiv:(\d{2})(\d{2})\.(\d{4,5})", re.IGNORECASE)


def _weights(name: str, cfg: PretrainedCfg) -> PretrainedWeights:
    return PretrainedWeights(
        source="timm", name=name, convert=CONVERT, mean=tuple(cfg.mean), std=tuple(cfg.std)
    )


def timm_card(name: str) -> ModelCard:
    """The card of timm's `name` (an architecture, or an architecture with a pretrained tag),
    from its pretrained config: the default tag's for an architecture."""
    arch, tag = split_model_name_tag(name)
    cfg = get_pretrained_cfg(name, allow_unregistered=True) or PretrainedCfg(architecture=arch)
    # An architecture lists every published set of weights, timm's default first.
    tagged = {name: cfg} if tag else get_arch_pretrained_cfgs(arch)
    weights = tuple(_weights(n, c) for n, c in tagged.items() if c.has_weights)
    arxiv = ARXIV.search(cfg.paper_ids or "")
    if arxiv:
        year, month, number = arxiv.groups()
        url, posted = f"https://arxiv.org/abs/{year}{month}.{number}", 2000 + int(year)
    else:
        url, posted = cfg.origin_url or TIMM_URL, UNKNOWN_YEAR
    keep = ("architecture", "tag", "hf_hub_id", "license", "interpolation", "crop_pct")
    return ModelCard(
        paper=cfg.paper_name or cfg.paper_ids or f"timm's {arch}",
        authors="",
        year=posted,
        url=url,
        input_size=tuple(cfg.input_size),
        num_classes=cfg.num_classes,
        fixed_input_size=cfg.fixed_input_size,
        min_input_size=cfg.min_input_size[-1] if cfg.min_input_size else None,
        weights=weights,
        notes=(
            f"timm {timm.__version__}'s {name}, its card made from timm's pretrained config: "
            f"the paper and year are those timm gives for the default weights (often the "
            f"paper of their training recipe, not of the architecture); year 0 where none."
        ),
        extra={"timm": {key: getattr(cfg, key) for key in keep}},
    )


class TimmNamespace:
    """timm's registry as a cnnzoo namespace (see `cnnzoo.registry.Namespace`)."""

    def names(self) -> list[str]:
        # cnnzoo's own models, registered in timm as cnnzoo_<name>, are not timm's.
        return [name for name in timm.list_models() if not name.startswith(CNNZOO_PREFIX)]

    def builder(self, name: str) -> Callable[..., TimmClassifier] | None:
        arch, _ = split_model_name_tag(name)
        if arch.startswith(CNNZOO_PREFIX) or not timm.is_model(arch):
            return None
        try:
            card = timm_card(name)
        except RuntimeError:  # timm's "Invalid pretrained tag"
            return None

        @variant(card)
        def build(
            num_classes: int | None = None, in_chans: int | None = None, **kwargs: Any
        ) -> TimmClassifier:
            """timm's model; other keyword arguments go to timm (drop_rate, ...)."""
            model = timm.create_model(name, num_classes=num_classes, in_chans=in_chans, **kwargs)
            wrapped = TimmClassifier(model, in_chans or card.input_size[0])
            wrapped.name = f"timm/{name}"
            return wrapped

        return build


namespace = TimmNamespace()
