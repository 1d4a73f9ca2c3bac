"""cnnzoo-detect: Faster R-CNN on registered backbones, on COCO128's real images and boxes.

Backbones of every family are cut in each form they support (single map, C4, FPN) and
take a training step and an evaluation; a short run overfits two images; our R50-FPN
matches torchvision's box for box; a classification checkpoint starts a backbone; the
COCO and VOC data modules check their annotations; the command writes results files.
"""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import lightning as L
import pytest
import torch
from cnnzoo import DatasetError
from cnnzoo_detect import BackboneError, CocoDataModule, Detector, VocDataModule
from cnnzoo_detect.data import VOC_CLASSES
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

# Small images and few proposals keep a step of every backbone cheap on a CPU.
SMALL = {"min_size": 128, "max_size": 224}
FEW_PROPOSALS = {
    "rpn_pre_nms_top_n_train": 64,
    "rpn_post_nms_top_n_train": 32,
    "rpn_pre_nms_top_n_test": 64,
    "rpn_post_nms_top_n_test": 16,
    "rpn_batch_size_per_image": 32,
    "box_batch_size_per_image": 16,
}


def coco_subset(coco128: Path, folder: Path, image_ids: list[int], edit=None) -> Path:
    """A COCO root holding only some of COCO128's images (the files themselves linked),
    its annotations optionally edited by `edit(data)`."""
    data = json.loads((coco128 / "annotations" / "instances_train2017.json").read_text())
    data["images"] = [image for image in data["images"] if image["id"] in image_ids]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in image_ids]
    if edit is not None:
        edit(data)
    (folder / "annotations").mkdir(parents=True)
    (folder / "annotations" / "instances_train2017.json").write_text(json.dumps(data))
    (folder / "train2017").symlink_to(coco128 / "train2017")
    return folder


def coco_data(root: Path, **overrides) -> CocoDataModule:
    settings = {
        "val_split": "train2017",
        "num_workers": 0,
        "empty_images": "skip",
        "batch_size": 2,
        **SMALL,
    }
    data = CocoDataModule(root, **(settings | overrides))
    return data


@pytest.fixture(scope="module")
def coco_batch(shared_data: Path):
    """A COCO128 image (000000000009, eight objects) with its boxes, resized to a 128-pixel
    shorter side."""
    data = coco_data(shared_data / "coco128", max_images=1, batch_size=1, hflip_prob=0.0)
    data.setup("fit")
    return data.num_classes, next(iter(data.train_dataloader()))


# One small variant of each family, with the forms it supports: the C4 form needs a stage
# after the stride-16 one (conv5_x); VGG, AlexNet and ZFNet end at stride 16 (ZFNet's
# maps are at strides 4 and 16 only: too few levels for a pyramid).
FAMILIES = {
    "alexnet": ("single", "fpn"),
    "zfnet": ("single",),
    "vgg11": ("single", "fpn"),
    "nin_imagenet": ("single", "c4", "fpn"),
    "googlenet": ("single", "c4", "fpn"),
    "resnet18": ("single", "c4", "fpn"),
    "preact_resnet18": ("single", "c4", "fpn"),
    "densenet121": ("single", "c4", "fpn"),
    "se_resnet18": ("single", "c4", "fpn"),
    "mobilenet_v1_025": ("single", "c4", "fpn"),
    "mobilenet_v2_035": ("single", "c4", "fpn"),
    "shufflenet_v1_g3_x0_25": ("single", "c4", "fpn"),
    "shufflenet_v2_x0_5": ("single", "c4", "fpn"),
    "mnasnet_b1_050": ("single", "c4", "fpn"),
}
HEAVY = {"vgg11", "densenet121", "alexnet", "zfnet", "googlenet"}


def _cases():
    for backbone, necks in FAMILIES.items():
        for neck in necks:
            marks = [pytest.mark.slow] if backbone in HEAVY or neck == "c4" else []
            yield pytest.param(backbone, neck, id=f"{backbone}-{neck}", marks=marks)


