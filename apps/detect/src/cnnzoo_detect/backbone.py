"""Any registered classifier cut into a detection backbone, through its `feature_info` alone.

The classifier's `forward_features` is traced once with torch.fx, by `cnnzoo.features`, the
same cut that `create_model(features_only=True)` makes; each stage of `feature_info` is the
last operation inside its module. From that graph come:

- the trunk (`cnnzoo.features.trunk`): the graph up to the stages a neck needs, returning
  their maps;
- the RoI head of the C4 form: the graph from the stride-16 stage to the last stage, fed
  with RoI features instead of the stride-16 map (the ResNet paper's conv5_x on 14x14 RoIs);
- the stage of each parameter, to freeze the early stages as the papers did.

Nothing here knows one family from another: a new plugin works if its `feature_info` is
right and its `forward_features` traces.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch
from cnnzoo import ClassifierNet, CnnzooError, ImageClassifier, create_model
from cnnzoo.features import TracedClassifier, graph_module, trace, trunk
from torch import fx, nn
from torchvision.ops import FeaturePyramidNetwork, FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

# FPN's pyramid levels (FPN §3: P2-P5 on conv2_x-conv5_x, strides 4 to 32).
FPN_STRIDES = (4, 8, 16, 32)
FPN_CHANNELS = 256  # "d = 256 in all the feature maps" (FPN §3)
Stages = TypeVar("Stages")


class BackboneError(CnnzooError, ValueError):
    """A model that cannot serve as the backbone asked for."""


def stage_head(traced: TracedClassifier, first: int, last: int) -> fx.GraphModule:
    """The classifier from stage `first`'s output to stage `last`'s output: called on a
    map shaped like stage `first`'s, it computes what stages first+1..last compute."""
    name = traced.model.name or type(traced.model).__name__
    graph = fx.Graph()
    features = graph.placeholder("features")
    env: dict[fx.Node, fx.Node] = {}
    split, end = traced.stage_nodes[first], traced.stage_nodes[last]
    started = False
    for node in traced.graph.nodes:
        if node is split:
            env[node] = features
            started = True
            continue
        if not started or node.op == "placeholder":
            continue
        missing = [n for n in node.all_input_nodes if n not in env]
        if missing:
            raise BackboneError(
                f"{name}'s stages after {traced.feature_info[first].module!r} read maps from "
                f"before it ({', '.join(n.name for n in missing)}), so they cannot run on RoI "
                f"features alone: the C4 form does not fit this network. Use --model.neck "
                f"single or fpn."
            )
        env[node] = graph.node_copy(node, lambda n: env[n])
        if node is end:
            break
    graph.output(env[end])
    return graph_module(traced, graph, "StageHead")


def parameter_stages(traced: TracedClassifier) -> dict[str, int]:
    """The feature stage each parameter of forward_features belongs to: the stage whose
    output is the first to follow the parameter's use (so a transition layer between two
    dense blocks belongs to the later block)."""
    stage_of_node = {node: i for i, node in enumerate(traced.stage_nodes)}
    pending: list[str] = []
    stages: dict[str, int] = {}
    for node in traced.graph.nodes:
        if node.op == "call_module":
            module = traced.root.get_submodule(node.target)
            pending += [f"{node.target}.{name}" for name, _ in module.named_parameters()]
        elif node.op == "get_attr":
            pending.append(node.target)
        if node in stage_of_node:
            for name in pending:
                stages.setdefault(name, stage_of_node[node])
            pending = []
    return stages


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Swap every BatchNorm2d for a FrozenBatchNorm2d holding its statistics and affine
    parameters: with one or two images a GPU, batch statistics are too noisy to train, so
    the papers keep the ImageNet statistics fixed (ResNet paper, appendix A; FPN §5.1)."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            if child.affine:
                frozen.weight.copy_(child.weight.detach())
                frozen.bias.copy_(child.bias.detach())
            if child.track_running_stats:
                frozen.running_mean.copy_(child.running_mean)
                frozen.running_var.copy_(child.running_var)
            setattr(module, name, frozen)
        else:
            freeze_batchnorm(child)
    return module


def load_classifier(
    arch: str, checkpoint: str | Path | None = None, in_chans: int = 3
) -> ClassifierNet:
    """A registered classifier, at random or with the weights of a cnnzoo classification
    checkpoint (`ImageClassifier.from_checkpoint`, which refuses another model's)."""
    if checkpoint is None:
        return create_model(arch, in_chans=in_chans)
    model = ImageClassifier.from_checkpoint(checkpoint, arch=arch).model
    if model.in_chans != in_chans:
        raise CnnzooError(
            f"the checkpoint {checkpoint} holds a {model.in_chans}-channel {arch}; detection "
            f"reads {in_chans}-channel (RGB) images. Train the classifier on RGB images."
        )
    return model


