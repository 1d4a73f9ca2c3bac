"""Any model cut into its stages' feature maps, through its `feature_info` alone.

`forward_features` is traced once with torch.fx; each stage of `feature_info` is the last
operation inside its module. The graph up to the stages asked for is the trunk, a module
that returns their maps and computes nothing after the last of them. `create_model(name,
features_only=True, out_indices=...)` gives a `FeatureMaps` made of one; the detection app
cuts its backbones from the same graph.

Nothing here knows one family from another: a new plugin works if its `feature_info` is
right and its `forward_features` traces.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch
import torchvision
from torch import fx, nn
from torchvision.models.feature_extraction import NodePathTracer
from torchvision.ops import FrozenBatchNorm2d

from cnnzoo.errors import FeatureMapsError
from cnnzoo.input_check import check_input

if TYPE_CHECKING:  # the protocol imports this module when a net is asked for its maps
    from cnnzoo.protocol import ClassifierNet, FeatureInfo


class _ForwardFeatures(nn.Module):
    """`model.forward_features` as a forward, for tracing. Its module keys start with
    `model.`, as an ImageClassifier checkpoint's do."""

    def __init__(self, model: ClassifierNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)


@dataclass
class TracedClassifier:
    """The traced `forward_features` of a classifier and the node of each feature stage."""

    model: ClassifierNet
    root: nn.Module  # the model under `model.`, whose forward is its forward_features
    graph: fx.Graph
    stage_nodes: list[fx.Node]  # the output node of each feature_info stage, in order

    @property
    def feature_info(self) -> list[FeatureInfo]:
        return self.model.feature_info


def trace(model: ClassifierNet) -> TracedClassifier:
    """Trace `model.forward_features` and find each feature stage's output node."""
    name = model.name or type(model).__name__
    root = _ForwardFeatures(model)
    # FrozenBatchNorm2d stays one node: a detection backbone freezes BatchNorm before tracing.
    tracer = NodePathTracer(
        autowrap_modules=(math, torchvision.ops), leaf_modules=[FrozenBatchNorm2d]
    )
    try:
        graph = tracer.trace(root)
    except Exception as exc:
        raise FeatureMapsError(
            f"{name}'s forward_features cannot be traced by torch.fx ({type(exc).__name__}: "
            f"{exc}), so it cannot be cut into its stages' feature maps. Its forward_features "
            f"must not branch on tensor values or sizes."
        ) from exc
    qualnames = tracer.node_to_qualname
    stage_nodes = []
    for stage in model.feature_info:
        prefix = f"model.{stage.module}"
        matches = [
            node
            for node, qualname in qualnames.items()
            if qualname == prefix or qualname.startswith(prefix + ".")
        ]
        if not matches:
            raise FeatureMapsError(
                f"{name}'s feature_info names {stage.module!r}, but its forward_features "
                f"never calls that module. Fix the model's feature_info."
            )
        stage_nodes.append(matches[-1])
    return TracedClassifier(model, root, graph, stage_nodes)


def graph_module(traced: TracedClassifier, graph: fx.Graph, name: str) -> fx.GraphModule:
    """A module running `graph`, a piece of the traced one, with only the submodules it
    calls."""
    module = fx.GraphModule(traced.root, graph, name)
    module.graph.eliminate_dead_code()
    module.graph.lint()
    module.recompile()
    module.delete_all_unused_submodules()
    return module


def trunk(traced: TracedClassifier, stages: Sequence[int], final: bool = False) -> fx.GraphModule:
    """The classifier up to the given stages, returning {"0": map, "1": map, ...}; with
    `final`, the whole of forward_features, its output under "final" too."""
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    wanted = {traced.stage_nodes[i]: str(k) for k, i in enumerate(stages)}
    outputs: dict[str, fx.Node] = {}
    for node in traced.graph.nodes:
        if node.op == "output":
            outputs["final"] = env[node.args[0]]
            break
        env[node] = graph.node_copy(node, lambda n: env[n])
        if node in wanted:
            outputs[wanted[node]] = env[node]
        if len(outputs) == len(wanted) and not final:
            break
    keys = [str(k) for k in range(len(stages))] + (["final"] if final else [])
    graph.output(OrderedDict((key, outputs[key]) for key in keys))
    return graph_module(traced, graph, "Trunk")


