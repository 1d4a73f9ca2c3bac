"""Published weights, loaded into cnnzoo models: torchvision's and timm's ImageNet weights,
and our own, trained by a reproduction and shipped inside the plugin.

Where one of our variants is the same network as a torchvision or timm model (the arch
packages' equivalence tests check this logit for logit), its card lists those weights and
the function that renames their state dict into ours. `create_model(name, pretrained=True)`
fetches the file through the library that publishes it, or takes it from torch hub's
checkpoint folder when it is already there (which is how an offline machine gets it). Our
own weights (source "cnnzoo": the CIFAR networks, a few MB) need no network at all.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import torch

from cnnzoo.card import ModelCard, PretrainedWeights
from cnnzoo.errors import CnnzooError
from cnnzoo.protocol import ClassifierNet


class PretrainedWeightsError(CnnzooError, RuntimeError):
    """Weights that cannot be fetched, or do not fit the model asked for."""


def choose_weights(name: str, card: ModelCard, pretrained: bool | str) -> PretrainedWeights:
    """The card's default weights for `True`, or the ones whose name is given."""
    if not card.weights:
        raise PretrainedWeightsError(
            f"{name} has no published weights that cnnzoo can load: no torchvision or timm "
            f"model is the same network. Train it (`cnnzoo fit --model.arch {name}`), or "
            f"pick a model whose `cnnzoo models` row lists weights."
        )
    if pretrained is True:
        return card.weights[0]
    for weights in card.weights:
        if pretrained in (weights.name, f"{weights.source}:{weights.name}"):
            return weights
    names = ", ".join(w.name for w in card.weights)
    raise PretrainedWeightsError(
        f"{name} has no weights named {pretrained!r}; it has: {names}. Pass pretrained=True "
        f"for the first."
    )


def hub_checkpoint_dir() -> Path:
    """Where torch hub keeps downloaded weights ($TORCH_HOME/hub/checkpoints)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _unreadable(file: Path, url: str, exc: Exception) -> PretrainedWeightsError:
    return PretrainedWeightsError(
        f"{file} is there but does not load ({type(exc).__name__}: {exc}). A partial or "
        f"foreign file? Delete it and download {url} again."
    )


def _torchvision_state_dict(weights: PretrainedWeights) -> dict[str, torch.Tensor]:
    import torchvision

    try:
        enum = torchvision.models.get_weight(weights.name)
    except (ValueError, KeyError) as exc:
        raise PretrainedWeightsError(
            f"torchvision {torchvision.__version__} has no weights {weights.name!r}: {exc}"
        ) from exc
    file = hub_checkpoint_dir() / Path(enum.url).name
    present = file.is_file()
    try:
        # Reads `file` when it is there and downloads it otherwise. torch hub checks the
        # hash in the file name against a download only, never against a file already
        # there: a file the user put in place is taken as it is.
        return enum.get_state_dict(progress=True, check_hash=True)
    except Exception as exc:
        if present:
            raise _unreadable(file, enum.url, exc) from exc
        if not isinstance(exc, OSError):  # urllib's URLError, socket errors, a read-only cache
            raise
        raise PretrainedWeightsError(
            f"could not download torchvision's {weights.name} ({type(exc).__name__}: {exc}). "
            f"Offline? On a machine with internet, download {enum.url} and put the file at "
            f"{file}; it is read from there without the network."
        ) from exc


def _timm_state_dict(weights: PretrainedWeights) -> dict[str, torch.Tensor]:
    import timm

    try:
        cfg = timm.models.get_pretrained_cfg(weights.name)
    except RuntimeError:  # an unknown tag of a known architecture
        cfg = None
    if cfg is None or not cfg.has_weights:
        raise PretrainedWeightsError(f"timm {timm.__version__} has no weights {weights.name!r}")
    folder = hub_checkpoint_dir()
    local = [folder / f"{weights.name}{ext}" for ext in (".safetensors", ".pth", ".bin")]
    present = next((p for p in local if p.is_file()), None)
    # Most timm weights live on the Hugging Face hub; older ones (legacy_se*) at a URL.
    if cfg.hf_hub_id:
        url, target = (
            f"https://huggingface.co/{cfg.hf_hub_id}/resolve/main/model.safetensors",
            local[0],
        )
    else:
        url, target = cfg.url, local[1]
    try:
        model = timm.create_model(
            weights.name,
            pretrained=True,
            pretrained_cfg_overlay={"file": str(present)} if present else None,
        )
    except Exception as exc:
        if present:
            raise _unreadable(present, url, exc) from exc
        if not isinstance(exc, OSError):  # hub and urllib errors are OSErrors
            raise
        raise PretrainedWeightsError(
            f"could not fetch timm's {weights.name} ({type(exc).__name__}: {exc}). Offline? "
            f"On a machine with internet, download {url} and put the file at {target}; it is "
            f"read from there without the network."
        ) from exc
    return model.state_dict()


def _cnnzoo_state_dict(weights: PretrainedWeights) -> dict[str, torch.Tensor]:
    """Our own weights: a safetensors file shipped inside the plugin that trained them."""
    from importlib.resources import files

    from safetensors import SafetensorError
    from safetensors.torch import load_file

    package, _, path = weights.file.partition(":")
    file = files(package) / path
    if not file.is_file():
        raise PretrainedWeightsError(
            f"{weights.name}: {path} is missing from the installed {package} package. "
            f"Reinstall it (pip install --force-reinstall {package.replace('_', '-')})."
        )
    try:
        return load_file(str(file))
    except (SafetensorError, OSError) as exc:
        raise _unreadable(Path(str(file)), f"the {package} package", exc) from exc


def _converter(weights: PretrainedWeights):
    if not weights.convert:  # our own weights: already in our keys
        return lambda state: state
    module, _, function = weights.convert.partition(":")
    return getattr(importlib.import_module(module), function)


def load_pretrained(model: ClassifierNet, weights: PretrainedWeights) -> None:
    """Fetch `weights`, rename them into `model`'s keys and load them.

    The published classifier is kept when the model has the weights' classes and dropped
    (left at the paper's initialisation) otherwise, as for fine-tuning; the first
    convolution is adapted, through timm, when the model takes other than 3 channels.
    """
    fetch = {
        "torchvision": _torchvision_state_dict,
        "timm": _timm_state_dict,
        "cnnzoo": _cnnzoo_state_dict,
    }.get(weights.source)
    if fetch is None:
        raise PretrainedWeightsError(f"unknown weights source {weights.source!r}")
    state = _converter(weights)(fetch(weights))
    own = model.state_dict()
    dropped = []
    for key, value in list(state.items()):
        target = own.get(key)
        if target is None or target.shape == value.shape:
            continue
        if value.ndim == 4 and value.shape[1] == 3 and target.shape[1] == model.in_chans:
            from timm.models import adapt_input_conv

            state[key] = adapt_input_conv(model.in_chans, value)
        elif target.shape[0] == model.num_classes and value.shape[1:] == target.shape[1:]:
            dropped.append(key)  # the classifier, for another number of classes
            del state[key]
        else:
            raise PretrainedWeightsError(
                f"{weights.name} does not fit {model.name or type(model).__name__}: {key} is "
                f"{tuple(value.shape)} there and {tuple(target.shape)} here."
            )
    missing, unexpected = model.load_state_dict(state, strict=False)
    if sorted(missing) != sorted(dropped) or unexpected:
        raise PretrainedWeightsError(
            f"{weights.name} does not fit {model.name or type(model).__name__}: missing "
            f"{sorted(set(missing) - set(dropped))}, unexpected {sorted(unexpected)}."
        )
