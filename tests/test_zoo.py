"""What every registered model must satisfy, whatever its family: its card is complete, its
parameters and multiply-adds match the paper's figures, `feature_info` tells the truth, it
trains at the paper's input size, and it speaks the whole protocol.

Family test files check what is particular to a paper (connection tables, initialisation,
equivalence with torchvision's or timm's weights); this file runs over `list_models()`, so a
new plugin is tested here the moment it registers.
"""

from __future__ import annotations

import math

import cnnzoo
import pytest
import torch
from cnnzoo import AuxLogits, create_model, list_models, model_card
from cnnzoo.complexity import complexity, matches_published, printed_precision

MODELS = list_models()


def test_printed_precision_reads_the_figure_as_printed():
    assert printed_precision(138_000_000) == 500_000
    assert printed_precision(25_557_032) == 0
    assert matches_published(138_357_544, 138_000_000)
    assert not matches_published(139_000_000, 138_000_000)
    assert matches_published(139_000_000, 138_000_000, tolerance=0.01)


@pytest.mark.parametrize("name", MODELS)
def test_card_is_complete(name):
    card = model_card(name)
    assert card.paper and card.authors and card.url.startswith("http")
    assert 1989 <= card.year <= 2026
    assert len(card.input_size) == 3 and card.num_classes > 1
    assert card.published_params is not None, "every card states a parameter count"
    assert card.params_source, "and where that figure comes from"
    if card.published_macs is not None:
        assert card.macs_source
    for error in card.published_errors:
        assert error.dataset and error.source and (error.top1 or error.top5)
    if card.params_tolerance or card.macs_tolerance:
        assert card.notes, "a card that departs from the paper's figures says why in its notes"


@pytest.mark.parametrize("name", MODELS)
def test_parameters_match_the_card(name):
    card = model_card(name)
    ours = complexity(name).params
    assert matches_published(ours, card.published_params, card.params_tolerance), (
        f"{name}: {ours:,} parameters; the card says {card.published_params:,} "
        f"({card.params_source})"
    )


@pytest.mark.parametrize("name", [n for n in MODELS if model_card(n).published_macs])
def test_multiply_adds_match_the_card(name):
    card = model_card(name)
    ours = complexity(name).macs
    assert matches_published(ours, card.published_macs, card.macs_tolerance), (
        f"{name}: {ours:,} multiply-adds at {card.input_size}; the card says "
        f"{card.published_macs:,} ({card.macs_source})"
    )


def _feature_maps(model: cnnzoo.ClassifierNet, size: int) -> dict[str, torch.Size]:
    shapes: dict[str, torch.Size] = {}
    hooks = [
        model.get_submodule(info.module).register_forward_hook(
            lambda _m, _i, out, key=info.module: shapes.__setitem__(key, out.shape)
        )
        for info in model.feature_info
    ]
    channels = model.in_chans
    with torch.no_grad():
        model.eval().forward_features(torch.zeros(1, channels, size, size, device="meta"))
    for hook in hooks:
        hook.remove()
    return shapes


@pytest.mark.parametrize("name", MODELS)
def test_feature_info_matches_the_feature_maps(name):
    """Channels as stated; stride as stated: 64 more input pixels give 64/stride more
    map pixels, whatever the padding (the paper's size and 64 more, on the meta device)."""
    size = model_card(name).input_size[1]
    with torch.device("meta"):
        model = create_model(name)
    assert model.feature_info, "feature_info lists at least one stage"
    base, larger = _feature_maps(model, size), _feature_maps(model, size + 64)
    for info in model.feature_info:
        assert base[info.module][1] == info.channels, info
        grown = larger[info.module][-1] - base[info.module][-1]
        assert grown * info.stride == 64, f"{info}: 64 more pixels gave {grown} more"
    strides = [info.stride for info in model.feature_info]
    assert strides == sorted(strides)


@pytest.mark.parametrize("name", MODELS)
def test_trains_at_the_papers_input_size(name):
    """One forward and backward pass of the paper's loss at the paper's input size: every
    parameter gets a gradient (no dead layer), auxiliary classifiers answer only in training."""
    card = model_card(name)
    torch.manual_seed(0)
    model = create_model(name, num_classes=7)
    x = torch.randn(2, *card.input_size)
    target = torch.tensor([1, 5])
    out = model.train()(x)
    logits, aux = (out.logits, out.aux_logits) if isinstance(out, AuxLogits) else (out, ())
    assert bool(aux) == (card.aux_loss_weight > 0)
    assert logits.shape == (2, 7) and all(a.shape == (2, 7) for a in aux)
    # the paper's loss, as the trainer takes it: CapsNet's decoder learns only through it
    loss = model.criterion(logits, target) + sum(model.criterion(a, target) for a in aux)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without a gradient: {missing[:5]}"
    with torch.no_grad():
        assert model.eval()(x[:1]).shape == (1, 7)