@pytest.mark.parametrize(("backbone", "neck"), list(_cases()))
def test_every_family_trains_and_detects_in_each_form(backbone, neck, coco_batch):
    num_classes, (images, targets) = coco_batch
    torch.manual_seed(0)
    detector = Detector(backbone, neck, num_classes=num_classes, faster_rcnn=FEW_PROPOSALS)
    model = detector.model
    stride = {"single": 16, "c4": 16}.get(neck)
    with torch.no_grad():
        features = model.backbone(images[0][None].float() / 255)
    if stride is not None:  # one map, at stride 16 (VGG's conv5_3, ResNet's conv4_x)
        (only,) = features.values()
        for side, image_side in zip(only.shape[-2:], images[0].shape[-2:], strict=True):
            assert 12 < image_side / side < 20  # stride 16, give or take the borders
    else:  # a pyramid, 256 channels a level, and P6
        assert len(features) >= 4 and "pool" in features
        assert {f.shape[1] for f in features.values()} == {256}
    if neck == "c4":  # the RoI head is the network's last stage, run on 14x14 RoIs
        roi = torch.zeros(1, model.backbone.out_channels, 14, 14)
        assert model.roi_heads.box_head(roi).shape == (
            1,
            model.roi_heads.box_predictor.cls_score.in_features,
        )

    model.train()
    losses = model(detector._floats(images), targets)
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    assert all(torch.isfinite(loss) for loss in losses.values())
    sum(losses.values()).backward()
    body = [p for p in model.backbone.body.parameters() if p.requires_grad]
    assert body[0].grad is not None and body[0].grad.abs().sum() > 0  # the cut is connected
    assert model.roi_heads.box_predictor.cls_score.weight.grad.abs().sum() > 0
    torch.optim.SGD(model.parameters(), lr=1e-3).step()

    model.eval()
    detections = detector.detect(images, targets)
    for detection, target in zip(detections, targets, strict=True):
        height, width = target["orig_size"].tolist()
        boxes = detection["boxes"]
        assert boxes.shape[1:] == (4,) and len(boxes) == len(detection["scores"])
        assert (boxes[:, 2:] <= torch.tensor([width, height]) + 1e-3).all()
        assert ((detection["labels"] >= 1) & (detection["labels"] <= num_classes)).all()


@pytest.mark.parametrize(
    ("backbone", "neck", "message"),
    [
        ("vgg16", "c4", "no stage after its stride-16 stage 'features.conv5_3'"),
        ("alexnet", "c4", "Use --model.neck single"),
        ("lenet5", "single", "reaches a stride of only 4"),
        ("lenet5", "fpn", "reaches a stride of only 4"),
        ("resnet20", "c4", "32x32 images"),
    ],
)
def test_backbones_that_cannot_serve_fail_clearly(backbone, neck, message):
    with pytest.raises(BackboneError, match=message):
        Detector(backbone, neck, num_classes=3)


def test_single_map_is_vgg16_conv5_3_and_c4_splits_resnet_at_conv4_x():
    vgg = Detector("vgg16", "single", num_classes=3).model
    graph_modules = {node.target for node in vgg.backbone.body.graph.nodes}
    assert "model.features.conv5_3.relu" in graph_modules  # ends after conv5_3's ReLU
    assert not any(str(target).startswith("model.features.pool5") for target in graph_modules)

    resnet = Detector("resnet50", "c4", num_classes=3).model
    trunk = {name.split(".")[1] for name, _ in resnet.backbone.body.named_parameters()}
    head = {name.split(".")[2] for name, _ in resnet.roi_heads.box_head.named_parameters()}
    assert trunk == {"conv1", "conv2_x", "conv3_x", "conv4_x"} and head == {"conv5_x"}
    assert resnet.roi_heads.box_roi_pool.output_size == (14, 14)


