"""Every registered classifier with a spatial transformer in front, as `st/<name>`.

The entry point `st = "cnnzoo_stn.namespace:namespace"` in the group `cnnzoo.namespaces`
makes the registry ask `namespace` for names that start with `st/`, so that any model of
the zoo trains with a transformer before it (§4: "the spatial transformer is always at the
beginning of the network"), from Python or from the command line:

    cnnzoo.create_model("st/lenet5_relu", num_classes=10)
    cnnzoo fit --model.arch st/lenet5_relu --data cnnzoo_data.MNISTDataModule ...
"""

from __future__ import annotations

from collections.abc import Callable

from cnnzoo import ClassifierNet, list_models, model_card, variant

from cnnzoo_stn.network import spatial_transformer, transformed_card

PREFIX = "st"


class SpatialTransformerNamespace:
    """The zoo's own models, each behind an affine spatial transformer (see
    `cnnzoo.registry.Namespace`)."""

    def names(self) -> list[str]:
        return list_models()  # the zoo's own; not other namespaces' models

    def builder(self, name: str) -> Callable[..., ClassifierNet] | None:
        if name not in list_models():
            return None

        @variant(transformed_card(name, model_card(name)))
        def build(num_classes: int | None = None, in_chans: int | None = None) -> ClassifierNet:
            return spatial_transformer(name, num_classes=num_classes, in_chans=in_chans)

        return build


namespace = SpatialTransformerNamespace()
