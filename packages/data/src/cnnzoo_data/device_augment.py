"""The fast path's augmentation: whole batches gathered and augmented on the training device.

`ClassificationDataModule(on_device=True)` keeps a small dataset's uint8 images on the
device and its loader yields only indices; each batch is gathered here in one indexing
operation that also does the CIFAR augmentation of ResNet §4.2 (4 pixels of zero padding on
each side, a random crop of the original size, a horizontal flip half of the time), with
no per-image Python loop: the GPU, not the data loader, bounds an epoch.

The random numbers are, as on the default path, a function of (seed, epoch, image index):
a counter-based hash computed for the whole batch at once on the device, so a resumed run
draws the same crops and flips for the same images, and the draws do not depend on the batch
size, the number of processes or how far the loader has prefetched. They are a different
stream from the default path's (torch's CPU generator seeded per image), drawn from the same
distributions: each offset uniform over 0..2*padding, each flip with probability 1/2.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# The augmentations that the fast path can do batched: "none" and "lenet" are deterministic
# geometry (computed once, before the images move), "cifar" adds the random crop and flip.
BATCHED_AUGMENTATIONS: tuple[str, ...] = ("none", "lenet", "cifar")


@dataclass
class CropFlips:
    """Where each image of a batch is cropped from its padded copy, and which are flipped."""

    top: torch.Tensor  # (N,) row offsets into the padded image, 0..2*padding
    left: torch.Tensor  # (N,) column offsets, 0..2*padding
    flip: torch.Tensor  # (N,) bool: mirror left-right


_MASK = 0xFFFF_FFFF


def _mix(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (three xor-shift-multiply rounds, constants of "lowbias32"),
    in int64 without overflow: the products stay below 2**63."""
    x = x & _MASK
    x = ((x ^ (x >> 16)) * 0x21F0AAAD) & _MASK
    x = ((x ^ (x >> 15)) * 0x735A2D97) & _MASK
    return x ^ (x >> 15)


def draw_crop_flips(indices: torch.Tensor, padding: int, seed: int, epoch: int) -> CropFlips:
    """For the images `indices` in `epoch`: offsets uniform over 0..2*padding (torchvision's
    RandomCrop of a padded image) and flips with probability 1/2 (RandomHorizontalFlip),
    each a function of (seed, epoch, image index) alone, on the indices' device."""
    key = _mix(_mix(torch.full_like(indices, seed & _MASK)) ^ epoch)
    key = _mix(key ^ indices)
    draws = [_mix(key + stream * 0x9E3779B9) for stream in (1, 2, 3)]  # three streams
    # The modulo's bias is below 2**-28 for nine offsets.
    top, left = (d % (2 * padding + 1) for d in draws[:2])
    return CropFlips(top=top, left=left, flip=(draws[2] >> 16) & 1 == 1)


def gather_crops(
    images: torch.Tensor,
    indices: torch.Tensor,
    padding: int = 0,
    crops: CropFlips | None = None,
) -> torch.Tensor:
    """`images[indices]`, each cropped from its zero-padded copy and flipped as `crops`
    says, at the images' own size: one gather, whatever the batch size.

    The padded copy is never made: a pixel of the crop reads the source pixel its offset
    points to, or zero where that falls in the padding.
    """
    if crops is None:
        return images[indices]
    channels, height, width = images.shape[1:]
    device = images.device
    rows = crops.top[:, None] - padding + torch.arange(height, device=device)  # (N, H)
    columns = crops.left[:, None] - padding + torch.arange(width, device=device)  # (N, W)
    columns = torch.where(crops.flip[:, None], columns.flip(-1), columns)
    inside = ((rows >= 0) & (rows < height))[:, :, None] & ((columns >= 0) & (columns < width))[
        :, None, :
    ]  # (N, H, W)
    pixels = images[
        indices[:, None, None, None],
        torch.arange(channels, device=device)[None, :, None, None],
        rows.clamp(0, height - 1)[:, None, :, None],
        columns.clamp(0, width - 1)[:, None, None, :],
    ]
    return pixels.masked_fill_(~inside[:, None], 0)