def test_frozen_batchnorm_and_trainable_stages():
    model = Detector("resnet18", "fpn", num_classes=3, frozen_bn=True, trainable_stages=2).model
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert any(isinstance(m, FrozenBatchNorm2d) for m in model.modules())
    trainable = {
        name.split(".")[1] for name, p in model.backbone.body.named_parameters() if p.requires_grad
    }
    assert trainable == {"conv4_x", "conv5_x"}
    # Without backbone weights, torchvision's default: everything trains, BatchNorm as is.
    plain = Detector("resnet18", "fpn", num_classes=3).model
    assert all(p.requires_grad for p in plain.parameters())
    assert any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    # A DenseNet's transition layer trains with the dense block after it.
    dense = Detector("densenet121", "c4", num_classes=3, trainable_stages=2).model
    frozen = {n for n, p in dense.backbone.body.named_parameters() if not p.requires_grad}
    assert any("transition1" in n for n in frozen)  # before the frozen denseblock2
    assert not any("transition2" in n for n in frozen)  # before the trainable denseblock3
    assert all(p.requires_grad for p in dense.roi_heads.box_head.parameters())


@pytest.fixture(scope="module")
def classifier_checkpoint(shared_data: Path, tmp_path_factory) -> Path:
    """A resnet18 classifier trained for two steps on 64x64 crops of COCO128 objects
    (label: the object's category, of the first four seen), saved by Lightning."""
    from cnnzoo import ImageClassifier
    from cnnzoo_detect.data import load_rgb
    from torchvision.transforms.v2.functional import pil_to_tensor, resized_crop

    root = shared_data / "coco128"
    data = json.loads((root / "annotations" / "instances_train2017.json").read_text())
    files = {image["id"]: image["file_name"] for image in data["images"]}
    large = [a for a in data["annotations"] if a["area"] > 5000 and not a["iscrowd"]][:16]
    categories = sorted({a["category_id"] for a in large})[:4]
    crops, labels = [], []
    for annotation in large:
        if annotation["category_id"] not in categories:
            continue
        image = pil_to_tensor(load_rgb(root / "train2017" / files[annotation["image_id"]]))
        x, y, w, h = (int(v) for v in annotation["bbox"])
        crops.append(resized_crop(image, y, x, h, w, [64, 64]).float() / 255)
        labels.append(categories.index(annotation["category_id"]))
    dataset = torch.utils.data.TensorDataset(torch.stack(crops), torch.tensor(labels))
    classifier = ImageClassifier("resnet18", num_classes=4)
    before = classifier.model.conv1.conv.weight.detach().clone()
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(classifier, torch.utils.data.DataLoader(dataset, batch_size=4))
    assert not torch.equal(before, classifier.model.conv1.conv.weight)
    path = tmp_path_factory.mktemp("classifier") / "resnet18.ckpt"
    trainer.save_checkpoint(path)
    return path


def test_backbone_starts_from_a_classification_checkpoint(classifier_checkpoint):
    saved = torch.load(classifier_checkpoint, weights_only=False)["state_dict"]
    detector = Detector(
        "resnet18", "c4", num_classes=3, backbone_checkpoint=str(classifier_checkpoint)
    )
    body = detector.model.backbone.body.state_dict()
    head = detector.model.roi_heads.box_head[0].state_dict()
    for key in ("model.conv1.conv.weight", "model.conv4_x.1.conv2.weight"):
        torch.testing.assert_close(body[key], saved[key], rtol=0, atol=0)
    torch.testing.assert_close(
        head["model.conv5_x.0.conv1.weight"], saved["model.conv5_x.0.conv1.weight"]
    )
    # The BatchNorm statistics the classifier learnt, frozen (the default with weights).
    torch.testing.assert_close(
        body["model.conv1.bn.running_var"], saved["model.conv1.bn.running_var"]
    )
    body_parameters = detector.model.backbone.body.named_parameters()
    trainable = {name.split(".")[1] for name, p in body_parameters if p.requires_grad}
    assert trainable == {"conv3_x", "conv4_x"}  # conv1 and conv2_x fixed, as in the papers
    with pytest.raises(Exception, match="holds a 'resnet18' model, not 'resnet34'"):
        Detector("resnet34", "fpn", num_classes=3, backbone_checkpoint=str(classifier_checkpoint))


