"""Region proposals of R-CNN and Fast R-CNN: selective search (Uijlings et al., 2013).

R-CNN proposes regions with selective search (R-CNN §2.1), "around 2000 region proposals"
an image in its "fast mode" (§2.2); Fast R-CNN trains and tests on the same boxes (its §5.5
sweeps quality mode from 1k to 10k). We run OpenCV's implementation
(`cv2.ximgproc.segmentation`), which follows the paper with its own constants: fast mode
segments HSV and Lab at k = 150, 300 and 450 (the paper: 50 and 100) and groups them with
two similarity strategies; quality mode adds three colour spaces, five values of k and two
strategies.

Selective search costs about 1.8 s for a 640x480 image on one core, so each image is
searched once and its boxes kept in a `ProposalCache` on disk, saved as the computation
goes, so that an interrupted computation resumes where it stopped.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, get_args

import cv2
import numpy as np
import torch
from cnnzoo import CnnzooError
from cnnzoo_data.archive import cache_root
from torchvision.ops import remove_small_boxes
from torchvision.transforms.v2.functional import pil_to_tensor
from tqdm.auto import tqdm

from cnnzoo_detect.images import AnnotatedImage, load_rgb

SearchMode = Literal["fast", "quality"]
MODES = get_args(SearchMode)

# Boxes thinner than this many pixels are dropped, as the loaders of py-faster-rcnn do with
# the selective search boxes Fast R-CNN used (`filter_small_boxes`, min_size 2). R-CNN kept
# every box; Uijlings et al.'s demo drops those under 20 px, which would lose COCO's small
# objects. A one-pixel sliver holds no object.
MIN_SIDE = 2.0

# The computation saves the cache at most this often (and when it ends or is interrupted):
# each save rewrites the whole file, tens of megabytes for VOC, gigabytes for COCO.
SAVE_INTERVAL_S = 60.0


class ProposalError(CnnzooError, ValueError):
    """An image selective search finds nothing in, or a proposal cache that does not fit."""


def _libc_rand_seeder():
    """libc's srand, where ctypes finds it: OpenCV ranks regions with C's rand()."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).srand if name else None
    except (OSError, AttributeError):
        return None


_srand = _libc_rand_seeder()


def check_proposals(
    images: Sequence[torch.Tensor], proposals: Sequence[torch.Tensor], method: str, training: bool
) -> None:
    """What R-CNN and Fast R-CNN take: one (N, 4) tensor of boxes an image, and at test at
    least one box an image (they detect only by scoring proposals)."""
    if not isinstance(proposals, list | tuple) or len(proposals) != len(images):
        count = len(proposals) if isinstance(proposals, list | tuple) else type(proposals)
        raise ProposalError(
            f"{method} takes one tensor of proposals for each image; got {count} for "
            f"{len(images)} images. Give a list of (N, 4) boxes, x1, y1, x2, y2, one per image."
        )
    for index, boxes in enumerate(proposals):
        if not isinstance(boxes, torch.Tensor) or boxes.dim() != 2 or boxes.shape[1] != 4:
            shape = tuple(boxes.shape) if isinstance(boxes, torch.Tensor) else type(boxes)
            raise ProposalError(
                f"the proposals of image {index} are {shape}; give an (N, 4) tensor of "
                f"boxes x1, y1, x2, y2 in the image's pixels."
            )
        if not training and len(boxes) == 0:
            raise ProposalError(
                f"image {index} has no proposals, and {method} detects only by scoring "
                f"proposals. Give it at least one box (the whole image, [0, 0, width, "
                f"height], where the proposal method found none) or leave the image out."
            )


def selective_search(
    image: torch.Tensor,
    mode: SearchMode = "fast",
    max_proposals: int = 2000,
    min_side: float = MIN_SIDE,
    name: str = "the image",
) -> torch.Tensor:
    """Selective search's boxes for a uint8 (3, H, W) RGB image: float32 (N, 4) x1, y1, x2,
    y2 in its pixels, best ranked first, at most `max_proposals`, none under `min_side` px.

    Each hierarchy's regions are ranked by their level times a random number, and the
    hierarchies merged by rank (Uijlings et al. §3); OpenCV draws the numbers from C's
    rand(), which is seeded afresh for each image, as Uijlings et al.'s code resets its
    generator per image, so that an image gets the same boxes in any process, in any order.
    OpenCV already drops repeated boxes. `name` names the image in errors.
    """
    if mode not in MODES:
        raise ProposalError(f"selective search has modes {MODES}; got {mode!r}.")
    if max_proposals < 1:
        raise ProposalError(f"max_proposals must be at least 1; got {max_proposals}.")
    if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
        raise ProposalError(
            f"selective search takes a uint8 (3, H, W) RGB image; {name} is a "
            f"{image.dtype} tensor of shape {tuple(image.shape)}."
        )
    height, width = image.shape[1:]
    boxes = torch.zeros(0, 4)
    if height > 0 and width > 0:
        cv2.setNumThreads(1)  # callers run one search per process
        search = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
        search.setBaseImage(image.permute(1, 2, 0).flip(-1).contiguous().numpy())  # BGR
        if mode == "fast":
            search.switchToSelectiveSearchFast()
        else:
            search.switchToSelectiveSearchQuality()
        if _srand is not None:
            _srand(0)
        rects = search.process()  # (N, 4) x, y, w, h
        boxes = torch.from_numpy(rects).float().reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        boxes = boxes[remove_small_boxes(boxes, min_side)]  # keeps the ranking
    # Every hierarchy ends in the whole image; an image where it is the only region
    # has one segment: it is blank.
    whole_image = torch.tensor([0.0, 0.0, width, height])
    if not (boxes != whole_image).any(dim=1).any():
        raise ProposalError(
            f"selective search found no region in {name} ({width}x{height} px): it is "
            f"blank (one colour) or too small for boxes of {min_side:g} px. Check that the "
            f"image is not blank, or remove it from the dataset."
        )
    return boxes[:max_proposals]


