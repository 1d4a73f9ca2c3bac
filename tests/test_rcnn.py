"""R-CNN (Girshick et al., 2014): each stage of the paper against a hand computation or a
synthetic case whose answer is known, then the whole model on two COCO128 images.

The warp (appendix A) is checked pixel for pixel; the fine-tuning batch (§2.3) by its
composition; the SVMs and hard negative mining on separable features; box regression
(appendix C) on features that determine the boxes exactly; NMS on boxes of known overlaps.
The real check fine-tunes MobileNet-v1 0.25 (0.47M parameters, the smallest ImageNet
network of the zoo) on 64x64 windows of two COCO128 images, then fits its SVMs and box
regressors and detects.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from cnnzoo import CnnzooError, create_model
from cnnzoo_detect.box_regression import apply_regression, regression_targets, ridge_regression
from cnnzoo_detect.proposals import ProposalError
from cnnzoo_detect.rcnn import (
    CONTEXT_PADDING,
    RCNN,
    RCNNError,
    UntrainedClassWarning,
    dilate_boxes,
    sample_windows,
    warp_regions,
    window_labels,
)
from cnnzoo_detect.svm import EASY_SCORE, HARD_SCORE, HardNegativeCache, train_svm
from PIL import Image
from torchvision.ops import box_iou
from torchvision.transforms.v2.functional import pil_to_tensor

BACKBONE = "mobilenet_v1_025"
WARP = 64  # 32 pixels of box inside the 16-pixel context: cheap windows on a CPU
COCO_IMAGES = ("000000000009.jpg", "000000000025.jpg")  # 8 objects; 2 giraffes
SHORT_SIDE = 128


def tiny_rcnn(num_classes: int = 3, **kwargs) -> RCNN:
    torch.manual_seed(0)
    return RCNN(create_model(BACKBONE), num_classes, warp_size=WARP, **kwargs)


def jittered(boxes: torch.Tensor, copies: int, spread: float, generator) -> torch.Tensor:
    """Boxes moved by up to `spread` of their sides: proposals around the objects."""
    sides = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2).repeat(copies, 1)
    noise = (torch.rand(len(sides), 4, generator=generator) * 2 - 1) * spread
    return boxes.repeat(copies, 1) + noise * sides


def random_boxes(count: int, width: int, height: int, generator) -> torch.Tensor:
    corners = torch.rand(count, 2, generator=generator) * torch.tensor([width, height]) * 0.8
    sides = torch.rand(count, 2, generator=generator) * torch.tensor([width, height]) * 0.5 + 8
    return torch.cat([corners, corners + sides], dim=1)


@pytest.fixture(scope="module")
def coco_images(shared_data: Path):
    """Two COCO128 images at a 128-pixel shorter side, float in [0, 1], with their targets
    (labels 1..80 in the order of COCO's categories) and 60 proposals each: the objects'
    boxes jittered, and boxes anywhere."""
    root = shared_data / "coco128"
    annotations = root / "annotations" / "instances_train2017.json"
    if not annotations.is_file():
        pytest.skip(f"COCO128 is not at {root}")
    data = json.loads(annotations.read_text())
    label_of = {cid: k for k, cid in enumerate(sorted(c["id"] for c in data["categories"]))}
    generator = torch.Generator().manual_seed(0)
    images, proposals, targets = [], [], []
    for file_name in COCO_IMAGES:
        info = next(i for i in data["images"] if i["file_name"] == file_name)
        scale = SHORT_SIDE / min(info["width"], info["height"])
        size = (round(info["width"] * scale), round(info["height"] * scale))
        picture = Image.open(root / "train2017" / file_name).convert("RGB").resize(size)
        images.append(pil_to_tensor(picture).float() / 255)
        objects = [a for a in data["annotations"] if a["image_id"] == info["id"]]
        boxes = torch.tensor([a["bbox"] for a in objects], dtype=torch.float32) * scale
        boxes[:, 2:] += boxes[:, :2]  # x, y, w, h -> x1, y1, x2, y2
        labels = torch.tensor([label_of[a["category_id"]] + 1 for a in objects])
        targets.append({"boxes": boxes, "labels": labels})
        near = jittered(boxes, 40 // len(boxes) + 1, 0.1, generator)[:40]
        proposals.append(torch.cat([near, random_boxes(20, *size, generator)]))
    return images, proposals, targets


def test_warping_adds_16_pixels_of_context_around_the_box():
    """A 64-pixel box warped to 96 keeps its scale (96 - 2 x 16 = 64): the window is the
    image from 16 pixels before the box to 16 after, pixel for pixel."""
    image = torch.randn(3, 120, 130, generator=torch.Generator().manual_seed(0))
    box = torch.tensor([[30.0, 20.0, 94.0, 84.0]])
    (window,) = warp_regions(image, box, 96)
    assert CONTEXT_PADDING == 16
    torch.testing.assert_close(window, image[:, 20 - 16 : 84 + 16, 30 - 16 : 94 + 16])


def test_warping_fills_what_lies_outside_the_image_with_the_mean():
    """The image mean is zero after normalisation: a box in the corner gets 16 zero rows
    and columns of context where the image ends, and the image after them."""
    image = torch.randn(3, 100, 100, generator=torch.Generator().manual_seed(1))
    (window,) = warp_regions(image, torch.tensor([[0.0, 0.0, 64.0, 64.0]]), 96)
    assert (window[:, :16] == 0).all() and (window[:, :, :16] == 0).all()
    torch.testing.assert_close(window[:, 16:, 16:], image[:, :80, :80])
    # At the far edges, with the box's width doubled (32 pixels -> 64: 8 pixels of image
    # context) and its height kept: rows 0-79 sample y = 20-99, columns x = 59.75 + j / 2.
    (window,) = warp_regions(image, torch.tensor([[68.0, 36.0, 100.0, 100.0]]), 96)
    assert (window[:, 80:] == 0).all() and (window[:, :, 81:] == 0).all()
    torch.testing.assert_close(
        window[:, :80, 78], image[:, 20:, 98] * 0.25 + image[:, 20:, 99] * 0.75
    )
    # x = 99.75 lies between the last column and the zeros beyond: bilinear between them.
    torch.testing.assert_close(window[:, :80, 80], image[:, 20:, 99] * 0.25)


def test_warping_is_anisotropic_and_bilinear_by_hand():
    """On ramps (value = x in channel 0, y in channel 1) bilinear sampling is exact: the
    window's pixel j holds the position of its centre in the dilated box."""
    height, width = 100, 60
    xs = torch.arange(width, dtype=torch.float32).expand(height, width)
    ys = torch.arange(height, dtype=torch.float32)[:, None].expand(height, width)
    image = torch.stack([xs, ys, xs + ys])
    box = torch.tensor([[10.0, 20.0, 42.0, 84.0]])  # 32 wide, 64 high
    (window,) = warp_regions(image, box, 96)
    # Width: 32 image pixels fill 64 warped ones, so the dilated box is 48 wide from x = 2;
    # pixel j samples x = 2 + (j + 0.5) * 48 / 96 - 0.5 (pixel centres at i + 0.5).
    j = torch.arange(96, dtype=torch.float32)
    expected_x = 2 + (j + 0.5) * 0.5 - 0.5
    # Height: 64 -> 64 at scale 1, from y = 20 - 16.
    expected_y = 4 + j
    torch.testing.assert_close(window[0], expected_x.expand(96, 96))
    torch.testing.assert_close(window[1], expected_y[:, None].expand(96, 96))
    torch.testing.assert_close(dilate_boxes(box, 96), torch.tensor([[2.0, 4.0, 50.0, 100.0]]))


def test_fine_tuning_labels_windows_at_iou_half_and_batches_32_positives_96_background():
    truth = torch.tensor([[0.0, 0.0, 100.0, 100.0], [200.0, 0.0, 300.0, 100.0]])
    truth_labels = torch.tensor([3, 7])
    shifts = torch.tensor([0.0, 10.0, 33.0, 34.0, 60.0])  # IoU 1, 0.82, 0.5038, 0.4925, 0.25
    regions = torch.cat([truth[:1] + torch.tensor([s, 0, s, 0]) for s in shifts])
    regions = torch.cat([regions, truth[1:] + 1])
    labels = window_labels(regions, truth, truth_labels)
    assert box_iou(regions[2:4], truth[:1]).flatten().tolist() == pytest.approx(
        [67 / 133, 66 / 134]
    )
    assert labels.tolist() == [3, 3, 3, 0, 0, 7]

    torch.manual_seed(0)
    labels = torch.cat([torch.randint(1, 5, (50,)), torch.zeros(400, dtype=torch.int64)])
    batch = sample_windows(labels)
    assert len(batch) == 128 and len(batch.unique()) == 128
    assert (labels[batch] > 0).sum() == 32 and (labels[batch] == 0).sum() == 96
    # Fewer foreground windows than 32: all of them, and background fills the batch.
    few = torch.cat([torch.ones(5, dtype=torch.int64), torch.zeros(400, dtype=torch.int64)])
    batch = sample_windows(few)
    assert (few[batch] > 0).sum() == 5 and (few[batch] == 0).sum() == 123


def separable(count: int, sign: float, generator) -> torch.Tensor:
    """Features of norm about 20 (the scale the SVMs train at), on either side of a plane."""
    features = torch.randn(count, 16, generator=generator)
    features[:, 0] = sign * (10 + torch.rand(count, generator=generator) * 5)
    return features


def test_svm_scores_positives_above_zero_and_negatives_below():
    generator = torch.Generator().manual_seed(0)
    positives, negatives = separable(40, 1, generator), separable(400, -1, generator)
    weight, bias = train_svm(positives, negatives)
    assert (positives @ weight + bias > 0).all()
    assert (negatives @ weight + bias < 0).all()
    assert weight[0] > weight[1:].abs().max()  # the separating direction


def test_hard_negative_mining_adds_the_violators_and_evicts_the_easy():
    generator = torch.Generator().manual_seed(0)
    cache = HardNegativeCache(feature_scale=1.0)
    everything = torch.ones(300, dtype=torch.bool)
    assert cache.add_negatives(separable(300, -1, generator), everything) == 0  # no box yet
    cache.add_positives(separable(30, 1, generator))
    # The first negatives all join (there is no SVM yet to call them easy), and train it.
    assert cache.add_negatives(separable(300, -1, generator), everything) == 300
    assert cache.due()
    cache.train()
    assert (cache.scores(cache.negatives) >= EASY_SCORE).all()  # the easy ones left
    kept = len(cache.negatives)
    # Offered negatives: the far ones score below -1 and stay out; those the SVM scores
    # above -1 (inside its margin, or wrong) join, and only those.
    offered = torch.cat([separable(50, -1, generator) * 3, separable(20, 1, generator)])
    violators = cache.scores(offered) > HARD_SCORE
    assert violators[50:].all() and not violators[:50].any()
    marked = torch.ones(len(offered), dtype=torch.bool)
    marked[-5:] = False  # not negatives of this class (IoU >= 0.3): never taken
    assert cache.add_negatives(offered, marked) == 15
    torch.testing.assert_close(cache.negatives[kept:].float(), offered[50:65].half().float())
    assert not cache.due()  # fewer than 2,000 joined since the SVM was trained


def test_regression_targets_and_their_inverse_round_trip():
    generator = torch.Generator().manual_seed(0)
    proposals = random_boxes(50, 200, 150, generator)
    truth = jittered(proposals, 1, 0.3, generator)
    t = regression_targets(proposals, truth)
    torch.testing.assert_close(apply_regression(proposals, t), truth)
    # By hand: a 20x10 box moved by (5, -2) and widened to 40 keeps its height.
    p, g = torch.tensor([[0.0, 0.0, 20.0, 10.0]]), torch.tensor([[-5.0, -2.0, 35.0, 8.0]])
    torch.testing.assert_close(
        regression_targets(p, g), torch.tensor([[5 / 20, -2 / 10, math.log(2), 0.0]])
    )


@pytest.mark.parametrize("samples", [30, 300], ids=["dual", "primal"])
def test_box_regression_recovers_boxes_the_features_determine(samples):
    """pool5-like features (non-negative, 64 of them) whose linear map gives the targets: with
    a small lambda ridge regression finds boxes to a hundredth of a pixel, solved in the dual
    with fewer samples than dimensions, in the primal with more."""
    generator = torch.Generator().manual_seed(0)
    features = torch.relu(torch.randn(samples, 64, generator=generator))
    true_map = torch.randn(4, 64, generator=generator) * 0.05
    t = features @ true_map.T + torch.tensor([0.1, -0.05, 0.2, -0.1])
    proposals = random_boxes(samples, 200, 150, generator)
    truth = apply_regression(proposals, t)
    regressor = ridge_regression(features, regression_targets(proposals, truth), lam=1e-6)
    assert regressor.shape == (4, 65)
    predicted = torch.cat([features, torch.ones(samples, 1)], dim=1) @ regressor.T
    torch.testing.assert_close(apply_regression(proposals, predicted), truth, atol=1e-2, rtol=0)


def test_a_constant_shift_and_scale_is_learned_exactly_at_the_papers_lambda():
    """Every proposal 10% left of and 1.2 times smaller than its object: the targets are
    constant, and centring them makes the bias exact even at lambda = 1000."""
    generator = torch.Generator().manual_seed(0)
    truth = random_boxes(40, 300, 200, generator)
    sides = truth[:, 2:] - truth[:, :2]
    centres = (truth[:, :2] + truth[:, 2:]) / 2 - sides * torch.tensor([0.1, 0.0])
    proposals = torch.cat([centres - sides / 2.4, centres + sides / 2.4], dim=1)
    features = torch.relu(torch.randn(40, 100, generator=generator))
    regressor = ridge_regression(features, regression_targets(proposals, truth))
    predicted = torch.cat([features, torch.ones(40, 1)], dim=1) @ regressor.T
    torch.testing.assert_close(apply_regression(proposals, predicted), truth)


def test_nms_suppresses_boxes_over_iou_0_3_within_each_class():
    model = tiny_rcnn(num_classes=2).eval()
    boxes = torch.tensor(
        [
            [0.0, 0.0, 10.0, 10.0],  # the best
            [0.0, 0.0, 10.0, 25.0],  # IoU 0.4 with the best: suppressed
            [0.0, 6.0, 10.0, 16.0],  # IoU 4/16 = 0.25: kept
            [50.0, 50.0, 60.0, 60.0],  # elsewhere: kept
        ]
    )
    scores = torch.tensor([[0.9, 0.01], [0.8, 0.75], [0.7, 0.01], [0.6, 0.02]])
    # The same boxes for both classes; class 2 has one box above the 0.05 threshold.
    detections = model.suppress(boxes[:, None].expand(-1, 2, -1), scores, (100, 100))
    assert model.scoring == "softmax"
    assert detections["labels"].tolist() == [1, 2, 1, 1]
    torch.testing.assert_close(detections["scores"], torch.tensor([0.9, 0.75, 0.7, 0.6]))
    torch.testing.assert_close(detections["boxes"], boxes[[0, 1, 2, 3]])


def test_regions_in_chunks_give_the_same_detections(coco_images):
    images, proposals, _ = coco_images
    model = tiny_rcnn(num_classes=80).eval()
    with torch.no_grad():
        whole = model(images[:1], proposals[:1])
        model.region_batch = 7
        chunked = model(images[:1], proposals[:1])
    for name in ("boxes", "scores", "labels"):
        torch.testing.assert_close(chunked[0][name], whole[0][name])


@pytest.fixture(scope="module")
def finetuned(coco_images):
    """An R-CNN on MobileNet-v1 0.25 fine-tuned for 20 SGD steps on two COCO128 images,
    and its losses."""
    images, proposals, targets = coco_images
    model = tiny_rcnn(num_classes=80).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    losses = []
    for _ in range(20):
        loss = model(images, proposals, targets)["loss_classifier"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return model, losses


def test_fine_tuning_loss_falls_on_two_coco_images(finetuned):
    _, losses = finetuned
    assert all(math.isfinite(loss) for loss in losses)
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:5]) / 5, losses


