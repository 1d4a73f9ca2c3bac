"""Distorted MNIST: Jaderberg, Simonyan, Zisserman and Kavukcuoglu, "Spatial Transformer
Networks", NIPS 2015, §4.1 and Appendix A.

    r    rotated: an angle drawn uniformly from [-90°, 90°]; 28x28
    rts  rotated by [-45°, 45°], scaled by [0.7, 1.2] and placed at a random location in a
         42x42 image, all uniform
    p    projective: scaled by [0.75, 1.0], then each corner moved by N(0, 5 px) per coordinate;
         28x28
    e    elastic: scaled by [0.75, 1.0], then the 16 control points of a thin plate spline on a
         regular 4x4 grid moved by N(0, 1.5 px); 28x28

Each digit's distortion is drawn from its own generator, seeded by the distortion, the split
and the digit's index, so that digit i of a split is the same image on every machine and in
every run (and a subset of the split is distorted as the whole split is): the test set, and
the set as `cnnzoo explain` shows it. Training draws each digit's distortion afresh in every
epoch (`FreshDistortion`), so that a network sees the distribution rather than 60,000
fixed samples of it, as LeNet-5's distortions are drawn; the paper, which trains for 150,000
iterations of 256 digits (640 passes), does not say which it did. Every map is applied by its
inverse: each output pixel reads the source digit by bilinear interpolation, zeros outside it.

Where the paper leaves things open we chose: the rotation is about the digit's centre within
its 28x28 frame, the scaled frame (28 s pixels) lies wholly inside the 42x42 image, P's corners
are those of the 28x28 frame, E's control points span it, and E's spline is fitted from the
moved points back to the grid (the inverse map the sampler needs).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from cnnzoo.errors import CnnzooError
from torch import nn

DISTORTIONS: tuple[str, ...] = ("r", "rts", "p", "e")
# The side of each distorted set's images.
IMAGE_SIZE = {"r": 28, "rts": 42, "p": 28, "e": 28}
SPLITS = ("train", "test")
# Each distorted training set's pixel mean and deviation (of [0, 1] pixels), measured: the
# normalisation of its data module.
DISTORTION_STATS = {
    "r": ((0.1306,), (0.2898,)),
    "rts": ((0.0536,), (0.1961,)),
    "p": ((0.0876,), (0.2445,)),
    "e": ((0.0981,), (0.2569,)),
}

MNIST_SIDE = 28
R_DEGREES = 90.0
RTS_DEGREES, RTS_SCALE = 45.0, (0.7, 1.2)
P_SCALE, P_CORNER_STD = (0.75, 1.0), 5.0
E_SCALE, E_POINT_STD, E_GRID = (0.75, 1.0), 1.5, 4


class DistortionError(CnnzooError, ValueError):
    """A distortion or split that distorted MNIST does not have."""


def check_distortion(name: str) -> str:
    """The distortion's name in lower case, or a clear error naming the ones there are."""
    key = str(name).lower()
    if key not in DISTORTIONS:
        raise DistortionError(
            f"unknown MNIST distortion {name!r}; choose one of "
            f"{', '.join(DISTORTIONS)} (Jaderberg et al. 2015, §4.1: rotated, rotated-translated-"
            f"scaled, projective, elastic), or none for the plain digits."
        )
    return key


def digit_generator(distortion: str, split: str, index: int) -> np.random.Generator:
    """The generator of one digit's distortion: seeded by (distortion, split, index)."""
    if split not in SPLITS:
        raise DistortionError(f"MNIST has the splits {SPLITS}; got {split!r}.")
    return np.random.default_rng([DISTORTIONS.index(distortion), SPLITS.index(split), int(index)])


def _pixel_grid(size: int) -> torch.Tensor:
    """(size*size, 2) pixel centres (x, y) of a size x size image, in pixel units from the
    top-left corner of the image (a pixel's centre at +0.5)."""
    centres = torch.arange(size, dtype=torch.float64) + 0.5
    y, x = torch.meshgrid(centres, centres, indexing="ij")
    return torch.stack([x.flatten(), y.flatten()], dim=1)


