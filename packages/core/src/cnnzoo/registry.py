"""The model registry: one entry point per model variant in the group `cnnzoo.models`.

Listing reads entry-point metadata only, so `list_models` imports no plugin; `create_model`
and `model_card` import the one plugin that provides the name. A broken plugin or a name
claimed by two distributions fails with the distribution's name, and only for that name.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import inspect
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import Any, TypeVar

from cnnzoo.card import ModelCard
from cnnzoo.errors import ModelNotFoundError, PluginError
from cnnzoo.protocol import ClassifierNet

GROUP = "cnnzoo.models"

Builder = TypeVar("Builder", bound=Callable[..., ClassifierNet])


def variant(card: ModelCard) -> Callable[[Builder], Builder]:
    """Mark a builder function as a model variant and attach its paper's card.

    The built model carries the card too, so a model made without the registry
    (`lenet5()`) knows its paper, input size and published figures.
    """

    def decorate(build: Builder) -> Builder:
        @functools.wraps(build)
        def build_with_card(*args: Any, **kwargs: Any) -> ClassifierNet:
            model = build(*args, **kwargs)
            model.card = card
            model.name = model.name or build.__name__
            return model

        build_with_card.card = card  # type: ignore[attr-defined]
        return build_with_card  # type: ignore[return-value]

    return decorate


def _dist_name(ep: EntryPoint) -> str:
    return ep.dist.name if ep.dist is not None else "<unknown distribution>"


@functools.cache
def _entries() -> dict[str, tuple[EntryPoint, ...]]:
    found: dict[str, list[EntryPoint]] = {}
    for ep in entry_points(group=GROUP):
        claims = found.setdefault(ep.name, [])
        # The same distribution seen twice on sys.path (editable + site) is one claim.
        if all(_dist_name(other) != _dist_name(ep) for other in claims):
            claims.append(ep)
    return {name: tuple(eps) for name, eps in found.items()}


def refresh() -> None:
    """Forget the cached entry points (after installing a plugin in a running process)."""
    _entries.cache_clear()
    _load.cache_clear()


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style pattern, sorted; imports no plugin."""
    return sorted(name for name in _entries() if fnmatch.fnmatchcase(name, pattern))


def _not_found(name: str) -> ModelNotFoundError:
    names = list(_entries())
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.6)
    close += [n for n in names if name.lower() in n.lower() and n not in close][: 5 - len(close)]
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return ModelNotFoundError(
        f"no model named {name!r} is registered.{hint} "
        f"`cnnzoo models` lists all {len(names)}; an arch package (pip install cnnzoo-<family>) "
        f"adds more."
    )


@functools.cache
def _load(name: str) -> Callable[..., ClassifierNet]:
    claims = _entries().get(name)
    if not claims:
        raise _not_found(name)
    if len(claims) > 1:
        owners = ", ".join(f"{_dist_name(ep)} ({ep.value})" for ep in claims)
        raise PluginError(
            f"model name {name!r} is claimed by more than one distribution: {owners}. "
            f"Uninstall one of them; every other model stays usable."
        )
    (ep,) = claims
    try:
        build = ep.load()
    except Exception as exc:
        raise PluginError(
            f"plugin distribution {_dist_name(ep)!r} failed to load model {name!r} from "
            f"{ep.value!r}: {type(exc).__name__}: {exc}. Reinstall or fix that package; "
            f"every other model stays usable."
        ) from exc
    if not callable(build) or not isinstance(getattr(build, "card", None), ModelCard):
        raise PluginError(
            f"plugin distribution {_dist_name(ep)!r} registers {name!r} as {ep.value!r}, "
            f"which is not a builder decorated with cnnzoo.variant(ModelCard(...))."
        )
    return build


def model_card(name: str) -> ModelCard:
    """The paper's card of a registered model (imports its plugin)."""
    return _load(name).card  # type: ignore[attr-defined]


def create_model(
    name: str,
    num_classes: int | None = None,
    in_chans: int | None = None,
    pretrained: bool | str = False,
    **kwargs: Any,
) -> ClassifierNet:
    """Build a registered model: `create_model("lenet5", num_classes=10, in_chans=1)`.

    `num_classes` and `in_chans` default to the paper's; other keyword arguments go to the
    variant's builder (only those the paper varied, such as a width multiplier).
    `pretrained=True` loads the first published weights the card lists (torchvision's or
    timm's, renamed into ours), or the ones named: `pretrained="ResNet50_Weights.IMAGENET2K_V2"`.
    """
    build = _load(name)
    if pretrained:
        from cnnzoo.pretrained import choose_weights

        weights = choose_weights(name, build.card, pretrained)  # type: ignore[attr-defined]
    for arg, value in (("num_classes", num_classes), ("in_chans", in_chans)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise ValueError(f"{arg} must be a positive integer; got {value!r}.")
    accepted = inspect.signature(build).parameters
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown and not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        options = ", ".join(p for p in accepted if p not in ("num_classes", "in_chans")) or "none"
        raise TypeError(
            f"model {name!r} takes no argument {', '.join(map(repr, unknown))}; "
            f"its own arguments are: {options}."
        )
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if in_chans is not None:
        kwargs["in_chans"] = in_chans
    model = build(**kwargs)
    model.name = name
    if pretrained:
        from cnnzoo.pretrained import load_pretrained

        load_pretrained(model, weights)
    return model