@pytest.mark.bad_input
@pytest.mark.parametrize("name", MODELS)
def test_protocol(name):
    """forward = forward_head(forward_features); pre_logits; reset_classifier; in_chans.
    At a small input where the net allows one (the paper's size is tested above)."""
    card = model_card(name)
    size = (
        card.input_size[1:] if card.fixed_input_size else (max(card.min_input_size or 0, 64),) * 2
    )
    torch.manual_seed(0)
    model = create_model(name, num_classes=5, in_chans=1)
    x = torch.randn(2, 1, *size)
    with torch.no_grad():
        model.eval()  # as built: its eval forward is finite before any training
        x = x[:1]
        features = model.forward_features(x)
        assert torch.isfinite(model(x)).all()
        torch.testing.assert_close(model.forward_head(features), model(x))
        pre_logits = model.forward_head(features, pre_logits=True)
        assert pre_logits.ndim == 2
        # timm's conventions: the sizes it reads, the classifier named as in the weights,
        # and reset_classifier(0) (and (0, "") where the head pools globally).
        assert features.shape[1] == model.num_features
        assert pre_logits.shape[1] == model.head_hidden_size
        model.reset_classifier(3)
        assert model(x).shape == (1, 3) and model.num_classes == 3
        features, pre_logits = model.forward_features(x), model(x)
        pre_logits = model.forward_head(features, pre_logits=True)
        assert model.get_classifier() is model.get_submodule(model.classifier_name)
        classifier_state = [k for k in model.state_dict() if k.startswith(model.classifier_name)]
        assert classifier_state, f"no weights under {model.classifier_name!r}"
        model.reset_classifier(0)
        assert model.num_classes == 0 and not isinstance(model(x), AuxLogits)
        pooled = model(x)
        assert pooled.shape == (1, model.head_hidden_size)
        torch.testing.assert_close(
            pooled, model.forward_head(model.forward_features(x), pre_logits=True)
        )
        if isinstance(model, cnnzoo.PooledClassifierNet):
            torch.testing.assert_close(pooled, pre_logits)  # the classifier's own input
            model.reset_classifier(0, "")
            torch.testing.assert_close(model(x), features)
        else:
            with pytest.raises(ValueError, match="does not end in a global pooling"):
                model.reset_classifier(0, "")
    with pytest.raises(cnnzoo.InputShapeError, match="channels"):
        model(torch.randn(1, 3, *size))


def _cheap(name: str) -> bool:
    """Small enough to run for real on 2 CPU cores in every test that needs numbers."""
    return model_card(name).published_params < 2_000_000


def _small_input_size(name: str) -> tuple[int, int, int]:
    """The smallest input the net takes up to 64 pixels (its own if it takes only that)."""
    card = model_card(name)
    if card.fixed_input_size:
        return card.input_size
    side = max(card.min_input_size or 0, min(card.input_size[1], 64))
    return (card.input_size[0], side, side)


@pytest.mark.parametrize("name", MODELS)
def test_forward_is_traceable_by_torch_fx(name):
    """torch.fx traces forward (no Python control flow on tensor values), in training mode
    too where it differs (auxiliary classifiers); the traced graph runs and, where the net is
    cheap to run, gives the same numbers."""
    card = model_card(name)
    with torch.device("meta"):
        model = create_model(name)
    images = torch.zeros(2, *card.input_size, device="meta")  # two: BatchNorm trains on 1x1
    for training in (True, False) if card.aux_loss_weight else (False,):
        out = torch.fx.symbolic_trace(model.train(training))(images)
        assert isinstance(out, AuxLogits) == training
        logits = out.logits if isinstance(out, AuxLogits) else out
        assert logits.shape == (2, card.num_classes)
    if not _cheap(name):
        return
    torch.manual_seed(0)
    model = create_model(name).eval()
    image = torch.randn(1, *_small_input_size(name))
    with torch.no_grad():
        torch.testing.assert_close(torch.fx.symbolic_trace(model)(image), model(image))