def _sample(digits: torch.Tensor, source: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (N, 1, 28, 28) digits read at `source` (N, size*size, 2): where each output
    pixel's centre comes from, in the digit's pixel units; bilinear, zeros outside."""
    normalised = source / (MNIST_SIDE / 2) - 1  # grid_sample's -1..1 across the digit's edges
    grid = normalised.view(len(digits), size, size, 2).float()
    warped = F.grid_sample(
        digits.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    return warped.round().clamp(0, 255).to(torch.uint8)


def _affine_sources(matrices: torch.Tensor, offsets: torch.Tensor, size: int) -> torch.Tensor:
    """Source points of the inverse affine maps p_src = M p_out + b, for (N, 2, 2) and (N, 2)."""
    points = _pixel_grid(size)
    return points @ matrices.transpose(1, 2) + offsets[:, None, :]


def _rotation(degrees: np.ndarray) -> torch.Tensor:
    radians = torch.as_tensor(np.deg2rad(degrees), dtype=torch.float64)
    cos, sin = torch.cos(radians), torch.sin(radians)
    return torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)


def rotated(digits: torch.Tensor, degrees: np.ndarray) -> torch.Tensor:
    """R: each digit turned by its angle about the centre of its 28x28 frame."""
    centre = torch.full((len(digits), 2), MNIST_SIDE / 2, dtype=torch.float64)
    inverse = _rotation(-degrees)
    offsets = centre - (inverse @ centre[..., None])[..., 0]
    return _sample(digits, _affine_sources(inverse, offsets, MNIST_SIDE), MNIST_SIDE)


def rotated_translated_scaled(
    digits: torch.Tensor, degrees: np.ndarray, scales: np.ndarray, corners: np.ndarray
) -> torch.Tensor:
    """RTS: each digit turned about its frame's centre, scaled by s, and its 28s x 28s frame
    put with its top-left corner at `corners` (x, y) in the 42x42 image."""
    size = IMAGE_SIZE["rts"]
    scale = torch.as_tensor(scales, dtype=torch.float64)
    corner = torch.as_tensor(corners, dtype=torch.float64)
    placed_centre = corner + (MNIST_SIDE / 2) * scale[:, None]
    # p_out = s R (p_src - c_src) + c_out, so p_src = R^-1 (p_out - c_out) / s + c_src.
    inverse = _rotation(-degrees) / scale[:, None, None]
    source_centre = torch.full_like(placed_centre, MNIST_SIDE / 2)
    offsets = source_centre - (inverse @ placed_centre[..., None])[..., 0]
    return _sample(digits, _affine_sources(inverse, offsets, size), size)


def _homographies(points_from: torch.Tensor, points_to: torch.Tensor) -> torch.Tensor:
    """(N, 3, 3) homographies H with H (x, y, 1) ~ (u, v, 1) for four point pairs each (the
    direct linear transform with h33 = 1)."""
    x, y = points_from[..., 0], points_from[..., 1]
    u, v = points_to[..., 0], points_to[..., 1]
    zeros, ones = torch.zeros_like(x), torch.ones_like(x)
    rows_u = torch.stack([x, y, ones, zeros, zeros, zeros, -u * x, -u * y], -1)
    rows_v = torch.stack([zeros, zeros, zeros, x, y, ones, -v * x, -v * y], -1)
    system = torch.cat([rows_u, rows_v], dim=1)  # (N, 8, 8)
    h = torch.linalg.solve(system, torch.cat([u, v], dim=1))
    return torch.cat([h, torch.ones_like(h[:, :1])], dim=1).view(-1, 3, 3)


def projective(digits: torch.Tensor, scales: np.ndarray, shifts: np.ndarray) -> torch.Tensor:
    """P: each digit scaled about its centre, then its frame's four corners moved by
    `shifts` (N, 4, 2) pixels: the projective map that takes the corners there."""
    side, centre = MNIST_SIDE, MNIST_SIDE / 2
    corners = torch.tensor([[0, 0], [side, 0], [side, side], [0, side]], dtype=torch.float64)
    scale = torch.as_tensor(scales, dtype=torch.float64)[:, None, None]
    moved = centre + (corners - centre) * scale + torch.as_tensor(shifts, dtype=torch.float64)
    inverse = _homographies(moved, corners.expand_as(moved))  # output -> source
    points = torch.cat([_pixel_grid(side), torch.ones(side * side, 1, dtype=torch.float64)], 1)
    mapped = points @ inverse.transpose(1, 2)
    return _sample(digits, mapped[..., :2] / mapped[..., 2:], side)


def _squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|a_i - b_j|^2 for (N, P, 2) and (N, K, 2) -> (N, P, K)."""
    squared = (a**2).sum(-1)[:, :, None] + (b**2).sum(-1)[:, None, :] - 2 * a @ b.transpose(1, 2)
    return squared.clamp_min(0)


def _tps_kernel(r2: torch.Tensor) -> torch.Tensor:
    """The thin plate spline's radial basis U(r) = r^2 log r^2 (0 at r = 0)."""
    return torch.where(r2 > 0, r2 * torch.log(r2.clamp_min(1e-12)), torch.zeros_like(r2))


def thin_plate_spline(
    control: torch.Tensor, targets: torch.Tensor, points: torch.Tensor
) -> torch.Tensor:
    """The thin plate spline through `control` (N, K, 2) -> `targets` (N, K, 2), evaluated
    at `points` (P, 2): an affine part plus K radial terms, fitted exactly (Bookstein 1989)."""
    batch, count, _ = control.shape
    kernel = _tps_kernel(_squared_distances(control, control))
    affine = torch.cat([torch.ones(batch, count, 1, dtype=control.dtype), control], dim=2)
    system = torch.zeros(batch, count + 3, count + 3, dtype=control.dtype)
    system[:, :count, :count] = kernel
    system[:, :count, count:] = affine
    system[:, count:, :count] = affine.transpose(1, 2)
    values = torch.cat([targets, torch.zeros(batch, 3, 2, dtype=control.dtype)], dim=1)
    weights = torch.linalg.solve(system, values)  # (N, K + 3, 2)
    expanded = points.expand(batch, -1, -1)
    radial = _tps_kernel(_squared_distances(expanded, control))
    basis = torch.cat([radial, torch.ones(batch, len(points), 1, dtype=control.dtype), expanded], 2)
    return basis @ weights


def elastic(digits: torch.Tensor, scales: np.ndarray, shifts: np.ndarray) -> torch.Tensor:
    """E: each digit scaled about its centre, then the 4x4 control points moved by `shifts`
    (N, 16, 2) pixels: the thin plate spline warp that takes the grid there."""
    side, centre = MNIST_SIDE, MNIST_SIDE / 2
    ticks = torch.linspace(0, side, E_GRID, dtype=torch.float64)
    y, x = torch.meshgrid(ticks, ticks, indexing="ij")
    grid = torch.stack([x.flatten(), y.flatten()], dim=1)  # (16, 2)
    scale = torch.as_tensor(scales, dtype=torch.float64)[:, None, None]
    moved = centre + (grid - centre) * scale + torch.as_tensor(shifts, dtype=torch.float64)
    sources = thin_plate_spline(moved, grid.expand_as(moved), _pixel_grid(side))
    return _sample(digits, sources, side)


def _draw(distortion: str, rng: np.random.Generator) -> dict[str, np.ndarray | float]:
    """One digit's random parameters, in Appendix A's ranges."""
    if distortion == "r":
        return {"degrees": rng.uniform(-R_DEGREES, R_DEGREES)}
    if distortion == "rts":
        degrees = rng.uniform(-RTS_DEGREES, RTS_DEGREES)
        scale = rng.uniform(*RTS_SCALE)
        room = IMAGE_SIZE["rts"] - MNIST_SIDE * scale  # the frame stays inside the image
        return {"degrees": degrees, "scales": scale, "corners": rng.uniform(0, room, size=2)}
    if distortion == "p":
        scale = rng.uniform(*P_SCALE)
        return {"scales": scale, "shifts": rng.normal(0, P_CORNER_STD, size=(4, 2))}
    scale = rng.uniform(*E_SCALE)
    return {"scales": scale, "shifts": rng.normal(0, E_POINT_STD, size=(E_GRID * E_GRID, 2))}


def draw_parameters(distortion: str, split: str, indices: list[int] | range) -> dict:
    """Each digit's random parameters, from its own generator (`digit_generator`)."""
    draws: dict[str, list] = {}
    for index in indices:
        for key, value in _draw(distortion, digit_generator(distortion, split, index)).items():
            draws.setdefault(key, []).append(value)
    return {key: np.asarray(values) for key, values in draws.items()}


def _apply(digits: torch.Tensor, distortion: str, draws: dict) -> torch.Tensor:
    if distortion == "r":
        return rotated(digits, draws["degrees"])
    if distortion == "rts":
        return rotated_translated_scaled(
            digits, draws["degrees"], draws["scales"], draws["corners"]
        )
    if distortion == "p":
        return projective(digits, draws["scales"], draws["shifts"])
    return elastic(digits, draws["scales"], draws["shifts"])


class FreshDistortion(nn.Module):
    """A training digit (uint8 (1, 28, 28)) distorted with parameters drawn afresh each time,
    from torch's CPU generator: `TransformedDataset` seeds it by (seed, epoch, image), so an
    epoch's distortions are reproducible and differ from the last epoch's."""

    def __init__(self, distortion: str) -> None:
        super().__init__()
        self.distortion = check_distortion(distortion)

    def forward(self, digit: torch.Tensor) -> torch.Tensor:
        seed = int(torch.randint(0, 2**62, ()))
        draws = _draw(self.distortion, np.random.default_rng(seed))
        batched = {key: np.asarray([value]) for key, value in draws.items()}
        digit = digit.as_subclass(torch.Tensor).reshape(1, 1, MNIST_SIDE, MNIST_SIDE)
        return _apply(digit, self.distortion, batched)[0]

    def extra_repr(self) -> str:
        return repr(self.distortion)


def distort_digits(
    digits: torch.Tensor, distortion: str, split: str, indices: list[int] | range | None = None
) -> torch.Tensor:
    """The distorted images of uint8 MNIST digits (N, 1, 28, 28) or (N, 28, 28): digit k is
    split's digit `indices[k]` (0..N-1 by default), distorted as its seed draws."""
    distortion = check_distortion(distortion)
    if digits.dtype != torch.uint8 or digits.shape[-2:] != (MNIST_SIDE, MNIST_SIDE):
        raise DistortionError(
            f"distorted MNIST takes uint8 28x28 digits; got {digits.dtype} {tuple(digits.shape)}."
        )
    digits = digits.reshape(-1, 1, MNIST_SIDE, MNIST_SIDE)
    indices = range(len(digits)) if indices is None else indices
    if len(indices) != len(digits):
        raise DistortionError(f"{len(digits)} digits but {len(indices)} indices.")
    draws = draw_parameters(distortion, split, indices)
    if not len(digits):
        return digits.new_zeros(0, 1, IMAGE_SIZE[distortion], IMAGE_SIZE[distortion])
    return _apply(digits, distortion, draws)


def distorted_split(
    digits: torch.Tensor, distortion: str, split: str, chunk: int = 512
) -> torch.Tensor:
    """A whole split distorted, `chunk` digits at a time (bounded memory)."""
    parts = [
        distort_digits(
            digits[start : start + chunk],
            distortion,
            split,
            range(start, min(start + chunk, len(digits))),
        )
        for start in range(0, len(digits), chunk)
    ]
    return torch.cat(parts) if parts else distort_digits(digits, distortion, split)
