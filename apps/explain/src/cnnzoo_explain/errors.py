"""The mistakes a user of `cnnzoo explain` can make, each with what to do about it."""

from __future__ import annotations

from cnnzoo import CnnzooError


class LayerNotFoundError(CnnzooError, KeyError):
    """No module of the model has that dotted name."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0])


class ChannelError(CnnzooError, IndexError):
    """A channel number the layer does not have."""


class NotConvolutionalError(CnnzooError, ValueError):
    """A view that needs feature maps or convolutions, on a layer or model without them."""


class ImageSourceError(CnnzooError, FileNotFoundError):
    """An image file, folder, skimage photograph or dataset index that is not there."""


class NoCapsulesError(CnnzooError, ValueError):
    """The capsules view, on a model without digit capsules and a decoder."""