def test_coco_data_contiguous_labels_crowds_resize_and_flip(coco128):
    data = coco_data(coco128, max_images=8, hflip_prob=1.0)
    assert data.num_classes == 80 and len(data.classes) == 81
    assert data.category_ids[1] == 1 and data.category_ids[-1] == 90  # COCO's ids skip some
    data.setup("fit")
    raw = json.loads((coco128 / "annotations" / "instances_train2017.json").read_text())
    (image, target), image_id = data.datasets["train"][0]
    assert image_id == 9 and min(image.shape[-2:]) == 128
    annotations = [a for a in raw["annotations"] if a["image_id"] == 9]
    x, y, w, h = annotations[0]["bbox"]
    width = image.shape[-1]
    sx, sy = width / 640, 128 / 480  # 640x480 -> 170x128
    # flipped: x1' = W - x2
    torch.testing.assert_close(
        target["boxes"][0],
        torch.tensor([width - (x + w) * sx, y * sy, width - x * sx, (y + h) * sy]),
        atol=0.05,
        rtol=0,
    )
    labels = target["labels"].tolist()
    assert [data.category_ids[label] for label in labels] == [a["category_id"] for a in annotations]
    # A crowd region is left out of training, and kept, marked, for evaluation.
    crowded = next(a["image_id"] for a in raw["annotations"] if a["iscrowd"])
    subset = coco_data(coco128)
    subset.setup("fit")
    train = next(i for i in subset.datasets["train"].base.images if i.image_id == crowded)
    index = subset.datasets["val"].base.images.index(
        next(i for i in subset.datasets["val"].base.images if i.image_id == crowded)
    )
    (_, val_target), _ = subset.datasets["val"][index]
    train_index = subset.datasets["train"].base.images.index(train)
    (_, train_target), _ = subset.datasets["train"][train_index]
    assert val_target["iscrowd"].sum() >= 1 and train_target["iscrowd"].sum() == 0
    assert len(val_target["boxes"]) == len(train_target["boxes"]) + val_target["iscrowd"].sum()


def test_coco_data_images_without_boxes(coco128):
    with pytest.raises(DatasetError, match=r"2 training images have no object.*000000000250"):
        coco_data(coco128, empty_images="error").setup("fit")
    skip = coco_data(coco128, empty_images="skip")
    skip.setup("fit")
    keep = coco_data(coco128, empty_images="keep")
    keep.setup("fit")
    assert (len(skip.datasets["train"]), len(keep.datasets["train"])) == (126, 128)
    assert len(skip.datasets["val"]) == 128  # evaluation keeps every image


def test_coco_data_degenerate_and_outside_boxes(coco128, tmp_path):
    def spoil(data):
        data["annotations"][0]["bbox"][2] = 0.0  # no width
        data["annotations"][1]["bbox"][0] = 10_000.0  # far outside the image

    root = coco_subset(coco128, tmp_path / "coco", [9, 25], spoil)
    first = json.loads((root / "annotations" / "instances_train2017.json").read_text())
    spoilt = first["annotations"][0]
    with pytest.raises(
        DatasetError,
        match=rf"annotation {spoilt['id']} of image 0+{spoilt['image_id']}\.jpg.*no area",
    ):
        coco_data(root).setup("fit")
    dropped = coco_data(root, invalid_boxes="drop")
    with pytest.warns(UserWarning, match="dropped 2 boxes"):
        dropped.setup("fit")
    assert dropped.dropped_boxes["train"] == 2
    assert (
        sum(len(i.boxes) for i in dropped.datasets["train"].base.images)
        == len(first["annotations"]) - 2
    )


def test_missing_data_says_what_layout_is_expected(tmp_path, coco128):
    with pytest.raises(DatasetError, match="CocoDetection layout"):
        CocoDataModule(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match=r"annotations/instances_val2017\.json"):
        CocoDataModule(coco128)  # COCO128 has no val2017
    with pytest.raises(DatasetError, match=r"VOCdevkit/VOC2007/JPEGImages"):
        VocDataModule(tmp_path, num_workers=0).setup("fit")


