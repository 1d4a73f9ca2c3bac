"""Network in Network (Lin, Chen and Yan 2013) for cnnzoo: mlpconv layers and global average
pooling, as in the authors' released CIFAR-10 and ImageNet models."""

from cnnzoo_nin.nin import NIN, MlpConv, nin_cifar10, nin_imagenet

__all__ = ["NIN", "MlpConv", "nin_cifar10", "nin_imagenet"]