def cut_classifier(
    arch: str,
    checkpoint: str | Path | None,
    frozen_bn: bool | None,
    trainable_stages: int | None,
    choose_stages: Callable[[ClassifierNet], Stages],
) -> tuple[TracedClassifier, Stages]:
    """A registered classifier made ready to cut: loaded (`load_classifier`), its BatchNorm
    frozen, the stages a detector needs chosen from its feature_info (`choose_stages`,
    before tracing: a network that cannot serve fails on its strides, which says more than
    a failed trace), traced, and its early stages fixed.

    `frozen_bn` and `trainable_stages` default as torchvision's do: with backbone weights
    (a checkpoint), frozen BatchNorm and the last 3 stages trainable, as the papers
    fine-tune ImageNet models; from random weights, BatchNorm as it is and every stage
    trainable."""
    pretrained = checkpoint is not None
    classifier = load_classifier(arch, checkpoint)
    if pretrained if frozen_bn is None else frozen_bn:
        freeze_batchnorm(classifier)
    stages = choose_stages(classifier)
    traced = trace(classifier)
    count = len(traced.feature_info)
    if trainable_stages is None:
        trainable_stages = min(3, count) if pretrained else count
    freeze_stages(traced, trainable_stages)
    return traced, stages


class Backbone(nn.Module):
    """The trunk's maps, through a feature pyramid where there is one. `body` and `fpn`
    are named as torchvision's BackboneWithFPN names them, so its state dicts match."""

    def __init__(self, body: fx.GraphModule, out_channels: int, fpn: nn.Module | None) -> None:
        super().__init__()
        self.body = body
        self.fpn = fpn
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        features = self.body(x)
        return self.fpn(features) if self.fpn is not None else features


def _strides(model: ClassifierNet) -> list[int]:
    return [stage.stride for stage in model.feature_info]


def check_strides(model: ClassifierNet) -> None:
    """Faster R-CNN's anchors and RoIs need a coarse map (stride 16 in the papers)."""
    if max(_strides(model)) < 8:
        card = model.card
        size = f"{card.input_size[1]}x{card.input_size[2]}" if card else "small"
        raise BackboneError(
            f"{model.name} reaches a stride of only {max(_strides(model))} (a network for "
            f"{size} images, strides {_strides(model)}); Faster R-CNN needs a stage at "
            f"stride 16. Choose an ImageNet-sized model: `cnnzoo models` lists them."
        )


def single_map_stage(model: ClassifierNet) -> int:
    """The stage the single-map form uses: the last at stride 16 (VGG-16's conv5_3, as in
    the Faster R-CNN paper §3), else the deepest below it."""
    check_strides(model)
    strides = _strides(model)
    at16 = [i for i, stride in enumerate(strides) if stride == 16]
    return at16[-1] if at16 else max(i for i, stride in enumerate(strides) if stride <= 16)


def c4_stages(model: ClassifierNet) -> tuple[int, int]:
    """The C4 split: the trunk ends at the last stride-16 stage (conv4_x), the RoI head
    runs to the last stage (conv5_x), whose first block halves 14x14 RoIs to 7x7."""
    check_strides(model)
    info = model.feature_info
    at16 = [i for i, stage in enumerate(info) if stage.stride == 16]
    if not at16:
        raise BackboneError(
            f"{model.name} has no stage at stride 16 to end the C4 trunk on (its strides: "
            f"{_strides(model)}). Use --model.neck single or fpn."
        )
    split, last = at16[-1], len(info) - 1
    if info[last].stride != 32:
        raise BackboneError(
            f"{model.name} has no stage after its stride-16 stage {info[split].module!r} "
            f"that halves the map again, to serve as the per-RoI head of the C4 form (the "
            f"ResNet paper's conv5_x). Use --model.neck single (the Faster R-CNN paper's "
            f"form for VGG-16 and ZFNet) or fpn."
        )
    return split, last


def fpn_stages(model: ClassifierNet) -> list[int]:
    """The last stage at each of the strides 4, 8, 16 and 32 that the model has."""
    check_strides(model)
    strides = _strides(model)
    stages = [
        max(i for i, s in enumerate(strides) if s == stride)
        for stride in FPN_STRIDES
        if stride in strides
    ]
    if len(stages) < 2:
        raise BackboneError(
            f"{model.name} has feature stages at fewer than two of the strides "
            f"{FPN_STRIDES} (its strides: {strides}); a feature pyramid needs several. Use "
            f"--model.neck single."
        )
    return stages


def fpn_backbone(traced: TracedClassifier, stages: list[int]) -> Backbone:
    """FPN (Lin et al., 2017) on the given stages, with P6 by max pooling as torchvision's
    Faster R-CNN has it (FPN §4.1: "P6 is simply a stride two subsampling of P5")."""
    channels = [traced.feature_info[i].channels for i in stages]
    fpn = FeaturePyramidNetwork(channels, FPN_CHANNELS, extra_blocks=LastLevelMaxPool())
    return Backbone(trunk(traced, stages), FPN_CHANNELS, fpn)


def freeze_stages(traced: TracedClassifier, trainable_stages: int) -> None:
    """Keep the early stages fixed: all but the last `trainable_stages` of feature_info
    (torchvision's `trainable_backbone_layers`; the ResNet paper's detectors fix conv1 and
    conv2_x, i.e. 3 of 5 trainable)."""
    count = len(traced.feature_info)
    if not 0 <= trainable_stages <= count:
        raise ValueError(
            f"trainable_stages must be between 0 and {count} (the stages of "
            f"{traced.model.name}: {[s.module for s in traced.feature_info]}); "
            f"got {trainable_stages}."
        )
    first_trainable = count - trainable_stages
    parameters = dict(traced.root.named_parameters())
    for name, stage in parameter_stages(traced).items():
        if stage < first_trainable:
            parameters[name].requires_grad_(False)