def proposal_settings(mode: SearchMode, max_proposals: int) -> dict[str, Any]:
    """What a cache's boxes were computed with: a cache computed otherwise does not fit."""
    return {
        "method": "selective_search",
        "mode": mode,
        "max_proposals": max_proposals,
        "min_side": MIN_SIDE,
    }


def proposal_cache_path(
    root: str | Path, split: str, mode: SearchMode = "fast", max_proposals: int = 2000
) -> Path:
    """`$CNNZOO_CACHE/proposals/` (or `~/.cache/cnnzoo/proposals/`), never beside the data,
    which may sit on a read-only disk; named from the dataset folder, split and settings."""
    name = Path(root).resolve().name
    return cache_root() / "proposals" / f"{name}-{split}-selective-search-{mode}-{max_proposals}.pt"


def _size(width: int, height: int) -> str:
    return f"{width}x{height}"


class ProposalCache:
    """One dataset split's proposals in one file: `torch.save` of plain dicts and tensors,
    `{"settings": proposal_settings(...), "images": {image_id: {"file_name", "size":
    (height, width), "boxes"}}}`, boxes in the file's pixels. Writes go to a temporary file
    renamed over the old one, so an interruption never leaves half a cache."""

    def __init__(self, path: str | Path, settings: dict[str, Any]) -> None:
        self.path = Path(path)
        self.settings = settings
        self.entries: dict[int, dict[str, Any]] = {}
        self.unsaved = False
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        try:
            saved = torch.load(self.path, weights_only=True)
        except Exception as exc:  # unpickling damaged bytes fails in many ways
            raise ProposalError(
                f"cannot read the proposal cache {self.path} ({type(exc).__name__}: {exc}). "
                f"The file is damaged or not a proposal cache: delete it, and the proposals "
                f"are computed again."
            ) from exc
        if not (
            isinstance(saved, dict)
            and isinstance(saved.get("settings"), dict)
            and isinstance(saved.get("images"), dict)
        ):
            raise ProposalError(
                f"{self.path} is not a proposal cache (no settings and images in it). Delete "
                f"it, and the proposals are computed again."
            )
        if saved["settings"] != self.settings:
            differ = ", ".join(
                f"{key} {saved['settings'].get(key)!r} (asked: {value!r})"
                for key, value in self.settings.items()
                if saved["settings"].get(key) != value
            )
            raise ProposalError(
                f"the proposal cache {self.path} was computed with other settings: {differ}. "
                f"Delete it to compute the proposals again, or point --data.proposal_cache "
                f"elsewhere."
            )
        self.entries = saved["images"]

    def check(self, images: Sequence[AnnotatedImage]) -> None:
        """Refuse a cache whose images are not these (another dataset's, under the same id)."""
        wrong = [
            image
            for image in images
            if image.image_id in self.entries
            and (
                self.entries[image.image_id]["file_name"] != image.path.name
                or tuple(self.entries[image.image_id]["size"]) != (image.height, image.width)
            )
        ]
        if wrong:
            image = wrong[0]
            cached = self.entries[image.image_id]
            height, width = cached["size"]
            more = f" (and {len(wrong) - 1} more images)" if len(wrong) > 1 else ""
            raise ProposalError(
                f"the proposal cache {self.path} holds image id {image.image_id} as "
                f"{cached['file_name']} ({_size(width, height)}), but this dataset's image "
                f"{image.image_id} is {image.path.name} ({_size(image.width, image.height)})"
                f"{more}: the cache was computed for another dataset. Delete it, or point "
                f"--data.proposal_cache elsewhere."
            )

    def __contains__(self, image_id: int) -> bool:
        return image_id in self.entries

    def boxes(self, image_id: int) -> torch.Tensor:
        return self.entries[image_id]["boxes"].float()

    def add(self, image: AnnotatedImage, boxes: torch.Tensor) -> None:
        # Selective search's boxes are whole pixels: int16 halves the file (COCO's
        # train2017 at 2,000 boxes an image would take 3.8 GB as float32).
        fits = max(image.width, image.height) <= torch.iinfo(torch.int16).max
        self.entries[image.image_id] = {
            "file_name": image.path.name,
            "size": (image.height, image.width),
            "boxes": boxes.round().to(torch.int16 if fits else torch.int32),
        }
        self.unsaved = True

    def save(self) -> None:
        if not self.unsaved:
            return
        staging = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"settings": self.settings, "images": self.entries}, staging)
            os.replace(staging, self.path)
        except OSError as exc:
            raise ProposalError(
                f"cannot write the proposal cache {self.path} ({exc}). Point the cache at a "
                f"writable folder (--data.proposal_cache, or CNNZOO_CACHE)."
            ) from exc
        finally:
            if staging.exists():  # left only by a failed write
                staging.unlink()
        self.unsaved = False