# COCO categories that VOC also has, by COCO id.
COCO_TO_VOC = {1: "person", 2: "bicycle", 3: "car", 17: "cat", 18: "dog", 23: None}


@pytest.fixture
def voc_root(coco128: Path, tmp_path: Path) -> Path:
    """A VOC 2007 folder made of three COCO128 images, their boxes written as VOC XML
    (1-based pixels), one object marked difficult."""
    data = json.loads((coco128 / "annotations" / "instances_train2017.json").read_text())
    voc = tmp_path / "voc" / "VOCdevkit" / "VOC2007"
    for folder in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (voc / folder).mkdir(parents=True)
    names, marked = [], False
    for image in data["images"]:
        objects = [
            a for a in data["annotations"]
            if a["image_id"] == image["id"] and COCO_TO_VOC.get(a["category_id"])
        ]  # fmt: skip
        if not objects or len(names) == 3:
            continue
        stem = Path(image["file_name"]).stem
        shutil.copy(coco128 / "train2017" / image["file_name"], voc / "JPEGImages" / f"{stem}.jpg")
        root = ET.Element("annotation")
        size = ET.SubElement(root, "size")
        for key in ("width", "height"):
            ET.SubElement(size, key).text = str(image[key])
        ET.SubElement(size, "depth").text = "3"
        for k, a in enumerate(objects):
            obj = ET.SubElement(root, "object")
            ET.SubElement(obj, "name").text = COCO_TO_VOC[a["category_id"]]
            difficult = k == 0 and len(objects) > 1 and not marked
            marked = marked or difficult
            ET.SubElement(obj, "difficult").text = "1" if difficult else "0"
            box = ET.SubElement(obj, "bndbox")
            x, y, w, h = a["bbox"]
            for key, value in zip(
                ("xmin", "ymin", "xmax", "ymax"), (x + 1, y + 1, x + w, y + h), strict=True
            ):
                ET.SubElement(box, key).text = f"{value:.1f}"
        ET.ElementTree(root).write(voc / "Annotations" / f"{stem}.xml")
        names.append(stem)
    for image_set in ("trainval", "test"):
        (voc / "ImageSets" / "Main" / f"{image_set}.txt").write_text("\n".join(names) + "\n")
    return tmp_path / "voc"


def test_voc_data_reads_the_voc_layout(voc_root, coco128):
    data = VocDataModule(voc_root, num_workers=0, hflip_prob=0.0, **SMALL)
    assert data.num_classes == 20 and data.classes[15] == "person"
    data.setup("fit")
    train, val = data.datasets["train"], data.datasets["val"]
    index, first = next((k, i) for k, i in enumerate(val.base.images) if any(i.crowd))
    assert first.crowd[0]  # the difficult object, ignored by evaluation
    raw = json.loads((coco128 / "annotations" / "instances_train2017.json").read_text())
    coco = next(
        a for a in raw["annotations"]
        if a["image_id"] == first.image_id and COCO_TO_VOC.get(a["category_id"])
    )  # fmt: skip
    x, y, w, h = coco["bbox"]
    torch.testing.assert_close(
        torch.tensor(first.boxes[0]), torch.tensor([x, y, x + w, y + h]), atol=0.06, rtol=0
    )
    assert first.labels[0] == 1 + VOC_CLASSES.index(COCO_TO_VOC[coco["category_id"]])
    (_, target), _ = train[index]
    assert len(target["boxes"]) == len(first.boxes) - 1  # difficult: not trained on
    images, _ = next(iter(data.train_dataloader()))
    assert isinstance(images, list) and images[0].dtype == torch.uint8


