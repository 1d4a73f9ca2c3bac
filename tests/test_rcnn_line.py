"""The R-CNN line through the Detector and `cnnzoo-detect`: R-CNN, Fast R-CNN and Faster R-CNN
share the backbone, the COCO data with its selective-search proposals, the mAP evaluation
and the command (`--model.method`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cnnzoo import CnnzooError
from cnnzoo_detect import CocoDataModule, Detector
from cnnzoo_detect.proposals import ProposalError, proposal_cache_path

BACKBONE = "mobilenet_v1_025"
SMALL = {"min_size": 128, "max_size": 224}
# R-CNN warps each region to the network's input: 64 pixels keeps a CPU step cheap.
SMALL_RCNN = {"warp_size": 64, "region_batch": 64}


@pytest.fixture(autouse=True)
def proposal_cache(tmp_path_factory, monkeypatch) -> Path:
    """Proposal files go to a folder of the test session's, not the user's cache."""
    folder = tmp_path_factory.getbasetemp() / "cnnzoo-cache"
    monkeypatch.setenv("CNNZOO_CACHE", str(folder))
    return folder


def proposal_data(root: Path, **overrides) -> CocoDataModule:
    settings = {
        "val_split": "train2017",
        "num_workers": 0,
        "empty_images": "skip",
        "batch_size": 2,
        "max_images": 2,
        "proposals": "selective_search",
        "max_proposals": 100,
        **SMALL,
    }
    return CocoDataModule(root, **(settings | overrides))


def test_proposals_travel_with_their_image_through_resize_and_flip(coco128):
    """The cached proposals are in the file's pixels; the training batch has them resized and
    flipped exactly as the image and its boxes are."""
    data = proposal_data(coco128, hflip_prob=1.0)
    data.setup("fit")
    (images, targets) = next(iter(data.train_dataloader()))
    cache = proposal_cache_path(coco128, "train2017", "fast", 100)
    assert cache.is_file()
    stored = torch.load(cache, weights_only=True)["images"]
    for image, target in zip(images, targets, strict=True):
        height, width = (int(v) for v in target["orig_size"])
        file_boxes = stored[target["image_id"]]["boxes"].float()
        scale_x, scale_y = image.shape[-1] / width, image.shape[-2] / height
        assert abs(scale_x - scale_y) < 0.01  # resized as a whole, its aspect kept
        x1, y1, x2, y2 = file_boxes.unbind(1)
        flipped = torch.stack([width - x2, y1, width - x1, y2], 1)
        flipped *= torch.tensor([scale_x, scale_y, scale_x, scale_y])
        torch.testing.assert_close(target["proposals"], flipped, atol=1e-3, rtol=1e-4)
        assert len(target["proposals"]) <= 100


@pytest.mark.parametrize("method", ["rcnn", "fast_rcnn"])
def test_each_proposal_method_trains_and_detects_in_file_coordinates(coco128, method):
    data = proposal_data(coco128, hflip_prob=0.0)
    data.setup("fit")
    images, targets = next(iter(data.train_dataloader()))
    torch.manual_seed(0)
    options = {"rcnn": SMALL_RCNN} if method == "rcnn" else {"fast_rcnn": {}}
    detector = Detector(
        BACKBONE, method=method, num_classes=data.num_classes, representation_size=64, **options
    )
    assert detector.hparams.neck == ("single" if method == "fast_rcnn" else None)
    detector.train()
    loss = detector.training_step((images, targets), 0)
    assert torch.isfinite(loss) and loss.requires_grad
    detector.eval()
    with torch.no_grad():
        detections = detector.detect(images, targets)
    for detection, target in zip(detections, targets, strict=True):
        height, width = (int(v) for v in target["orig_size"])
        boxes = detection["boxes"]
        assert boxes.shape[1] == 4 and len(boxes) == len(detection["scores"])
        if len(boxes):  # in the file's pixels, not the 128-pixel image's
            assert boxes[:, 2].max() <= width + 1e-3 and boxes[:, 3].max() <= height + 1e-3
    if method == "rcnn":
        assert detector.model.scoring == "softmax"  # before the SVMs are fit
        detector.fit_rcnn_classifiers(data.feature_dataloader())
        assert detector.model.scoring == "svm"


@pytest.mark.slow
@pytest.mark.parametrize("method", ["rcnn", "fast_rcnn"])
def test_the_command_fits_each_method_and_rcnns_checkpoint_holds_its_svms(
    coco128, tmp_path, monkeypatch, recwarn, method
):
    """`--model.method` picks the method and sets the data's proposals; R-CNN's SVMs and box
    regressors are fit after the last epoch and saved in the last checkpoint, which the test
    after `fit` scores with."""
    from cnnzoo_detect.cli import main

    monkeypatch.chdir(tmp_path)
    extra = {"rcnn": SMALL_RCNN} if method == "rcnn" else {}
    main(
        [
            "fit", "--model.backbone", BACKBONE, "--model.method", method,
            "--model.representation_size", "64", *(
                [f"--model.{method}", json.dumps(extra[method])] if extra else []
            ),
            "--data.root", str(coco128), "--data.val_split", "train2017",
            "--data.max_images", "2", "--data.max_proposals", "100",
            "--data.min_size", "128", "--data.max_size", "224", "--data.num_workers", "0",
            "--data.empty_images", "skip", "--trainer.enable_progress_bar", "false",
            "--trainer.max_epochs", "2", "--trainer.enable_model_summary", "false",
        ]
    )  # fmt: skip
    run = tmp_path / "runs" / f"{BACKBONE}_{method}"
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["hyper_parameters"]["method"] == method
    metrics = (next(run.glob("version_*")) / "metrics.csv").read_text()
    assert "val/map" in metrics and "test/map" in metrics
    assert not [w for w in recwarn if "SVMs are not fit" in str(w.message)]
    if method == "rcnn":
        state = checkpoint["state_dict"]
        assert bool(state["model.svms_fit"]) and bool(state["model.box_regressors_fit"])
        assert torch.isfinite(state["model.svm_weight"]).all()
        detector = Detector.from_checkpoint(str(run / "checkpoints" / "last.ckpt"))
        assert detector.model.scoring == "svm"


@pytest.mark.bad_input
def test_a_method_and_a_neck_that_do_not_go_together_are_refused():
    with pytest.raises(ValueError, match=r"fast_rcnn has only the single stride-16 map.*fpn"):
        Detector(BACKBONE, neck="fpn", method="fast_rcnn", num_classes=3)
    with pytest.raises(ValueError, match=r"rcnn has no neck.*--model.method faster_rcnn"):
        Detector(BACKBONE, neck="c4", method="rcnn", num_classes=3)
    with pytest.raises(ValueError, match="method must be rcnn, fast_rcnn or faster_rcnn"):
        Detector(BACKBONE, method="yolo", num_classes=3)


@pytest.mark.bad_input
def test_a_proposal_method_without_proposals_says_how_to_get_them(coco128):
    """A batch from a data module without proposals, and a call without them, are refused
    with where proposals come from."""
    data = proposal_data(coco128, proposals="none", hflip_prob=0.0)
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    detector = Detector(
        BACKBONE, method="fast_rcnn", num_classes=data.num_classes, representation_size=64
    )
    with pytest.raises(ProposalError, match=r"--data.proposals selective_search"):
        detector.training_step(batch, 0)
    with pytest.raises(ProposalError, match="selective_search makes them"):
        detector(batch[0])
    with pytest.raises(ValueError, match=r"proposals must be 'none'.*'selective_search'"):
        proposal_data(coco128, proposals="edge_boxes")


def test_selective_search_runs_in_prepare_data_and_setup_reads_its_cache(coco128, monkeypatch):
    """Lightning prepares data in one process a machine: the proposals are computed there,
    and every process's setup (DDP's others included) reads them from the cache."""
    import cnnzoo_detect.proposals as proposals

    first = proposal_data(coco128, max_proposals=50)
    first.prepare_data()

    def no_search(*args, **kwargs):
        raise AssertionError("selective search ran again")

    monkeypatch.setattr(proposals, "selective_search", no_search)
    other = proposal_data(coco128, max_proposals=50)
    other.setup("fit")
    for stage in ("train", "val"):
        for ours, theirs in zip(
            first.datasets[stage].base.images, other.datasets[stage].base.images, strict=True
        ):
            assert torch.equal(ours.proposals, theirs.proposals)


@pytest.mark.bad_input
def test_rcnn_under_ddp_is_refused_before_training_with_what_to_do():
    """Each process would fit its SVMs on its own share of the images: refused at the start
    of fit, not after the fine-tuning."""
    from types import SimpleNamespace

    detector = Detector(BACKBONE, method="rcnn", num_classes=3, rcnn=SMALL_RCNN)
    detector._trainer = SimpleNamespace(world_size=2)
    with pytest.raises(CnnzooError, match=r"in one process.*this run has 2.*fit_rcnn_classifiers"):
        detector.on_fit_start()
    fast = Detector(BACKBONE, method="fast_rcnn", num_classes=3, representation_size=64)
    fast._trainer = SimpleNamespace(world_size=2)
    fast.on_fit_start()  # Fast R-CNN trains under DDP as Faster R-CNN does
