"""Any ImageFolder tree, ImageNet's layout included: ROOT/<split>/<class>/<image>."""

from __future__ import annotations

from pathlib import Path

from cnnzoo.errors import DatasetError
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS

from cnnzoo_data.archive import cache_root
from cnnzoo_data.datamodule import ClassificationDataModule, Splits, TensorImages

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_rgb(path: str) -> Image.Image:
    """Open an image as RGB, naming the file when it cannot be decoded."""
    try:
        with open(path, "rb") as file:
            image = Image.open(file)
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DatasetError(
            f"cannot decode image {path}: {exc}. Remove or replace the file."
        ) from exc


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


def image_folder(split_dir: Path, classes: list[str]) -> Dataset:
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
        return ImageFolder(str(split_dir), loader=load_rgb)
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
    """

    in_chans = 3
    mean = IMAGENET_MEAN
    std = IMAGENET_STD
    default_image_size = 224
    default_augmentation = "none"

    def __init__(
        self,
        root: str,
        train_dir: str = "train",
        val_dir: str | None = "val",
        test_dir: str | None = None,
        **kwargs,
    ) -> None:
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

    def load(self) -> Splits:
        train = image_folder(self.root / self.train_dir, self.classes)
        val_path = self.root / self.val_dir if self.val_dir else None
        val = image_folder(val_path, self.classes) if val_path and val_path.is_dir() else None
        test = image_folder(self.root / self.test_dir, self.classes) if self.test_dir else None
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
