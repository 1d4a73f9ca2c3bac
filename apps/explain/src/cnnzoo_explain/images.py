"""Where the images come from, and how they are prepared the way the model's data saw them.

    --image photo.jpg | folder/ | skimage:astronaut | mnist:test:0-8 | cifar10:train:5,9
    --dataset mnist --data-root ../shared/data/mnist   (the images scanned by deconvnet and
                                                        searched by retrieval)

Dataset images go through their data module: its loading code, its evaluation geometry
(MNIST's digits centred in a 32x32 field, resized to the model's input size) and its
per-batch normalisation. Photographs are resized (shorter side) and centre-cropped to the
model's input size, as the ImageFolder data module does without augmentation, and
normalised with the dataset's mean and std when a dataset is named, ImageNet's otherwise.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from cnnzoo import CnnzooError
from cnnzoo.card import IMAGENET_MEAN, IMAGENET_STD, ModelCard
from cnnzoo.recipes import recipe_data
from cnnzoo_data import (
    CIFAR10DataModule,
    ClassificationDataModule,
    DigitsDataModule,
    MNISTDataModule,
    build_transform,
)
from cnnzoo_data.folder import load_rgb
from cnnzoo_data.transforms import Normalize
from torchvision.datasets.folder import IMG_EXTENSIONS

from cnnzoo_explain.errors import ImageSourceError

DATASETS: dict[str, type[ClassificationDataModule]] = {
    "mnist": MNISTDataModule,
    "cifar10": CIFAR10DataModule,
    "digits": DigitsDataModule,  # scikit-learn's 1,797 digits: no files needed
}

# The photographs scikit-image ships (greyscale ones are turned to RGB for 3-channel models).
SKIMAGE_PHOTOS = (
    "astronaut",
    "brick",
    "camera",
    "cat",
    "chelsea",
    "coffee",
    "coins",
    "grass",
    "gravel",
    "hubble_deep_field",
    "immunohistochemistry",
    "moon",
    "page",
    "rocket",
    "text",
)

# ITU-R 601 luma: how a colour image becomes one grey channel.
LUMA = torch.tensor([0.299, 0.587, 0.114])


def to_channels(pixels: torch.Tensor, in_chans: int) -> torch.Tensor:
    """uint8 (N, C, H, W) with C in {1, 3} -> `in_chans` channels (grey <-> RGB)."""
    channels = pixels.shape[1]
    if channels == in_chans:
        return pixels
    if channels == 1:
        return pixels.expand(-1, in_chans, -1, -1).contiguous()
    if channels == 3 and in_chans == 1:
        grey = (pixels.float() * LUMA.view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
        return grey.round().clamp(0, 255).to(torch.uint8)
    raise ImageSourceError(
        f"cannot turn {channels}-channel images into the {in_chans} channels the model takes."
    )


def _adapted(stats: tuple[float, ...], in_chans: int) -> tuple[float, ...]:
    """Per-channel statistics for `in_chans` channels: repeated from grey, averaged to grey."""
    if len(stats) == in_chans:
        return tuple(stats)
    if len(stats) == 1:
        return tuple(stats) * in_chans
    return (float(np.mean(stats)),) * in_chans


@dataclass
class ImageBatch:
    """Images at the model's input size: uint8 pixels to show, float inputs for the model."""

    pixels: torch.Tensor  # uint8 (N, in_chans, H, W)
    inputs: torch.Tensor  # normalised float (N, in_chans, H, W)
    labels: list[int | None]  # the dataset's label, None for photographs
    names: list[str]


# The data module's options that decide how a model saw its images: they are read from the
# model's recipe (CapsNet's unnormalised digits, the ST-CNN's RTS digits).
IMAGE_OPTIONS = ("augmentation", "distortion")