@pytest.mark.parametrize("name", MODELS)
def test_features_only_gives_each_stage_of_feature_info(name):
    """create_model(features_only=True) cuts the net into the maps its feature_info lists
    (channels as stated, sizes by the stated stride); where the net is cheap to run,
    out_indices picks some of them and the last stage's map is forward_features' own."""
    size = _small_input_size(name)
    with torch.device("meta"):
        features = create_model(name, features_only=True)
        stages = create_model(name).feature_info
    assert isinstance(features, cnnzoo.FeatureMaps)
    assert features.feature_info == stages
    maps = features(torch.zeros(2, *size, device="meta"))
    assert len(maps) == len(stages)
    for info, feature_map in zip(stages, maps, strict=True):
        assert feature_map.shape[:2] == (2, info.channels), info
        # No larger than size / stride, rounded up, however each layer pads.
        assert feature_map.shape[-1] <= math.ceil(size[-1] / info.stride) + 1, info
    if not _cheap(name):
        return
    torch.manual_seed(0)
    classifier = create_model(name).eval()
    first_and_last = cnnzoo.FeatureMaps(classifier, out_indices=(0, -1))
    assert first_and_last.feature_info == [stages[0], stages[-1]]
    image = torch.randn(1, *size)
    with torch.no_grad():
        first, last = first_and_last(image)
        torch.testing.assert_close(last, classifier.forward_features(image))
    assert first.shape[1:] == maps[0].shape[1:] and first.device.type == "cpu"


@pytest.mark.parametrize("name", MODELS)
def test_forward_intermediates_gives_the_stages_maps_and_the_last(name):
    """timm's forward_intermediates: every stage's map (the last n with indices=n) and
    forward_features' map in one pass; stop_early ends at the last stage asked for. Shapes
    on the meta device for every net; the numbers where the net is cheap to run."""
    size = _small_input_size(name)
    with torch.device("meta"):
        model = create_model(name).eval()
    image = torch.zeros(1, *size, device="meta")
    final, maps = model.forward_intermediates(image)
    assert final.shape == model.forward_features(image).shape
    assert [m.shape[1] for m in maps] == [info.channels for info in model.feature_info]
    last_two = model.forward_intermediates(image, indices=2, intermediates_only=True)
    assert [m.shape for m in last_two] == [m.shape for m in maps[-2:]]
    stopped, first = model.forward_intermediates(image, indices=[0], stop_early=True)
    assert stopped.shape == maps[0].shape and len(first) == 1
    if not _cheap(name):
        return
    torch.manual_seed(0)
    model = create_model(name).eval()
    image = torch.randn(1, *size)
    with torch.no_grad():
        final, maps = model.forward_intermediates(image)
        torch.testing.assert_close(final, model.forward_features(image))
        expected = cnnzoo.FeatureMaps(model)(image)
    for ours, theirs in zip(maps, expected, strict=True):
        torch.testing.assert_close(ours, theirs)


@pytest.mark.bad_input
def test_forward_intermediates_refuses_what_it_cannot_give():
    model = create_model("lenet5")
    image = torch.zeros(1, 1, 32, 32)
    with pytest.raises(cnnzoo.FeatureMapsError, match="last 9 of lenet5's 5 stages"):
        model.forward_intermediates(image, indices=9)
    with pytest.raises(ValueError, match="norm=True and output_fmt='NHWC' are not supported"):
        model.forward_intermediates(image, output_fmt="NHWC")
    with pytest.raises(cnnzoo.InputShapeError, match="1-channel images but got 3"):
        model.forward_intermediates(torch.zeros(1, 3, 32, 32))


def test_forward_intermediates_follows_a_new_classifier_inside_the_features():
    """NIN's classifier is its last 1x1 convolution, inside its features: a new one is what
    the maps come from next."""
    model = create_model("nin_cifar10").eval()
    image = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert model.forward_intermediates(image)[0].shape[1] == 10
        model.reset_classifier(4)
        final, maps = model.forward_intermediates(image)
        assert final.shape[1] == maps[-1].shape[1] == 4
        torch.testing.assert_close(final, model.forward_features(image))


@pytest.mark.bad_input
def test_features_only_refuses_stages_the_net_has_not():
    with pytest.raises(cnnzoo.FeatureMapsError, match=r"0 to 4 .*0: features\.c1"):
        create_model("lenet5", features_only=True, out_indices=(0, 5))
    with pytest.raises(cnnzoo.FeatureMapsError, match="each stage once"):
        create_model("lenet5", features_only=True, out_indices=(2, 1))
    with pytest.raises(ValueError, match="with features_only=True"):
        create_model("lenet5", out_indices=(1,))
    features = create_model("lenet5", features_only=True)
    with pytest.raises(cnnzoo.InputShapeError, match="1-channel images but got 3"):
        features(torch.zeros(1, 3, 32, 32))
