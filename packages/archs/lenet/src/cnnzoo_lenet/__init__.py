"""LeNet-5 (LeCun, Bottou, Bengio and Haffner, 1998) as a cnnzoo plugin."""

from cnnzoo_lenet.lenet5 import LeNet5, LeNet5ReLU, lenet5, lenet5_relu

__all__ = ["LeNet5", "LeNet5ReLU", "lenet5", "lenet5_relu"]
