"""Shared fixtures: the project's real data, small CPU trainers that write only into
tmp_path, digits data modules, and fake plugin distributions for the registry."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import cnnzoo
import lightning as L
import numpy as np
import pytest
import torch
from cnnzoo_data import DigitsDataModule
from PIL import Image

# W&B never reaches for the network from the tests, even on a machine that is logged in.
os.environ["WANDB_MODE"] = "offline"
os.environ.setdefault("WANDB_SILENT", "true")

# ../shared/data from the repository root (see /work/shared/data/README.md).
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The project's offline copies of public datasets; skips where they are absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"the shared datasets are not at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def mnist_root(shared_data: Path) -> Path:
    """A root that `MNISTDataModule(root=...)` reads: it holds MNIST/raw/ with the IDX files."""
    root = shared_data / "mnist"
    if not (root / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        pytest.skip(f"MNIST's IDX files are not under {root}/MNIST/raw")
    return root


@pytest.fixture(scope="session")
def coco128(shared_data: Path) -> Path:
    """COCO128: 128 COCO train2017 images with their annotations, in COCO's layout."""
    root = shared_data / "coco128"
    if not (root / "annotations" / "instances_train2017.json").is_file():
        pytest.skip(f"COCO128 is not at {root}")
    return root


@pytest.fixture
def make_trainer(tmp_path: Path) -> Callable[..., L.Trainer]:
    """Quiet CPU trainers writing into tmp_path; keyword arguments override the settings."""

    def make(**overrides) -> L.Trainer:
        settings = {
            "accelerator": "cpu",
            "devices": 1,
            "default_root_dir": tmp_path,
            "logger": False,
            "enable_checkpointing": False,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "num_sanity_val_steps": 0,
        }
        return L.Trainer(**(settings | overrides))

    return make


@pytest.fixture
def make_digits() -> Callable[..., DigitsDataModule]:
    """scikit-learn's digits without loader processes; keyword arguments override."""

    def make(**overrides) -> DigitsDataModule:
        return DigitsDataModule(**({"batch_size": 64, "num_workers": 0} | overrides))

    return make


@pytest.fixture
def fake_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Install plugin distributions as pip lays them out: a `<dist>.dist-info` folder with
    its METADATA and entry_points.txt (and any modules they name) on a new sys.path entry.

    The registry finds them through importlib.metadata exactly as it finds real plugins;
    everything is forgotten again after the test.
    """
    modules: list[str] = []
    sites: set[Path] = set()

    def install(
        dist: str,
        entries: dict[str, str],
        sources: dict[str, str] | None = None,
        site: str = "site",
    ) -> None:
        folder = tmp_path / site
        info = folder / f"{dist.replace('-', '_')}-0.1.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        lines = "".join(f"{name} = {value}\n" for name, value in entries.items())
        (info / "entry_points.txt").write_text(f"[{cnnzoo.registry.GROUP}]\n{lines}")
        for module, source in (sources or {}).items():
            (folder / f"{module}.py").write_text(textwrap.dedent(source))
            modules.append(module)
        if folder not in sites:
            sites.add(folder)
            monkeypatch.syspath_prepend(str(folder))
        cnnzoo.refresh()

    yield install
    for module in modules:
        sys.modules.pop(module, None)
    cnnzoo.refresh()  # sys.path is restored after this; the registry reads it afresh


@pytest.fixture(autouse=True)
def restore_determinism() -> Iterator[None]:
    """A Trainer(deterministic=True) switches torch to deterministic algorithms for the whole
    process; undo it after each test, so later tests (max-unpooling has no deterministic
    kernel) run as they would alone."""
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    yield
    torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


@pytest.fixture(autouse=True)
def finish_wandb_runs() -> Iterator[None]:
    """A W&B run left open by one test would be reused by the next WandbLogger (writing into
    the first test's folder); close any after each test."""
    yield
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()


def write_jpeg(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=90)


def skimage_data():
    return pytest.importorskip("skimage.data")


def photo(name: str, short_side: int = 260) -> np.ndarray:
    """A scikit-image photograph, shrunk so that decoding it costs little."""
    image = Image.fromarray(getattr(skimage_data(), name)()).convert("RGB")
    scale = short_side / min(image.size)
    return np.asarray(image.resize((round(image.width * scale), round(image.height * scale))))


@pytest.fixture
def photo_tree(tmp_path) -> Path:
    """An ImageFolder tree of real photographs: train/ and val/, one folder per class."""
    root = tmp_path / "photos"
    for label, name in (("cat", "chelsea"), ("coffee", "coffee"), ("rocket", "rocket")):
        pixels = photo(name)
        write_jpeg(root / "train" / label / "a.jpg", pixels)
        write_jpeg(root / "train" / label / "b.jpg", pixels[:, ::-1].copy())
        write_jpeg(root / "val" / label / "c.jpg", pixels[10:, 10:].copy())
    return root


def run_cnnzoo(args: list[str], cwd: Path) -> int:
    """`cnnzoo ARGS` in this process, from `cwd`, closing the W&B run it may open."""
    from cnnzoo_classify.cli import main

    try:
        with contextlib.chdir(cwd):
            return main(args)
    finally:
        import wandb

        wandb.finish()


def cnnzoo_process(
    args: list[str], cwd: Path, pythonpath: Path | None = None, timeout: int = 400
) -> subprocess.CompletedProcess:
    """`cnnzoo ARGS` in a new process (one thread), e.g. to kill it, or for Lightning's DDP
    launcher, which starts the other ranks by running the same command line again."""
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "cnnzoo_classify.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def wandb_records(run_dir: Path) -> list:
    """The records of an offline W&B run (its `run-*.wandb` file), as W&B's protobufs.

    The file is a LevelDB-style log after a 7-byte header: 32 KiB blocks of chunks, each a
    7-byte header (crc, length, type: full, first, middle, last) and its bytes.
    """
    import struct

    from wandb.proto import wandb_internal_pb2

    (path,) = run_dir.glob("run-*.wandb")
    data, block, position = path.read_bytes(), 32768, 7
    records, pending = [], b""
    while position + 7 <= len(data):
        left = block - position % block
        if left < 7:  # the block's tail is padding
            position += left
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if length == 0 and kind == 0:
            position += left
            continue
        chunk = data[position + 7 : position + 7 + length]
        position += 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records
