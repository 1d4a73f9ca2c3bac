"""The model registry: one entry point per model variant in the group `cnnzoo.models`.

Listing reads entry-point metadata only, so `list_models` imports no plugin; `create_model`
and `model_card` import the one plugin that provides the name. A broken plugin or a name
claimed by two distributions fails with the distribution's name, and only for that name.

A plugin may also bring another library's models, under a prefix: an entry point in the
group `cnnzoo.namespaces` (`timm = "cnnzoo_timm.namespace:namespace"`) names a `Namespace`,
and `timm/resnet18` is its `resnet18`. Its names are listed only when a pattern asks for
them (`list_models("timm/*")`), so the zoo's own listing neither shows them nor pays for
importing the other library; broken or clashing namespaces fail as broken plugins do.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import inspect
from collections.abc import Callable, Sequence
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from cnnzoo.card import ModelCard
from cnnzoo.errors import ModelNotFoundError, PluginError
from cnnzoo.head import PooledClassifierNet
from cnnzoo.protocol import ClassifierNet, no_global_pool

if TYPE_CHECKING:
    from cnnzoo.features import FeatureMaps

GROUP = "cnnzoo.models"
NAMESPACE_GROUP = "cnnzoo.namespaces"

Builder = TypeVar("Builder", bound=Callable[..., ClassifierNet])


@runtime_checkable
class Namespace(Protocol):
    """Another library's models, registered under a prefix (`timm/<name>`)."""

    def names(self) -> list[str]:
        """Every model name it lists, without the prefix."""
        ...

    def builder(self, name: str) -> Callable[..., ClassifierNet] | None:
        """The builder of `name` (without the prefix), decorated with `variant(card)` as
        a plugin's builders are; None for a name it does not know. It may take names it
        does not list (timm's `resnet18.tv_in1k`, a pretrained tag)."""
        ...


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


@functools.cache
def _namespace_entries() -> dict[str, tuple[EntryPoint, ...]]:
    found: dict[str, list[EntryPoint]] = {}
    for ep in entry_points(group=NAMESPACE_GROUP):
        claims = found.setdefault(ep.name, [])
        if all(_dist_name(other) != _dist_name(ep) for other in claims):
            claims.append(ep)
    return {prefix: tuple(eps) for prefix, eps in found.items()}


@functools.cache
def _namespace(prefix: str) -> Namespace:
    claims = _namespace_entries()[prefix]
    if len(claims) > 1:
        owners = ", ".join(f"{_dist_name(ep)} ({ep.value})" for ep in claims)
        raise PluginError(
            f"the namespace {prefix + '/'!r} is claimed by more than one distribution: "
            f"{owners}. Uninstall one of them; every other model stays usable."
        )
    (ep,) = claims
    try:
        namespace = ep.load()
    except Exception as exc:
        raise PluginError(
            f"plugin distribution {_dist_name(ep)!r} failed to load the namespace "
            f"{prefix + '/'!r} from {ep.value!r}: {type(exc).__name__}: {exc}. Reinstall or "
            f"fix that package; every other model stays usable."
        ) from exc
    if not isinstance(namespace, Namespace):
        raise PluginError(
            f"plugin distribution {_dist_name(ep)!r} registers the namespace {prefix + '/'!r} "
            f"as {ep.value!r}, which is not a cnnzoo.registry.Namespace (an object with "
            f"`names()` and `builder(name)`)."
        )
    return namespace


def _namespace_owner(prefix: str) -> EntryPoint:
    return _namespace_entries()[prefix][0]


def _namespace_call(prefix: str, what: str, call: Callable[[], Any]) -> Any:
    """A call into a namespace plugin, its failures named as a broken plugin's are."""
    try:
        return call()
    except (ModelNotFoundError, PluginError):
        raise
    except Exception as exc:
        ep = _namespace_owner(prefix)
        raise PluginError(
            f"plugin distribution {_dist_name(ep)!r} failed to {what} ({ep.value}): "
            f"{type(exc).__name__}: {exc}. Reinstall or fix that package; every other model "
            f"stays usable."
        ) from exc


def _namespaced_names(prefix: str) -> list[str]:
    names = _namespace_call(prefix, f"list its {prefix}/ models", _namespace(prefix).names)
    return [f"{prefix}/{name}" for name in names]


