"""CIFAR-10 and CIFAR-100 (Krizhevsky 2009) in any of their common forms.

`root` may be torchvision's folder of Python pickles (downloaded with `download: true`),
an ImageFolder tree with `train/` and `test/`, or a .tar.gz of such a tree (unpacked once
into the cache), such as the JPEG copy of CIFAR-10 in this project's shared data.
"""

from __future__ import annotations

from pathlib import Path

import torch
from cnnzoo.errors import DatasetError
from torchvision.datasets import CIFAR10, CIFAR100

from cnnzoo_data.archive import is_archive, unpacked
from cnnzoo_data.datamodule import ClassificationDataModule, Splits, TensorImages
from cnnzoo_data.folder import decoded, find_classes


def _in_memory(dataset: CIFAR10) -> TensorImages:
    images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()
    return TensorImages(images, torch.tensor(dataset.targets), list(dataset.classes))


class CIFAR10DataModule(ClassificationDataModule):
    """CIFAR-10: 50,000 training and 10,000 test 32x32 colour images in 10 classes.

    Args:
        root: torchvision's pickle folder, an ImageFolder tree with train/ and test/, or a
            .tar.gz of that tree.
        download: fetch the pickles into `root` with torchvision when nothing is there.
    """

    dataset_name = "CIFAR-10"
    num_classes = 10
    in_chans = 3
    classes = [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ]
    mean = (0.4914, 0.4822, 0.4465)
    std = (0.2470, 0.2435, 0.2616)
    default_image_size = 32
    default_augmentation = "cifar"
    torchvision_dataset = CIFAR10
    pickle_folder = "cifar-10-batches-py"

    def __init__(self, root: str = "data/cifar10", download: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.root = root
        self.download = download

    def prepare_data(self) -> None:
        if self.download and not self._folder_tree():
            self.torchvision_dataset(self.root, train=True, download=True)
            self.torchvision_dataset(self.root, train=False, download=True)

    def _folder_tree(self) -> Path | None:
        root = Path(self.root)
        if is_archive(root):
            root = unpacked(root)
        return root if (root / "train").is_dir() and (root / "test").is_dir() else None

    def load(self) -> Splits:
        tree = self._folder_tree()
        if tree is not None:
            found = find_classes(tree / "train")
            if len(found) != self.num_classes or (self.classes and found != self.classes):
                raise DatasetError(
                    f"{tree}/train has {len(found)} class folders ({', '.join(found[:4])}, ...); "
                    f"{type(self).__name__} expects {self.num_classes}: is this the right dataset?"
                )
            self.classes = found
            return Splits(train=decoded(tree / "train", found), test=decoded(tree / "test", found))
        if (Path(self.root) / self.pickle_folder).is_dir() or self.download:
            try:
                train = self.torchvision_dataset(self.root, train=True, download=self.download)
                test = self.torchvision_dataset(self.root, train=False, download=self.download)
            except RuntimeError as exc:
                raise DatasetError(f"{self.root}/{self.pickle_folder}: {exc}") from exc
            self.classes = list(train.classes)
            return Splits(train=_in_memory(train), test=_in_memory(test))
        raise DatasetError(
            f"no {type(self).__name__.removesuffix('DataModule')} found at "
            f"{Path(self.root).resolve()}. "
            f"Expected one of: torchvision's {self.pickle_folder}/ folder, an ImageFolder tree "
            f"with train/<class>/*.jpg and test/<class>/*.jpg, or a .tar.gz of that tree. "
            f"Pass --data.download true to fetch it."
        )


class CIFAR100DataModule(CIFAR10DataModule):
    """CIFAR-100: as CIFAR-10 but with 100 classes of 500 training images each."""

    dataset_name = "CIFAR-100"
    num_classes = 100
    classes: list[str] = []  # read from the dataset: its 100 fine labels in alphabetical order
    mean = (0.5071, 0.4865, 0.4409)
    std = (0.2673, 0.2564, 0.2762)
    torchvision_dataset = CIFAR100
    pickle_folder = "cifar-100-python"

    def __init__(self, root: str = "data/cifar100", download: bool = False, **kwargs) -> None:
        super().__init__(root=root, download=download, **kwargs)