@pytest.fixture(scope="module")
def fitted(finetuned, coco_images):
    """The fine-tuned model with its SVMs and box regressors fit on the two images."""
    model, _ = finetuned
    images, proposals, targets = coco_images
    model.collect_features(images, proposals, targets)
    collection = model.collection
    with pytest.warns(UntrainedClassWarning):  # most of COCO's 80 classes are not there
        model.fit_classifiers()
    return model, collection


def test_features_of_the_training_proposals_fit_svms_and_regressors(fitted, coco_images):
    model, collection = fitted
    _, _, targets = coco_images
    present = torch.cat([t["labels"] for t in targets]).unique()
    assert model.training  # collect_features ran in eval mode and restored the mode
    assert model.scoring == "svm" and bool(model.box_regressors_fit)
    assert collection.images == 2 and model.collection is None  # let go after fitting
    for label in range(1, 81):
        cache, samples = collection.caches[label - 1], collection.regression[label - 1]
        if label in present:
            boxes = sum(int((t["labels"] == label).sum()) for t in targets)
            assert sum(len(p) for p in cache.positives) == boxes  # the ground truth alone
            assert len(samples) >= boxes  # the ground-truth boxes themselves, and more
            assert torch.isfinite(model.svm_bias[label - 1])
            assert model.box_regressor[label - 1].abs().sum() > 0
        else:
            assert not cache.positives and cache.negatives is None and len(samples) == 0
            assert model.svm_bias[label - 1] == -math.inf
            assert (model.box_regressor[label - 1] == 0).all()  # the identity


