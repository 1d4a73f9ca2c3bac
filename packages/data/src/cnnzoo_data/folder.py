"""Any ImageFolder tree, ImageNet's layout included: ROOT/<split>/<class>/<image>."""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Literal

from cnnzoo.card import IMAGENET_MEAN, IMAGENET_STD
from cnnzoo.errors import DatasetError
from PIL import Image, UnidentifiedImageError
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS

from cnnzoo_data.archive import cache_root
from cnnzoo_data.datamodule import ClassificationDataModule, Splits, TensorImages

# One channel: the luminance PIL computes ("L"), normalised by ImageNet's channel averages.
IMAGENET_GREY_MEAN = (0.449,)
IMAGENET_GREY_STD = (0.226,)
CHANNEL_MODES = {1: "L", 3: "RGB"}


def load_image(path: str, mode: str = "RGB") -> Image.Image:
    """Open an image converted to `mode` (grey or RGB, whatever the file holds), naming the
    file when it cannot be decoded."""
    try:
        with open(path, "rb") as file:
            image = Image.open(file)
            return image.convert(mode)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DatasetError(
            f"cannot decode image {path}: {exc}. Remove or replace the file, or pass "
            f"--data.skip_corrupt true to leave out every image that does not decode."
        ) from exc


load_rgb = partial(load_image, mode="RGB")


def _decodes(path: str) -> bool:
    try:
        load_image(path)
    except DatasetError:
        return False
    return True


def drop_corrupt(folder: ImageFolder) -> list[str]:
    """Decode every image of `folder` once (threads: decoding releases the GIL), drop those
    that fail from it, and return their paths."""
    from tqdm.auto import tqdm

    paths = [path for path, _ in folder.samples]
    with ThreadPoolExecutor(max_workers=min(16, (os.cpu_count() or 1) * 2)) as pool:
        ok = list(
            tqdm(pool.map(_decodes, paths), total=len(paths), desc="checking images", unit="img")
        )
    folder.samples = [sample for sample, good in zip(folder.samples, ok, strict=True) if good]
    folder.imgs = folder.samples
    folder.targets = [target for _, target in folder.samples]
    return [path for path, good in zip(paths, ok, strict=True) if not good]


def find_classes(split_dir: Path) -> list[str]:
    if not split_dir.is_dir():
        raise DatasetError(
            f"no folder {split_dir}: expected an ImageFolder tree, one sub-folder of images "
            f"per class, e.g. {split_dir}/n01440764/xxx.JPEG (ImageNet) or {split_dir}/cat/1.jpg."
        )
    classes = sorted(entry.name for entry in split_dir.iterdir() if entry.is_dir())
    if not classes:
        raise DatasetError(
            f"{split_dir} has no class sub-folders; put each class's images in its own folder."
        )
    return classes


def image_folder(split_dir: Path, classes: list[str], mode: str = "RGB") -> ImageFolder:
    """torchvision's ImageFolder over `split_dir`, checked against the training classes."""
    found = find_classes(split_dir)
    if found != classes:
        extra, missing = sorted(set(found) - set(classes)), sorted(set(classes) - set(found))
        raise DatasetError(
            f"{split_dir} has other classes than the training folder "
            f"(extra: {extra[:5]}, missing: {missing[:5]}); every split needs the same "
            f"class folders."
        )
    try:
        return ImageFolder(str(split_dir), loader=partial(load_image, mode=mode))
    except FileNotFoundError as exc:
        raise DatasetError(
            f"{split_dir}: {exc}. Supported extensions: {', '.join(IMG_EXTENSIONS)}."
        ) from exc


