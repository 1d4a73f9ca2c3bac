"""Detection data: COCO and Pascal VOC as torchvision lays them out, with the papers' transforms.

Each image is resized so that its shorter side is `min_size` (Faster R-CNN §3.3: 600 for
VGG-16; the ResNet and FPN papers: 800) and its longer side at most `max_size`, and while
training flipped horizontally with its boxes (Faster R-CNN §3.3). Images travel as uint8
and in lists (they differ in size); the model normalises and pads them into a batch.

Dataset labels are made contiguous (1..K, 0 being the background of Faster R-CNN's
classifier); `category_ids` maps them back. Crowd regions (COCO `iscrowd`) and VOC's
`difficult` objects are not trained on; evaluation ignores detections that fall on them, as
the COCO and VOC evaluations do.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Literal
from xml.etree.ElementTree import parse as parse_xml

import lightning as L
import torch
from cnnzoo import DatasetError
from cnnzoo_data.datamodule import default_num_workers
from cnnzoo_data.sampling import EpochDataLoader, EpochSampler, EvalSampler, TransformedDataset
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors
from torchvision.datasets import VOCDetection
from torchvision.transforms import v2
from torchvision.transforms.v2.functional import pil_to_tensor

from cnnzoo_detect.images import AnnotatedImage, load_rgb
from cnnzoo_detect.proposals import SearchMode, proposal_cache_path, proposals_for

InvalidBoxes = Literal["error", "drop"]
Proposals = Literal["none", "selective_search"]
EmptyImages = Literal["error", "keep", "skip"]

# A box may overrun its image by this much (float coordinates, rounding) and is then
# clipped to it; beyond it the annotation is wrong.
OUT_OF_IMAGE_TOLERANCE = 1.0

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip


def check_boxes(
    images: list[AnnotatedImage], invalid_boxes: InvalidBoxes, split: str
) -> tuple[list[AnnotatedImage], int]:
    """Clip boxes that overrun their image by rounding; fail on (or drop, counting them)
    boxes of no area or outside their image, naming the image and the annotation."""
    dropped = 0
    for image in images:
        keep = []
        for k, (x1, y1, x2, y2) in enumerate(image.boxes):
            tol = OUT_OF_IMAGE_TOLERANCE
            problem = None
            if x2 <= x1 or y2 <= y1:
                problem = "has no area"
            elif x1 < -tol or y1 < -tol or x2 > image.width + tol or y2 > image.height + tol:
                problem = f"lies outside the {image.width}x{image.height} image"
            if problem is None:
                image.boxes[k] = [
                    max(0.0, x1),
                    max(0.0, y1),
                    min(float(image.width), x2),
                    min(float(image.height), y2),
                ]
                keep.append(k)
            elif invalid_boxes == "drop":
                dropped += 1
            else:
                raise DatasetError(
                    f"{split}: {image.names[k]} of image {image.path.name} (id "
                    f"{image.image_id}) {problem}: box x1, y1, x2, y2 = "
                    f"{[round(v, 2) for v in (x1, y1, x2, y2)]}. Fix the annotation, or pass "
                    f"--data.invalid_boxes drop to leave such boxes out (they are counted)."
                )
        image.boxes = [image.boxes[k] for k in keep]
        image.labels = [image.labels[k] for k in keep]
        image.crowd = [image.crowd[k] for k in keep]
        image.names = [image.names[k] for k in keep]
    if dropped:
        warnings.warn(
            f"{split}: dropped {dropped} boxes of no area or outside their image", stacklevel=2
        )
    return images, dropped


def check_empty(
    images: list[AnnotatedImage], empty_images: EmptyImages, split: str
) -> list[AnnotatedImage]:
    """Training images with no box to learn from (crowd regions excepted): an error, or
    kept as negatives (the RPN and the classifier learn background from them), or skipped
    (as detectron2 and torchvision's reference scripts do)."""
    empty = [image for image in images if not any(not crowd for crowd in image.crowd)]
    if not empty or empty_images == "keep":
        return images
    if empty_images == "skip":
        return [image for image in images if image not in empty]
    shown = ", ".join(image.path.name for image in empty[:5])
    raise DatasetError(
        f"{split}: {len(empty)} training images have no object to learn from ({shown}"
        f"{', ...' if len(empty) > 5 else ''}). Pass --data.empty_images skip to leave them "
        f"out, or keep to train on them as negatives (background only)."
    )


def coco_split(root: Path, split: str) -> tuple[Path, Path]:
    """The image folder and annotation file of a COCO split, checked."""
    images, annotations = root / split, root / "annotations" / f"instances_{split}.json"
    if not images.is_dir() or not annotations.is_file():
        missing = images if not images.is_dir() else annotations
        raise DatasetError(
            f"no COCO split {split!r} under {root}: {missing} is missing. Expected the "
            f"layout torchvision.datasets.CocoDetection and pycocotools read: "
            f"<root>/{split}/*.jpg and <root>/annotations/instances_{split}.json."
        )
    return images, annotations


def coco_categories(annotations: Path) -> list[dict[str, Any]]:
    with annotations.open() as file:
        return sorted(json.load(file)["categories"], key=lambda category: category["id"])


def load_coco(root: Path, split: str, category_ids: list[int]) -> list[AnnotatedImage]:
    """A COCO split's images with their boxes; `category_ids[label]` is a label's category."""
    folder, annotations = coco_split(root, split)
    with annotations.open() as file:
        data = json.load(file)
    label_of = {category_id: label for label, category_id in enumerate(category_ids)}
    images = {
        info["id"]: AnnotatedImage(
            folder / info["file_name"], info["id"], info["width"], info["height"]
        )
        for info in sorted(data["images"], key=lambda info: info["id"])
    }
    for annotation in data.get("annotations", []):  # test-dev has none
        image = images[annotation["image_id"]]
        x, y, w, h = annotation["bbox"]
        if annotation["category_id"] not in label_of:
            raise DatasetError(
                f"{split}: annotation {annotation['id']} of {image.path.name} has category "
                f"{annotation['category_id']}, which {annotations.name} does not list."
            )
        image.boxes.append([x, y, x + w, y + h])
        image.labels.append(label_of[annotation["category_id"]])
        image.crowd.append(bool(annotation.get("iscrowd", 0)))
        image.names.append(f"annotation {annotation['id']}")
    return list(images.values())


def _voc_image_id(stem: str, index: int) -> int:
    """VOC names images 2008_000123 or 000005: their digits make a stable integer id."""
    digits = stem.replace("_", "")
    return int(digits) if digits.isdigit() else index


def load_voc(root: Path, year: str, image_set: str, download: bool) -> list[AnnotatedImage]:
    """A Pascal VOC image set, read through torchvision's VOCDetection (and its download)."""
    try:
        dataset = VOCDetection(str(root), year=year, image_set=image_set, download=download)
    except (RuntimeError, FileNotFoundError) as exc:
        raise DatasetError(
            f"no Pascal VOC {year} {image_set!r} set under {root} ({exc}). Expected the "
            f"layout torchvision.datasets.VOCDetection reads: <root>/VOCdevkit/VOC{year}/"
            f"JPEGImages/*.jpg, Annotations/*.xml and ImageSets/Main/{image_set}.txt."
        ) from exc
    label_of = {name: label for label, name in enumerate(VOC_CLASSES, start=1)}
    images = []
    for index, (image_path, xml_path) in enumerate(
        zip(dataset.images, dataset.annotations, strict=True)
    ):
        annotation = dataset.parse_voc_xml(parse_xml(xml_path).getroot())["annotation"]
        size = annotation["size"]
        path = Path(image_path)
        image = AnnotatedImage(
            path, _voc_image_id(path.stem, index), int(size["width"]), int(size["height"])
        )
        for k, obj in enumerate(annotation.get("object", [])):
            if obj["name"] not in label_of:
                raise DatasetError(
                    f"{xml_path}: object {k} is a {obj['name']!r}, not one of the 20 VOC "
                    f"classes {VOC_CLASSES}."
                )
            box = obj["bndbox"]
            # VOC counts pixels from 1 and includes the last: [xmin - 1, xmax] covers them.
            x1, y1 = float(box["xmin"]) - 1, float(box["ymin"]) - 1
            image.boxes.append([x1, y1, float(box["xmax"]), float(box["ymax"])])
            image.labels.append(label_of[obj["name"]])
            image.crowd.append(obj.get("difficult", "0") == "1")
            image.names.append(f"object {k} ({obj['name']})")
        images.append(image)
    return images


class DetectionImages(Dataset):
    """Item i: ((image, target), image_id), the image a uint8 tv_tensors.Image and the
    target's boxes a tv_tensors.BoundingBoxes, so that v2 transforms move them together.
    Training targets leave crowd regions out; evaluation targets keep them, marked."""

    def __init__(self, images: list[AnnotatedImage], train: bool) -> None:
        self.images = images
        self.train = train

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        annotated = self.images[index]
        image = tv_tensors.Image(pil_to_tensor(load_rgb(annotated.path)))
        height, width = image.shape[-2:]
        keep = [k for k, crowd in enumerate(annotated.crowd) if not (self.train and crowd)]
        boxes = torch.tensor([annotated.boxes[k] for k in keep], dtype=torch.float32)
        target = {
            "boxes": tv_tensors.BoundingBoxes(
                boxes.reshape(-1, 4), format="XYXY", canvas_size=(height, width)
            ),
            "labels": torch.tensor([annotated.labels[k] for k in keep], dtype=torch.int64),
            "iscrowd": torch.tensor([annotated.crowd[k] for k in keep], dtype=torch.int64),
            "image_id": annotated.image_id,
            "orig_size": torch.tensor([height, width]),
        }
        if annotated.proposals is not None:
            # A second set of boxes, resized and flipped with the image by the same transform.
            target["proposals"] = tv_tensors.BoundingBoxes(
                annotated.proposals, format="XYXY", canvas_size=(height, width)
            )
        return (image, target), annotated.image_id


def collate(batch: list) -> tuple[list[torch.Tensor], list[dict[str, Any]]]:
    """Lists of images (they differ in size) and of targets, as plain tensors."""
    images, targets = [], []
    for (image, target), _ in batch:
        images.append(image.as_subclass(torch.Tensor))
        targets.append(
            {
                key: value.as_subclass(torch.Tensor) if isinstance(value, torch.Tensor) else value
                for key, value in target.items()
            }
        )
    return images, targets


class DetectionDataModule(L.LightningDataModule):
    """Shared behaviour of the detection data modules.

    Args:
        batch_size: images per training batch (per process); the papers used 1 or 2.
        eval_batch_size: images per evaluation batch; defaults to batch_size.
        num_workers: loader processes; None picks up to 4, leaving one core free.
        min_size, max_size: the shorter side images are resized to, and the cap on the
            longer: 600/1000 for the Faster R-CNN paper's VGG-16, 800/1333 for ResNet and FPN.
        hflip_prob: chance of a horizontal flip of a training image and its boxes.
        invalid_boxes: boxes of no area or outside their image: "error" (naming the image
            and the annotation) or "drop" (counted in `dropped_boxes`).
        empty_images: training images without boxes: "error", "keep" (as negatives) or
            "skip". Evaluation keeps every image, as COCO's evaluation does.
        max_images: use only the first this many images of each split (quick runs).
        seed: seeds the shuffling and the flips.
        proposals: "selective_search" gives each image its region proposals (target
            "proposals"), which R-CNN and Fast R-CNN classify; "none" for Faster R-CNN, whose
            RPN proposes. `cnnzoo-detect` sets it from --model.method.
        proposal_mode: selective search's "fast" mode (the R-CNN paper's, ~2,000 boxes an
            image) or its slower "quality" mode.
        max_proposals: the most proposals kept an image (selective search's ranking).
        proposal_cache: the folder of the proposal files (computed once per image, seconds
            each); None: $CNNZOO_CACHE or ~/.cache/cnnzoo/proposals.
        proposal_workers: processes running selective search; None: num_workers, at least 1.
    """

    classes: list[str]  # by label: classes[0] is the background
    category_ids: list[int]  # the dataset's category id of each label (0 for background)

    def __init__(
        self,
        batch_size: int = 2,
        eval_batch_size: int | None = None,
        num_workers: int | None = None,
        min_size: int = 800,
        max_size: int = 1333,
        hflip_prob: float = 0.5,
        invalid_boxes: InvalidBoxes = "error",
        empty_images: EmptyImages = "error",
        max_images: int | None = None,
        seed: int = 0,
        proposals: Proposals = "none",
        proposal_mode: SearchMode = "fast",
        max_proposals: int = 2000,
        proposal_cache: str | None = None,
        proposal_workers: int | None = None,
    ) -> None:
        super().__init__()
        if proposals not in ("none", "selective_search"):
            raise ValueError(
                f"proposals must be 'none' (Faster R-CNN) or 'selective_search' (R-CNN, "
                f"Fast R-CNN); got {proposals!r}."
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1; got {batch_size}.")
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = default_num_workers() if num_workers is None else num_workers
        self.min_size = min_size
        self.max_size = max_size
        self.hflip_prob = hflip_prob
        self.invalid_boxes = invalid_boxes
        self.empty_images = empty_images
        self.max_images = max_images
        self.seed = seed
        self.proposals = proposals
        self.proposal_mode = proposal_mode
        self.max_proposals = max_proposals
        self.proposal_cache = proposal_cache
        self.proposal_workers = proposal_workers
        self.dropped_boxes: dict[str, int] = {}
        self.datasets: dict[str, TransformedDataset] = {}

    @property
    def num_classes(self) -> int:
        """Object classes, the background not counted."""
        return len(self.classes) - 1

    def load(self, stage: str) -> list[AnnotatedImage]:
        """The images of a stage's split: "train", "val", "test" or "predict"."""
        raise NotImplementedError

    def split_name(self, stage: str) -> str:
        """The dataset's own name of a stage's split (train2017, VOC2007-test), for the
        proposal files."""
        raise NotImplementedError

    def _propose(self, stage: str, images: list[AnnotatedImage]) -> None:
        """Each image's selective-search proposals, from the cache or computed into it."""
        cache = proposal_cache_path(
            self.root, self.split_name(stage), self.proposal_mode, self.max_proposals
        )
        if self.proposal_cache is not None:
            cache = Path(self.proposal_cache) / cache.name
        boxes = proposals_for(
            images,
            cache,
            mode=self.proposal_mode,
            max_proposals=self.max_proposals,
            workers=self.proposal_workers or max(1, self.num_workers),
        )
        for image in images:
            image.proposals = boxes[image.image_id]

    def transform(self, train: bool) -> v2.Transform:
        resize = v2.Resize(self.min_size, max_size=self.max_size)
        if not train:
            return resize
        return v2.Compose([resize, v2.RandomHorizontalFlip(self.hflip_prob)])

    def _dataset(self, stage: str) -> TransformedDataset:
        if stage not in self.datasets:
            images = self.load(stage)[: self.max_images]
            images, self.dropped_boxes[stage] = check_boxes(images, self.invalid_boxes, stage)
            train = stage == "train"
            if train:
                images = check_empty(images, self.empty_images, stage)
            if self.proposals == "selective_search":
                self._propose(stage, images)
            self.datasets[stage] = TransformedDataset(
                DetectionImages(images, train), self.transform(train), self.seed, random=train
            )
        return self.datasets[stage]

    def prepare_data(self) -> None:
        # Selective search runs in the one process a machine prepares data in (Lightning's
        # rank 0), into the cache; under DDP the other processes read it in setup.
        if self.proposals != "none":
            state = self.trainer.state.fn if self.trainer is not None else None
            self.setup(state.value if state is not None else None)

    def setup(self, stage: str | None = None) -> None:
        needed = {
            "fit": ("train", "val"),
            "validate": ("val",),
            "test": ("test",),
            "predict": ("predict",),
        }.get(stage or "fit", ("train", "val"))
        for split in needed:
            self._dataset(split)

    def _loader(self, stage: str) -> DataLoader:
        dataset = self._dataset(stage)
        train = stage == "train"
        if train and len(dataset) == 0:
            raise DatasetError("the training split has no images left to train on.")
        return (EpochDataLoader if train else DataLoader)(
            dataset,
            batch_size=self.batch_size if train else self.eval_batch_size,
            sampler=EpochSampler(dataset, seed=self.seed) if train else EvalSampler(dataset),
            num_workers=self.num_workers,
            collate_fn=collate,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=False,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def feature_dataloader(self) -> DataLoader:
        """The training images as evaluation sees them (resized, not flipped), in order:
        what R-CNN fits its SVMs and box regressors on."""
        train = self._dataset("train")
        dataset = TransformedDataset(train.base, self.transform(train=False), self.seed)
        return DataLoader(
            dataset,
            batch_size=self.eval_batch_size,
            sampler=EvalSampler(dataset),
            num_workers=self.num_workers,
            collate_fn=collate,
        )

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict")


class CocoDataModule(DetectionDataModule):
    """COCO in the layout torchvision's CocoDetection reads: `<root>/<split>/*.jpg` and
    `<root>/annotations/instances_<split>.json`, for splits such as train2017 and val2017.

    Args:
        root: the COCO folder.
        train_split, val_split: the splits to train and validate on.
        test_split: the split `test` evaluates; defaults to val_split.
        predict_split: the split `predict` detects on (annotations optional, as in
            test-dev's image_info file renamed instances_<split>.json); defaults to test_split.
        Other arguments: see DetectionDataModule.
    """

    def __init__(
        self,
        root: str | Path,
        train_split: str = "train2017",
        val_split: str = "val2017",
        test_split: str | None = None,
        predict_split: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.root = Path(root)
        test_split = test_split or val_split
        self.splits = {
            "train": train_split,
            "val": val_split,
            "test": test_split,
            "predict": predict_split or test_split,
        }
        if not self.root.is_dir():
            raise DatasetError(
                f"no COCO folder at {self.root}. Expected <root>/<split>/*.jpg and "
                f"<root>/annotations/instances_<split>.json (torchvision's CocoDetection "
                f"layout), e.g. train2017/ and annotations/instances_train2017.json."
            )
        # The labels come from the validation split's categories (its file is the smaller);
        # every split must list the same.
        categories = coco_categories(coco_split(self.root, val_split)[1])
        self.category_ids = [0] + [category["id"] for category in categories]
        self.classes = ["__background__"] + [category["name"] for category in categories]

    def split_name(self, stage: str) -> str:
        return self.splits[stage]

    def load(self, stage: str) -> list[AnnotatedImage]:
        split = self.splits[stage]
        _, annotations = coco_split(self.root, split)
        if [0] + [c["id"] for c in coco_categories(annotations)] != self.category_ids:
            raise DatasetError(
                f"{annotations} lists other categories than the split the labels were taken "
                f"from; every split must share COCO's category list."
            )
        return load_coco(self.root, split, self.category_ids)


class VocDataModule(DetectionDataModule):
    """Pascal VOC in the layout torchvision's VOCDetection reads (and downloads):
    `<root>/VOCdevkit/VOC<year>/{JPEGImages,Annotations,ImageSets/Main}`.

    Args:
        root: the folder that holds VOCdevkit/.
        year: "2007" to "2012".
        train_set, val_set, test_set: image sets (ImageSets/Main/<set>.txt): the Faster
            R-CNN paper trains on VOC 2007 trainval and tests on VOC 2007 test.
        download: fetch the year's archives through torchvision.
        Other arguments: see DetectionDataModule.

    VOC has no category ids: labels 1-20 follow VOC_CLASSES, and predictions use them.
    """

    def __init__(
        self,
        root: str | Path,
        year: str = "2007",
        train_set: str = "trainval",
        val_set: str = "test",
        test_set: str | None = None,
        download: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.root = Path(root)
        self.year = year
        test_set = test_set or val_set
        self.sets = {"train": train_set, "val": val_set, "test": test_set, "predict": test_set}
        self.download = download
        self.classes = ["__background__", *VOC_CLASSES]
        self.category_ids = list(range(len(self.classes)))

    def split_name(self, stage: str) -> str:
        return f"VOC{self.year}-{self.sets[stage]}"

    def load(self, stage: str) -> list[AnnotatedImage]:
        return load_voc(self.root, self.year, self.sets[stage], self.download)