def test_eval_forward_returns_boxes_scores_and_labels_of_each_image(fitted, coco_images):
    model, _ = fitted
    images, proposals, targets = coco_images
    model.eval()
    with torch.no_grad():
        detections = model(images, proposals)
    present = torch.cat([t["labels"] for t in targets]).unique()
    assert len(detections) == 2
    for detection, image in zip(detections, images, strict=True):
        assert set(detection) == {"boxes", "scores", "labels"}
        boxes, scores, labels = detection["boxes"], detection["scores"], detection["labels"]
        assert boxes.shape == (len(scores), 4) and labels.shape == scores.shape
        assert boxes.dtype == scores.dtype == torch.float32 and labels.dtype == torch.int64
        assert 0 < len(scores) <= 100 and (scores > -1).all()
        assert (scores[:-1] >= scores[1:]).all()
        assert torch.isin(labels, present).all()  # the SVMs left out never detect
        assert (boxes[:, :2] >= 0).all()
        assert (boxes[:, 2:] <= torch.tensor(image.shape[:0:-1], dtype=torch.float32)).all()


def test_svms_and_regressors_survive_the_state_dict(fitted, coco_images):
    model, _ = fitted
    images, proposals, _ = coco_images
    state = model.state_dict()
    assert {"svm_weight", "svm_bias", "box_regressor", "svms_fit", "box_regressors_fit"} <= set(
        state
    )
    assert state["svm_weight"].shape == (80, 256)  # fc7 of MobileNet-v1 0.25: its pooled map
    assert state["box_regressor"].shape == (80, 4, 256 * 2 * 2 + 1)  # pool5 at 64x64: 2x2
    fresh = tiny_rcnn(num_classes=80)
    assert fresh.scoring == "softmax"
    fresh.load_state_dict(state)
    assert fresh.scoring == "svm" and bool(fresh.box_regressors_fit)
    model.eval(), fresh.eval()
    with torch.no_grad():
        ours, theirs = model(images[:1], proposals[:1]), fresh(images[:1], proposals[:1])
    for name in ("boxes", "scores", "labels"):
        torch.testing.assert_close(theirs[0][name], ours[0][name])