def recipe_images(card: ModelCard | None, dataset: str) -> dict[str, str]:
    """The image options (`IMAGE_OPTIONS`) of the model's recipe, where that recipe reads
    `dataset`: a CapsNet sees MNIST's 28x28 digits unnormalised, LeNet-5 in its 32x32 field,
    the RTS ST-CNN its 42x42 distorted digits. Empty: the dataset's own."""
    if card is None or not card.recipe or dataset not in DATASETS:
        return {}
    try:
        data_class, arguments = recipe_data(card.recipe)
    except CnnzooError:  # a card whose recipe is not installed: the dataset's own
        return {}
    if data_class != DATASETS[dataset].__name__:
        return {}
    return {key: arguments[key] for key in IMAGE_OPTIONS if arguments.get(key) is not None}


class DatasetImages:
    """A dataset loaded by its cnnzoo data module, at the model's input size."""

    def __init__(self, name: str, root: str | None, image_size: int, **options: str) -> None:
        """`options`: the data module's image options the model trained with
        (`recipe_images`), whose evaluation geometry and normalisation the images get
        (default: the dataset's own)."""
        if name not in DATASETS:
            raise ImageSourceError(
                f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}."
            )
        module = DATASETS[name]
        kwargs = {"root": root} if root is not None and name != "digits" else {}
        self.name = name
        self.datamodule = module(image_size=image_size, num_workers=0, **kwargs, **options)
        self.splits = self.datamodule.load()  # raises DatasetError, saying what to do
        self.classes = list(self.datamodule.classes)
        self.in_chans = self.datamodule.in_chans
        self.geometry = build_transform(
            self.datamodule.augmentation, train=False, image_size=image_size
        ).geometry
        self.mean = tuple(self.datamodule.normalize.mean.flatten().tolist())
        self.std = tuple(self.datamodule.normalize.std.flatten().tolist())

    def split(self, split: str):
        dataset = {"train": self.splits.train, "test": self.splits.test}.get(split)
        if dataset is None:
            raise ImageSourceError(f"{self.name} has no {split!r} split; use train or test.")
        return dataset

    def __len__(self) -> int:
        return len(self.splits.train)

    def pixels(self, split: str, indices: list[int]) -> tuple[torch.Tensor, list[int]]:
        """uint8 images (N, C, H, W) after the evaluation geometry, and their labels."""
        dataset = self.split(split)
        bad = [i for i in indices if not 0 <= i < len(dataset)]
        if bad:
            raise ImageSourceError(
                f"{self.name} {split} has images 0 to {len(dataset) - 1}; got index {bad[0]}."
            )
        items = [dataset[i] for i in indices]
        images = [self.geometry(image).as_subclass(torch.Tensor) for image, _ in items]
        return torch.stack(images), [int(label) for _, label in items]

    def batches(
        self, split: str, limit: int | None, batch_size: int
    ) -> Iterator[tuple[torch.Tensor, list[int]]]:
        """The first `limit` images of a split (all of them for None), batch by batch."""
        count = len(self.split(split)) if limit is None else min(limit, len(self.split(split)))
        for start in range(0, count, batch_size):
            indices = list(range(start, min(start + batch_size, count)))
            yield self.pixels(split, indices)[0], indices


class Preprocessing:
    """Pixels -> the model's input: its channels, its input size, the data's normalisation."""

    def __init__(self, in_chans: int, image_size: int, data: DatasetImages | None) -> None:
        self.in_chans = in_chans
        self.image_size = image_size
        mean, std = (data.mean, data.std) if data is not None else (IMAGENET_MEAN, IMAGENET_STD)
        self.normalize = Normalize(_adapted(mean, in_chans), _adapted(std, in_chans))

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 (N, C, H, W) at the input size -> normalised float in the model's channels."""
        return self.normalize(to_channels(pixels, self.in_chans))

    def photo(self, image: np.ndarray) -> torch.Tensor:
        """An (H, W) or (H, W, 3|4) photograph -> uint8 (C, S, S): shorter side resized to S,
        the centre S x S kept."""
        array = np.asarray(image)
        if array.dtype == bool:
            array = array.astype(np.uint8) * 255
        if array.ndim == 2:
            array = array[..., None]
        # A copy: a decoded file's array is read-only, which torch.from_numpy warns about.
        pixels = torch.from_numpy(np.array(array[..., :3])).permute(2, 0, 1)[None]
        height, width = pixels.shape[-2:]
        scale = self.image_size / min(height, width)
        size = (
            max(self.image_size, round(height * scale)),
            max(self.image_size, round(width * scale)),
        )
        resized = F.interpolate(pixels.float(), size=size, mode="bilinear", antialias=True)
        top, left = (size[0] - self.image_size) // 2, (size[1] - self.image_size) // 2
        crop = resized[..., top : top + self.image_size, left : left + self.image_size]
        return to_channels(crop.round().clamp(0, 255).to(torch.uint8), self.in_chans)[0]