@pytest.mark.slow
def test_short_run_overfits_two_images(coco128, tmp_path):
    """resnet18 + FPN from random weights (conv1 and conv2_x fixed, as the papers fix them),
    60 SGD steps on two COCO128 images (10 objects, 128-pixel shorter side): the loss falls
    several times and mAP@0.5 on them rises from 0."""
    from cnnzoo.optim import OptimizerSpec, ScheduleSpec

    data = coco_data(coco128, max_images=2, hflip_prob=0.0)
    torch.manual_seed(0)
    detector = Detector(
        "resnet18",
        "fpn",
        num_classes=data.num_classes,
        trainable_stages=3,
        representation_size=256,
        faster_rcnn=FEW_PROPOSALS
        | {"rpn_post_nms_top_n_train": 100, "box_batch_size_per_image": 32},
        optimizer=OptimizerSpec(lr=0.005, weight_decay=1e-4),
        schedule=ScheduleSpec(name="constant", warmup_epochs=10, warmup_lr=5e-4),
    )
    losses = []

    class Losses(L.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            losses.append(outputs["loss"].item())

    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=60,  # one batch of the two images an epoch
        check_val_every_n_epoch=1000,  # validate only before and after
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[Losses()],
        default_root_dir=tmp_path,
    )
    before = trainer.validate(detector, data, verbose=False)[0]
    trainer.fit(detector, data)
    after = trainer.validate(detector, data, verbose=False)[0]
    assert before["val/map_50"] < 0.05
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 / 3
    assert after["val/map_50"] > 0.5, after


@pytest.mark.slow
def test_resnet50_fpn_gives_torchvisions_boxes(coco128):
    """Our resnet50_v1_5 + FPN with torchvision's fasterrcnn_resnet50_fpn random weights
    (built as torchvision builds it without pretrained weights: BatchNorm, every stage
    trainable) detects the same boxes on real images."""
    from cnnzoo_resnet import from_torchvision_state_dict
    from torchvision.models.detection import fasterrcnn_resnet50_fpn

    torch.manual_seed(0)
    theirs = fasterrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=91, min_size=320, max_size=533
    ).eval()
    ours = Detector("resnet50_v1_5", "fpn", num_classes=90, frozen_bn=False, trainable_stages=5)
    state = theirs.state_dict()
    body = {k.removeprefix("backbone.body."): v for k, v in state.items() if "body." in k}
    mapped = {f"backbone.body.model.{k}": v for k, v in from_torchvision_state_dict(body).items()}
    mapped |= {k: v for k, v in state.items() if "body." not in k}
    ours.model.load_state_dict(mapped, strict=True)
    ours.eval()
    # COCO128 images resized as the data module does; torchvision's own resize is then 1:1.
    data = coco_data(coco128, max_images=2, min_size=320, max_size=533)
    data.setup("validate")
    images, _ = next(iter(data.val_dataloader()))
    with torch.no_grad():
        expected = theirs([image.float() / 255 for image in images])
        got = ours(images)
    for want, have in zip(expected, got, strict=True):
        assert len(want["boxes"]) > 0
        torch.testing.assert_close(have["boxes"], want["boxes"])
        torch.testing.assert_close(have["scores"], want["scores"])
        assert torch.equal(have["labels"], want["labels"])