class ImageFolderDataModule(ClassificationDataModule):
    """Images in class folders: ImageNet as ILSVRC ships it, or any tree of that shape.

    Args:
        root: the folder holding the splits.
        train_dir, val_dir, test_dir: split folders under root. A missing val_dir is split
            off the training images; test_dir defaults to val_dir (ImageNet's papers report
            validation-set error), or to the held-out validation split if there is none.
        in_chans: 3 converts every image to RGB, 1 to grey, whatever each file holds.
        skip_corrupt: decode every image once at setup and leave out those that fail
            (named in a warning, listed in `skipped`); by default a bad file stops the run
            with its name when it is first loaded.
    """

    default_image_size = 224
    default_augmentation = "none"

    def __init__(
        self,
        root: str,
        train_dir: str = "train",
        val_dir: str | None = "val",
        test_dir: str | None = None,
        in_chans: Literal[1, 3] = 3,
        skip_corrupt: bool = False,
        **kwargs,
    ) -> None:
        if in_chans not in CHANNEL_MODES:
            raise DatasetError(f"in_chans must be 1 (grey) or 3 (RGB); got {in_chans}.")
        self.in_chans = in_chans
        grey = in_chans == 1
        self.mean = IMAGENET_GREY_MEAN if grey else IMAGENET_MEAN
        self.std = IMAGENET_GREY_STD if grey else IMAGENET_STD
        self.skip_corrupt = skip_corrupt
        self.skipped: list[str] = []
        super().__init__(**kwargs)
        self.root = Path(root)
        if not self.root.exists():
            raise DatasetError(
                f"dataset folder {self.root.resolve()} does not exist; expected "
                f"{self.root}/{train_dir}/<class>/<image> (and {val_dir or 'val'}/ likewise)."
            )
        self.train_dir, self.val_dir, self.test_dir = train_dir, val_dir, test_dir
        self.classes = find_classes(self.root / train_dir)
        self.num_classes = len(self.classes)

    def _folder(self, split_dir: Path) -> ImageFolder:
        folder = image_folder(split_dir, self.classes, CHANNEL_MODES[self.in_chans])
        if self.skip_corrupt:
            bad = drop_corrupt(folder)
            if bad:
                warnings.warn(
                    f"left out {len(bad)} image(s) of {split_dir} that do not decode: "
                    f"{', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}",
                    stacklevel=2,
                )
            self.skipped.extend(bad)
        if len(folder) == 0:
            raise DatasetError(f"{split_dir} holds no image that decodes.")
        return folder

    def load(self) -> Splits:
        train = self._folder(self.root / self.train_dir)
        val_path = self.root / self.val_dir if self.val_dir else None
        val = self._folder(val_path) if val_path and val_path.is_dir() else None
        test = self._folder(self.root / self.test_dir) if self.test_dir else None
        return Splits(train=train, test=test, val=val)


def decoded(split_dir: Path, classes: list[str]) -> TensorImages:
    """A folder of same-sized small images (CIFAR) decoded once into memory.

    The uint8 tensor is cached under the cnnzoo cache, keyed by the folder's path and
    modification time, so later runs load it in a second instead of decoding every JPEG.
    """
    import hashlib

    import numpy as np
    import torch
    from tqdm.auto import tqdm

    folder = image_folder(split_dir, classes)
    key = hashlib.sha1(
        f"{split_dir.resolve()}:{split_dir.stat().st_mtime_ns}:{len(folder)}".encode()
    )
    cache = cache_root() / "decoded" / f"{split_dir.name}-{key.hexdigest()[:12]}.pt"
    if cache.exists():
        saved = torch.load(cache, weights_only=True)
        return TensorImages(saved["images"], saved["labels"], classes)
    pixels = [
        np.asarray(load_rgb(path))
        for path, _ in tqdm(folder.samples, desc=f"decoding {split_dir}", unit="img")
    ]
    sizes = {p.shape for p in pixels}
    if len(sizes) != 1:
        raise DatasetError(
            f"{split_dir} holds images of several sizes {sorted(sizes)[:3]}; expected one size."
        )
    images = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).contiguous()
    labels = torch.tensor(folder.targets)
    cache.parent.mkdir(parents=True, exist_ok=True)
    staging = cache.with_suffix(".tmp")
    torch.save({"images": images, "labels": labels}, staging)
    staging.replace(cache)  # atomic: an interrupted run never leaves half a cache
    return TensorImages(images, labels, classes)