def stage_indices(model: ClassifierNet, out_indices: Sequence[int] | None) -> list[int]:
    """The stages of `feature_info` that `out_indices` names (all where None), counting from
    the end for negative indices as Python does; in order, each once."""
    count = len(model.feature_info)
    if out_indices is None:
        return list(range(count))
    chosen = []
    for index in out_indices:
        if isinstance(index, bool) or not isinstance(index, int) or not -count <= index < count:
            stages = ", ".join(f"{i}: {s.module}" for i, s in enumerate(model.feature_info))
            raise FeatureMapsError(
                f"out_indices must name stages of {model.name or type(model).__name__}'s "
                f"feature_info, 0 to {count - 1} (or -1 to -{count} from the end); got "
                f"{index!r}. Its stages are {stages}."
            )
        chosen.append(index % count)
    if sorted(set(chosen)) != chosen:
        raise FeatureMapsError(
            f"out_indices must name each stage once, from the first to the last; got "
            f"{tuple(out_indices)}."
        )
    return chosen


def intermediate_indices(model: ClassifierNet, indices: int | Sequence[int] | None) -> list[int]:
    """timm's `indices` of `forward_intermediates`: None every stage, n the last n stages, a
    sequence the stages it names (as `out_indices`)."""
    if isinstance(indices, int) and not isinstance(indices, bool):
        count = len(model.feature_info)
        if not 0 < indices <= count:
            raise FeatureMapsError(
                f"indices={indices} asks for the last {indices} of "
                f"{model.name or type(model).__name__}'s {count} stages: give 1 to {count}, "
                f"or a list of stages."
            )
        return list(range(count - indices, count))
    return stage_indices(model, indices)


def intermediates(
    model: ClassifierNet,
    x: torch.Tensor,
    indices: int | Sequence[int] | None = None,
    stop_early: bool = False,
    intermediates_only: bool = False,
    cuts: dict | None = None,
) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
    """`ClassifierNet.forward_intermediates`: one pass through the traced forward_features,
    cut after the last stage asked for unless the final map is wanted. The cut for each
    choice of stages is made once and kept in `cuts` (the net's: its modules are the
    net's own)."""
    check_input(x, model.name or type(model).__name__, model.in_chans, model.card)
    stages = tuple(intermediate_indices(model, indices))
    whole = not (intermediates_only or stop_early)
    cuts = {} if cuts is None else cuts
    if (stages, whole) not in cuts:
        cuts[stages, whole] = trunk(trace(model), stages, final=whole)
    outputs = cuts[stages, whole](x)
    maps = [outputs[str(k)] for k in range(len(stages))]
    if intermediates_only:
        return maps
    # stop_early: as timm's, the final map is where the pass stopped, the last stage's.
    return (outputs["final"] if whole else maps[-1]), maps


class FeatureMaps(nn.Module):
    """A classifier cut after the stages `out_indices` picks from its `feature_info`: its
    forward gives their maps, a list in stage order, and computes nothing after the last.

    `feature_info` lists the stages it gives. The classifier's modules sit under
    `trunk.model.`, those after the last stage and the head left out.
    """

    def __init__(self, model: ClassifierNet, out_indices: Sequence[int] | None = None) -> None:
        super().__init__()
        stages = stage_indices(model, out_indices)
        self.trunk = trunk(trace(model), stages)
        self.out_indices = tuple(stages)
        self.feature_info = [model.feature_info[i] for i in stages]
        self.in_chans = model.in_chans
        self.card = model.card
        self.name = model.name
        # The head that fixed some nets' input size is cut off; a minimum size still holds.
        self._input_card = replace(model.card, fixed_input_size=False) if model.card else None
        self.train(model.training)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        check_input(x, self.name or type(self).__name__, self.in_chans, self._input_card)
        return list(self.trunk(x).values())