def _search_file(image: AnnotatedImage, mode: SearchMode, max_proposals: int) -> torch.Tensor:
    pixels = pil_to_tensor(load_rgb(image.path))
    height, width = pixels.shape[1:]
    if (height, width) != (image.height, image.width):
        raise ProposalError(
            f"{image.path} (id {image.image_id}) is {_size(width, height)} px but its "
            f"annotations say {_size(image.width, image.height)}: they do not describe this "
            f"file. Fix the annotations, or replace the file."
        )
    name = f"{image.path} (id {image.image_id})"
    return selective_search(pixels, mode, max_proposals, name=name)


def _search_file_in_worker(job: tuple[AnnotatedImage, SearchMode, int]) -> tuple[int, np.ndarray]:
    # Returned as numpy: a tensor would travel through shared memory, holding a file
    # descriptor open for as long as it lives.
    image, mode, max_proposals = job
    return image.image_id, _search_file(image, mode, max_proposals).numpy()


def _searched(
    images: list[AnnotatedImage], mode: SearchMode, max_proposals: int, workers: int
) -> Iterator[tuple[AnnotatedImage, torch.Tensor]]:
    """Each image with its boxes, as they are computed: in this process, or in `workers`
    processes started as DataLoader starts its workers: the platform's way (a fork on
    Linux, where spawning would import torch and Lightning afresh), one thread each."""
    if workers <= 1:
        for image in images:
            yield image, _search_file(image, mode, max_proposals)
        return
    by_id = {image.image_id: image for image in images}
    jobs = [(image, mode, max_proposals) for image in images]
    with multiprocessing.Pool(min(workers, len(images)), torch.set_num_threads, (1,)) as pool:
        for image_id, boxes in pool.imap_unordered(_search_file_in_worker, jobs):
            yield by_id[image_id], torch.from_numpy(boxes)


def proposals_for(
    images: Sequence[AnnotatedImage],
    cache_path: str | Path | None,
    mode: SearchMode = "fast",
    max_proposals: int = 2000,
    workers: int = 1,
    progress: bool = True,
) -> dict[int, torch.Tensor]:
    """Each image id's selective search boxes, float32 (N, 4) in the file's pixels.

    Boxes in the cache at `cache_path` are loaded; the others are computed (in `workers`
    processes) and added to it, saved every minute and when the computation ends or is
    interrupted. `cache_path` None computes without a cache (see `proposal_cache_path`).
    """
    if mode not in MODES or max_proposals < 1 or workers < 1:
        raise ProposalError(
            f"expected mode in {MODES}, max_proposals >= 1 and workers >= 1; got {mode!r}, "
            f"{max_proposals} and {workers}."
        )
    files: dict[int, AnnotatedImage] = {}
    for image in images:
        if files.setdefault(image.image_id, image).path != image.path:
            raise ProposalError(
                f"images {files[image.image_id].path} and {image.path} share the id "
                f"{image.image_id}; proposals are kept by image id, which must be unique."
            )
    settings = proposal_settings(mode, max_proposals)
    cache = None if cache_path is None else ProposalCache(cache_path, settings)
    found: dict[int, torch.Tensor] = {}
    if cache is not None:
        cache.check(images)
        found = {i: cache.boxes(i) for i in files if i in cache}
    missing = [image for i, image in files.items() if i not in found]
    if missing:
        last_save = time.monotonic()
        try:
            with tqdm(
                total=len(missing), desc="selective search", unit="img", disable=not progress
            ) as bar:
                for image, boxes in _searched(missing, mode, max_proposals, workers):
                    found[image.image_id] = boxes
                    bar.update()
                    if cache is not None:
                        cache.add(image, boxes)
                        if time.monotonic() - last_save >= SAVE_INTERVAL_S:
                            cache.save()
                            last_save = time.monotonic()
        finally:
            if cache is not None:
                cache.save()  # what was computed before an interruption is kept
    return {image.image_id: found[image.image_id] for image in images}