def refresh() -> None:
    """Forget the cached entry points (after installing a plugin in a running process)."""
    _entries.cache_clear()
    _namespace_entries.cache_clear()
    _namespace.cache_clear()
    _load.cache_clear()


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style pattern, sorted; imports no plugin.

    A pattern that starts with a namespace's prefix lists that namespace instead
    (`"timm/resnet*"`), which imports its plugin.
    """
    prefix, slash, _ = pattern.partition("/")
    names = _namespaced_names(prefix) if slash and prefix in _namespace_entries() else _entries()
    return sorted(name for name in names if fnmatch.fnmatchcase(name, pattern))


def _not_found(name: str, names: list[str] | None = None) -> ModelNotFoundError:
    names = list(_entries()) if names is None else names
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.6)
    close += [n for n in names if name.lower() in n.lower() and n not in close][: 5 - len(close)]
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    prefix, slash, _ = name.partition("/")
    if slash and prefix in _namespace_entries():
        where = f"`cnnzoo models '{prefix}/*'` lists its {len(names)}."
    else:
        where = (
            f"`cnnzoo models` lists all {len(names)}; an arch package (pip install "
            f"cnnzoo-<family>) adds more."
        )
        if slash:
            installed = ", ".join(f"{p}/" for p in sorted(_namespace_entries())) or "none"
            where += f" No namespace {prefix + '/'!r} is installed (installed: {installed})."
    return ModelNotFoundError(f"no model named {name!r} is registered.{hint} {where}")


def _load_entry_point(name: str) -> tuple[Any, EntryPoint]:
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
        return ep.load(), ep
    except Exception as exc:
        raise PluginError(
            f"plugin distribution {_dist_name(ep)!r} failed to load model {name!r} from "
            f"{ep.value!r}: {type(exc).__name__}: {exc}. Reinstall or fix that package; "
            f"every other model stays usable."
        ) from exc


def _load_namespaced(name: str) -> tuple[Any, EntryPoint]:
    prefix, _, rest = name.partition("/")
    namespace = _namespace(prefix)
    build = _namespace_call(prefix, f"build {name!r}", lambda: namespace.builder(rest))
    if build is None:
        raise _not_found(name, _namespaced_names(prefix))
    return build, _namespace_owner(prefix)


@functools.cache
def _load(name: str) -> Callable[..., ClassifierNet]:
    # A plugin's own name comes first: `timm/x` goes to the namespace only when none claims it.
    if name not in _entries() and name.partition("/")[0] in _namespace_entries():
        build, ep = _load_namespaced(name)
    else:
        build, ep = _load_entry_point(name)
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
    features_only: bool = False,
    out_indices: Sequence[int] | None = None,
    global_pool: str | None = None,
    **kwargs: Any,
) -> ClassifierNet | FeatureMaps:
    """Build a registered model: `create_model("lenet5", num_classes=10, in_chans=1)`.

    `num_classes` and `in_chans` default to the paper's; other keyword arguments go to the
    variant's builder (only those the paper varied, such as a width multiplier).
    `pretrained=True` loads the first published weights the card lists (torchvision's or
    timm's, renamed into ours), or the ones named: `pretrained="ResNet50_Weights.IMAGENET2K_V2"`.
    `features_only=True` gives the network cut into its stages' feature maps (a
    `cnnzoo.FeatureMaps`): its forward gives one map for each stage of `feature_info` that
    `out_indices` names (every stage where None).

    As in timm, `num_classes=0` leaves the classifier out (forward gives the features the
    classifier would have taken), and `global_pool` sets the pooling of a net whose head
    pools globally: "avg", "max", or "" for none (with `num_classes=0`, forward gives the
    last feature map).
    """
    if out_indices is not None and not features_only:
        raise ValueError("out_indices picks feature maps: pass it with features_only=True.")
    build = _load(name)
    if pretrained:
        from cnnzoo.pretrained import choose_weights

        weights = choose_weights(name, build.card, pretrained)  # type: ignore[attr-defined]
    for arg, value, least in (("num_classes", num_classes, 0), ("in_chans", in_chans, 1)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < least
        ):
            kind = "a positive integer" if least else "a positive integer, or 0 for none"
            raise ValueError(f"{arg} must be {kind}; got {value!r}.")
    accepted = inspect.signature(build).parameters
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown and not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        options = ", ".join(p for p in accepted if p not in ("num_classes", "in_chans")) or "none"
        raise TypeError(
            f"model {name!r} takes no argument {', '.join(map(repr, unknown))}; "
            f"its own arguments are: {options}."
        )
    if num_classes:  # 0: built with the paper's, whose classifier is then taken out
        kwargs["num_classes"] = num_classes
    if in_chans is not None:
        kwargs["in_chans"] = in_chans
    model = build(**kwargs)
    model.name = name
    if pretrained:
        from cnnzoo.pretrained import load_pretrained

        load_pretrained(model, weights)
    if global_pool is not None:
        if not isinstance(model, PooledClassifierNet):
            raise no_global_pool(name)
        model.set_global_pool(global_pool)
    if num_classes == 0:
        model.reset_classifier(0)
    if features_only:
        from cnnzoo.features import FeatureMaps  # torchvision's fx tooling, loaded when used

        return FeatureMaps(model, out_indices)
    return model