def _indices(text: str) -> list[int]:
    """ "0-8" -> 0..8, "3,7" -> [3, 7]."""
    found: list[int] = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        found += list(range(int(first), int(last or first) + 1))
    return found


def _skimage(name: str) -> np.ndarray:
    import skimage.data

    if name not in SKIMAGE_PHOTOS:
        close = difflib.get_close_matches(name, SKIMAGE_PHOTOS, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ImageSourceError(
            f"scikit-image ships no photograph {name!r}.{hint} Choose one of "
            f"{', '.join(SKIMAGE_PHOTOS)}."
        )
    return getattr(skimage.data, name)()


def _files(spec: str) -> list[Path]:
    path = Path(spec)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMG_EXTENSIONS)
        if not files:
            raise ImageSourceError(f"folder {path} holds no images ({', '.join(IMG_EXTENSIONS)}).")
        return files
    if not path.is_file():
        raise ImageSourceError(
            f"image {spec!r} does not exist. Give an image file, a folder of images, "
            f"skimage:<photo> (e.g. skimage:astronaut) or <dataset>:<split>:<indices> "
            f"(e.g. mnist:test:0-8)."
        )
    return [path]


def dataset_of(specs: list[str]) -> str | None:
    """The dataset named by `<dataset>:<split>:<indices>` specs, if any."""
    names = {spec.split(":")[0] for spec in specs if spec.split(":")[0] in DATASETS}
    if len(names) > 1:
        raise ImageSourceError(
            f"images from several datasets ({', '.join(sorted(names))}): "
            f"explain one dataset's images at a time."
        )
    return names.pop() if names else None


def load_images(
    specs: list[str], preprocessing: Preprocessing, data: DatasetImages | None
) -> ImageBatch:
    """The images the specs name, prepared for the model."""
    pixels: list[torch.Tensor] = []
    labels: list[int | None] = []
    names: list[str] = []
    for spec in specs:
        kind, _, rest = spec.partition(":")
        if kind == "skimage":
            pixels.append(preprocessing.photo(_skimage(rest)))
            labels.append(None)
            names.append(rest)
        elif kind in DATASETS and rest:
            split, _, which = rest.partition(":")
            if data is None or data.name != kind:
                raise ImageSourceError(f"{spec!r} names {kind} images; pass --dataset {kind}.")
            try:
                indices = _indices(which or "0")
            except ValueError as exc:
                raise ImageSourceError(
                    f"{spec!r}: write the indices as 0-8 or 3,7 after {kind}:{split}:."
                ) from exc
            images, image_labels = data.pixels(split, indices)
            pixels += list(to_channels(images, preprocessing.in_chans))
            labels += image_labels
            names += [f"{kind} {split} #{i}" for i in indices]
        else:
            for path in _files(spec):
                pixels.append(preprocessing.photo(np.asarray(load_rgb(str(path)))))
                labels.append(None)
                names.append(path.name)
    if not pixels:
        raise ImageSourceError("no images given: pass --image (e.g. --image skimage:astronaut).")
    batch = torch.stack(pixels)
    return ImageBatch(batch, preprocessing(batch), labels, names)