@pytest.mark.slow
def test_command_fits_tests_and_predicts_coco_results(coco128, tmp_path, monkeypatch):
    from cnnzoo_detect.cli import main
    from pycocotools.coco import COCO

    monkeypatch.chdir(tmp_path)
    common = [
        "--model.backbone", "mobilenet_v1_025", "--model.neck", "single",
        "--model.faster_rcnn", json.dumps(FEW_PROPOSALS | {"box_score_thresh": 0.0}),
        "--data", "CocoDataModule", "--data.root", str(coco128),
        "--data.val_split", "train2017", "--data.max_images", "2",
        "--data.min_size", "128", "--data.max_size", "224", "--data.num_workers", "0",
        "--data.empty_images", "skip", "--trainer.enable_progress_bar", "false",
    ]  # fmt: skip
    main(["fit", *common, "--trainer.max_steps", "2", "--trainer.enable_model_summary", "false"])
    run = tmp_path / "runs" / "mobilenet_v1_025_single"
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert list(run.glob("version_*/detections-val-0.png"))
    assert list((tmp_path / "runs" / "wandb").glob("offline-run-*/files/media/images/val/*.png"))
    metrics = (next(run.glob("version_*")) / "metrics.csv").read_text()
    assert "val/map_50" in metrics and "test/map" in metrics
    checkpoint = str(run / "checkpoints" / "last.ckpt")
    predict = ["--ckpt_path", checkpoint, "--trainer.logger", "false", "--save_images", "true"]
    main(["predict", *common, *predict, "--score_threshold", "0"])
    results = json.loads((run / "predictions" / "detections.json").read_text())
    assert results and {r["image_id"] for r in results} == {9, 25}
    annotations = coco128 / "annotations" / "instances_train2017.json"
    coco_ids = {c["id"] for c in json.loads(annotations.read_text())["categories"]}
    assert {r["category_id"] for r in results} <= coco_ids
    ground_truth = COCO(str(coco128 / "annotations" / "instances_train2017.json"))
    loaded = ground_truth.loadRes(results)  # pycocotools reads the file as COCO results
    assert len(loaded.anns) == len(results)
    assert sorted(p.name for p in (run / "predictions").glob("*.png")) == ["25.png", "9.png"]


@pytest.mark.slow
def test_a_resumed_detection_run_goes_on_in_the_same_log_and_clock(coco128, tmp_path, monkeypatch):
    """The run framework is the classification command's: `--ckpt_path last` continues the
    CSV log's version and the run clock, and a sitting's time limit ends it with status 75."""
    from cnnzoo.sittings import SITTING_ENDED, saved_clock
    from cnnzoo_detect.cli import main

    monkeypatch.chdir(tmp_path)
    common = [
        "--model.backbone", "mobilenet_v1_025", "--model.neck", "single",
        "--model.faster_rcnn", json.dumps(FEW_PROPOSALS),
        "--data.root", str(coco128),  # the default data module: COCO
        "--data.val_split", "train2017", "--data.max_images", "2", "--data.batch_size", "1",
        "--data.min_size", "128", "--data.max_size", "224", "--data.num_workers", "0",
        "--data.empty_images", "skip", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--trainer.limit_val_batches", "1",
        "--test_after_fit", "false", "--wandb.enabled", "false",
    ]  # fmt: skip
    # A sitting of a second holds one epoch of a 3-epoch schedule, not two.
    assert main(["fit", *common, "--trainer.max_epochs", "3", "--sitting_minutes", "0.0001"]) == (
        SITTING_ENDED
    )
    run = tmp_path / "runs" / "mobilenet_v1_025_single"
    last = run / "checkpoints" / "last.ckpt"
    first = saved_clock(last)
    assert first["sittings"] == 1 and first["sitting_ended"]
    assert main(["fit", *common, "--trainer.max_epochs", "3", "--ckpt_path", "last"]) == 0
    assert [p.name for p in run.glob("version_*")] == ["version_0"]  # one log, continued
    rows = (run / "version_0" / "metrics.csv").read_text().splitlines()
    epochs = {line.split(",")[0] for line in rows[1:]} if rows else set()
    assert rows and len(epochs) >= 1
    logged = (run / "version_0" / "metrics.csv").read_text()
    assert "val/map" in logged
    second = saved_clock(last)
    assert second["sittings"] == 2 and second["wall_time_s"] > first["wall_time_s"]
    assert torch.load(last, weights_only=False)["epoch"] == 2  # the schedule's last epoch


@pytest.mark.bad_input
def test_the_detection_command_prints_a_users_error_in_one_line(capsys):
    """As `cnnzoo` does: the message last, status 1, no traceback (COCO is the default data)."""
    from cnnzoo_detect.cli import run

    assert run(["fit", "--data.root", "/nowhere"]) == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("cnnzoo-detect: error: no COCO folder at /nowhere")
    assert error.endswith("(--debug shows the traceback)")