@pytest.mark.bad_input
def test_fitting_before_collecting_features_says_to_collect_them():
    model = tiny_rcnn()
    with pytest.raises(RCNNError, match=r"fc7 features .* collect_features\(images, proposals"):
        model.fit_svms()
    with pytest.raises(RCNNError, match=r"box regressors .* collect_features"):
        model.fit_box_regressors()
    assert isinstance(RCNNError("x"), CnnzooError | ValueError)


@pytest.mark.bad_input
def test_a_class_without_ground_truth_boxes_is_named_and_never_detected():
    model = tiny_rcnn(num_classes=3)
    image = torch.rand(3, 96, 96, generator=torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(1)
    target = {"boxes": torch.tensor([[10.0, 10.0, 60.0, 70.0]]), "labels": torch.tensor([2])}
    model.collect_features([image], [random_boxes(30, 96, 96, generator)], [target])
    with pytest.warns(UntrainedClassWarning, match=r"labelled \[1, 3\].*never\s+detected"):
        model.fit_svms()
    assert model.svm_bias[[0, 2]].tolist() == [-math.inf, -math.inf]
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    model = tiny_rcnn(num_classes=3)
    model.collect_features([image], [random_boxes(30, 96, 96, generator)], [empty])
    with pytest.raises(RCNNError, match="no class could be trained"):
        model.fit_svms()


@pytest.mark.bad_input
def test_bad_rcnn_inputs_say_what_to_give():
    with pytest.raises(RCNNError, match="no room for the box inside its 16-pixel context"):
        RCNN(create_model(BACKBONE), 3, warp_size=32)
    model = tiny_rcnn().train()
    image, boxes = torch.rand(3, 64, 64), torch.tensor([[0.0, 0.0, 30.0, 30.0]])
    with pytest.raises(RCNNError, match=r"training mode .* give targets"):
        model([image], [boxes])
    with pytest.raises(
        ProposalError, match="R-CNN takes one tensor of proposals for each image; got 2 for 1"
    ):
        model([image], [boxes, boxes], [{}])
    nothing = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    with pytest.raises(RCNNError, match="no window to fine-tune on"):
        model([image], [torch.zeros(0, 4)], [nothing])
    with pytest.raises(ProposalError, match=r"proposals of image 0 are \(4,\)"):
        model.eval()([image], [boxes[0]])
