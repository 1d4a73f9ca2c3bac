"""cnnzoo's models in timm's registry as `cnnzoo_<name>`, for people who live in timm.

timm finds models only in its own registry and has no plugin discovery, so importing
`cnnzoo_timm` registers there every name `cnnzoo.list_models()` gives, each with a default
config made from its card (reading the cards imports the plugins' builder modules, not
their models; a broken plugin's name is registered without one). A built model carries a
`pretrained_cfg`, as timm's do, for its own channels, and `pretrained=True` loads the
weights its card lists through cnnzoo's loader.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Callable
from typing import Any

import cnnzoo
import torch
from cnnzoo import ClassifierNet, FeatureInfo, FeatureMaps, ModelCard, PluginError
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import DefaultCfg, PretrainedCfg, is_model, register_model
from timm.models import FeatureInfo as TimmFeatureInfo
from torch import nn

CNNZOO_PREFIX = "cnnzoo_"  # cnnzoo_<name>: our names in timm's registry
IMAGENET_CROP_PCT = 224 / 256  # AlexNet's 224 crops of 256 images, as cnnzoo_data evaluates


def _per_channel(values: tuple[float, ...], channels: int) -> tuple[float, ...]:
    if len(values) == channels:
        return tuple(values)
    return (sum(values) / len(values),) * channels  # grey images: the mean over colours


def _pretrained_cfg(name: str, card: ModelCard, chans: int, num_classes: int) -> PretrainedCfg:
    """timm's pretrained config of cnnzoo's `name` from its card, for `chans`-channel images.
    The normalisation is that of the card's default weights, else ImageNet's (cnnzoo's data
    modules normalise with each dataset's own)."""
    _, height, width = card.input_size
    weights = card.weights[0] if card.weights else None
    mean = weights.mean if weights else IMAGENET_DEFAULT_MEAN
    std = weights.std if weights else IMAGENET_DEFAULT_STD
    return PretrainedCfg(
        architecture=CNNZOO_PREFIX + name,
        input_size=(chans, height, width),
        fixed_input_size=card.fixed_input_size,
        min_input_size=(chans, card.min_input_size, card.min_input_size)
        if card.min_input_size
        else None,
        interpolation="bilinear",
        # ImageNet-sized networks are evaluated on a centre crop, small ones on whole images.
        crop_pct=IMAGENET_CROP_PCT if width >= 224 else 1.0,
        mean=_per_channel(mean, chans),
        std=_per_channel(std, chans),
        num_classes=num_classes,
        paper_name=card.paper,
        origin_url=card.url,
    )


def pretrained_cfg_of(model: ClassifierNet | FeatureMaps) -> dict[str, Any]:
    """timm's pretrained config of a built cnnzoo model, from its card and its channels:
    what `timm.data.resolve_data_config({}, model=model)` reads, and for a classifier the
    names of its first convolution and its classifier, and its last map's size."""
    num_classes = getattr(model, "num_classes", 0)  # none once cut into feature maps
    cfg = _pretrained_cfg(model.name, model.card, model.in_chans, num_classes)
    if isinstance(model, ClassifierNet):
        cfg.first_conv = next(n for n, m in model.named_modules() if isinstance(m, nn.Conv2d))
        cfg.classifier = model.classifier_name
        cfg.pool_size = last_map_size(model.name, cfg.input_size)
    return cfg.to_dict()


def last_map_size(name: str, input_size: tuple[int, int, int]) -> tuple[int, int]:
    """The height and width of `forward_features` at `input_size`, worked out on the meta
    device (shapes only: nothing is computed or allocated)."""
    with torch.device("meta"):
        twin = cnnzoo.create_model(name, in_chans=input_size[0])
        return tuple(twin.forward_features(torch.empty(1, *input_size)).shape[-2:])


def timm_feature_info(stages: list[FeatureInfo]) -> TimmFeatureInfo:
    """cnnzoo's feature_info as timm's: `num_chs`, `reduction` and `module` of each map."""
    dicts = [
        {"module": stage.module, "num_chs": stage.channels, "reduction": stage.stride}
        for stage in stages
    ]
    return TimmFeatureInfo(dicts, out_indices=tuple(range(len(dicts))))


def _entrypoint(name: str) -> Callable[..., ClassifierNet]:
    def build(
        pretrained: bool = False,
        pretrained_cfg: Any = None,
        pretrained_cfg_overlay: Any = None,
        cache_dir: Any = None,
        **kwargs: Any,
    ) -> ClassifierNet:
        if pretrained_cfg is not None or pretrained_cfg_overlay is not None or cache_dir:
            raise ValueError(
                f"{CNNZOO_PREFIX}{name} takes its weights from its cnnzoo card through cnnzoo's "
                f"loader (files in torch hub's checkpoint folder, $TORCH_HOME/hub/checkpoints), "
                f"not from pretrained_cfg, pretrained_cfg_overlay or cache_dir."
            )
        model = cnnzoo.create_model(name, pretrained=pretrained, **kwargs)
        model.pretrained_cfg = model.default_cfg = pretrained_cfg_of(model)
        if isinstance(model, FeatureMaps):
            # timm's features_only models describe their maps with timm's FeatureInfo.
            model.feature_info = timm_feature_info(model.feature_info)
        return model

    build.__name__ = build.__qualname__ = CNNZOO_PREFIX + name
    build.__module__ = __name__
    build.__doc__ = f"cnnzoo's {name} (`cnnzoo.create_model({name!r})`)."
    return build


# Read by timm's register_model: each name's default config, as timm's model files have.
default_cfgs: dict[str, DefaultCfg] = {}


def register_in_timm() -> list[str]:
    """Register every cnnzoo model not yet in timm's registry, with its card's default
    config; returns the timm names added. Call it again after installing a cnnzoo plugin in
    a running process."""
    added = []
    for name in cnnzoo.list_models():
        entry = _entrypoint(name)
        if is_model(entry.__name__):
            continue
        try:
            card = cnnzoo.model_card(name)
        except PluginError:
            pass  # registered without a config: building it names the broken plugin
        else:
            cfg = _pretrained_cfg(name, card, card.input_size[0], card.num_classes)
            default_cfgs[entry.__name__] = DefaultCfg(tags=deque([""]), cfgs={"": cfg})
        # timm lists a module's models as that module's functions, as its own files define them.
        setattr(sys.modules[__name__], entry.__name__, entry)
        register_model(entry)
        added.append(entry.__name__)
    return added
