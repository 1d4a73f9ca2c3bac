"""cnnzoo-data: the datasets and each paper's augmentation, as LightningDataModules."""

from cnnzoo_data.cifar import CIFAR10DataModule, CIFAR100DataModule
from cnnzoo_data.datamodule import ClassificationDataModule, Splits
from cnnzoo_data.digits import DigitsDataModule
from cnnzoo_data.folder import ImageFolderDataModule
from cnnzoo_data.mnist import MNISTDataModule
from cnnzoo_data.transforms import AUGMENTATIONS, build_transform

__all__ = [
    "AUGMENTATIONS",
    "CIFAR10DataModule",
    "CIFAR100DataModule",
    "ClassificationDataModule",
    "DigitsDataModule",
    "ImageFolderDataModule",
    "MNISTDataModule",
    "Splits",
    "build_transform",
]
