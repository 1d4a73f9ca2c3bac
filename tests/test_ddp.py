"""DDP computes the same thing as one process: `cnnzoo` under Lightning's DDP strategy on
two CPU processes (gloo), against the same command on one.

- Evaluation: each image counted once over the processes, so the synced top-1/top-5 errors
  equal the single-process figures.
- Training: two processes of 16 images take the same steps as one process of 32 (the same
  images, the same augmentation, gradients averaged), at the learning rate of the global
  batch. With BatchNorm that holds only with SyncBatchNorm (`--trainer.sync_batchnorm
  true`), which PyTorch runs on GPUs only: that test needs two.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from cnnzoo_data import DigitsDataModule
from conftest import cnnzoo_process, run_cnnzoo

pytestmark = pytest.mark.slow

DDP = ["--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu"]
ONE = ["--trainer.devices=1", "--trainer.accelerator=cpu"]
QUIET = ["--trainer.enable_progress_bar=false", "--data.num_workers=0"]


def cnnzoo(args: list[str], cwd: Path) -> None:
    result = cnnzoo_process(args, cwd)
    assert result.returncode == 0, result.stderr[-4000:]


def logged(root: Path, arch: str, key: str) -> float:
    (log_dir,) = (root / arch).glob("version_*")
    with open(log_dir / "metrics.csv", newline="") as file:
        return float(next(row[key] for row in csv.DictReader(file) if row.get(key)))


def last_checkpoint(root: Path, arch: str) -> dict:
    path = root / arch / "checkpoints" / "last.ckpt"
    return torch.load(path, map_location="cpu", weights_only=False)


def test_evaluation_under_ddp_counts_each_image_once(tmp_path):
    digits = DigitsDataModule(num_workers=0)
    digits.setup()
    # An odd count: a padding sampler would count one image twice on two processes.
    assert len(digits.test_set) % 2 == 1
    trained = tmp_path / "trained"
    in_process(
        [
            "fit",
            *ONE,
            *QUIET,
            f"--trainer.default_root_dir={trained}",
            "--trainer.max_epochs=1",
            "--trainer.limit_train_batches=8",
            "--model.optimizer.lr=0.01",
            "--test_after_fit=false",
        ],
        tmp_path,
    )
    checkpoint = trained / "lenet5" / "checkpoints" / "last.ckpt"
    errors = {}
    for name, devices in (("one", ONE), ("ddp", DDP)):
        root = tmp_path / name
        (cnnzoo if name == "ddp" else in_process)(
            [
                "test",
                *devices,
                *QUIET,
                f"--trainer.default_root_dir={root}",
                "--data.eval_batch_size=50",
                f"--ckpt_path={checkpoint}",
            ],
            tmp_path,
        )
        errors[name] = (
            logged(root, "lenet5", "test/top1_error"),
            logged(root, "lenet5", "test/top5_error"),
        )
    assert errors["one"][0] > 0.01  # a half-trained model: a miscount would show
    assert errors["ddp"] == pytest.approx(errors["one"], abs=1e-7)


def in_process(args: list[str], cwd: Path) -> None:
    assert run_cnnzoo(args, cwd) == 0


def train(arch: str, extra: list[str]) -> list[str]:
    return [
        *QUIET,
        f"--model.arch={arch}",
        "--model.optimizer.lr=0.1",
        "--model.optimizer.batch_size=32",  # the rate is for a global batch of 32
        "--data.augmentation=alexnet",
        "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=6",
        "--trainer.limit_val_batches=1",
        "--test_after_fit=false",
        *extra,
    ]


def assert_same_steps(one: dict, ddp: dict) -> None:
    lrs = [c["optimizer_states"][0]["param_groups"][0]["lr"] for c in (one, ddp)]
    assert lrs == [0.1, 0.1]  # 16 images x 2 processes: the global batch of 32
    for key, value in one["state_dict"].items():
        if value.is_floating_point():
            torch.testing.assert_close(ddp["state_dict"][key], value, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("chunk", [1, 3])
def test_ddp_takes_the_single_process_steps(tmp_path, chunk):
    """LeNet-5 (no BatchNorm): 2 processes x 16 images = 1 process x 32 images, also when
    the processes take their steps in chunks of 3 batches (`cnnzoo.chunks`)."""
    in_process(
        [
            "fit",
            *ONE,
            "--data.batch_size=32",
            *train("lenet5", [f"--trainer.default_root_dir={tmp_path / 'one'}"]),
        ],
        tmp_path,
    )
    cnnzoo(
        [
            "fit",
            *DDP,
            "--data.batch_size=16",
            f"--data.chunk={chunk}",
            *train("lenet5", [f"--trainer.default_root_dir={tmp_path / 'ddp'}"]),
            f"--trainer.limit_train_batches={6 // chunk}",
        ],
        tmp_path,
    )
    one, ddp = (last_checkpoint(tmp_path / name, "lenet5") for name in ("one", "ddp"))
    assert one["global_step"] == ddp["global_step"] == 6
    assert_same_steps(one, ddp)


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="SyncBatchNorm under DDP needs 2 GPUs")
def test_ddp_with_sync_batchnorm_takes_the_single_process_steps(tmp_path):
    gpus = ["--trainer.accelerator=gpu", "--trainer.precision=32-true"]
    one_gpu = [*gpus, "--trainer.devices=1", "--data.batch_size=32"]
    two_gpus = [*gpus, "--trainer.strategy=ddp", "--trainer.devices=2", "--data.batch_size=16"]
    runs = {"one": one_gpu, "sync": [*two_gpus, "--trainer.sync_batchnorm=true"], "apart": two_gpus}
    saved = {}
    for name, args in runs.items():
        root = tmp_path / name
        extra = [*args, f"--trainer.default_root_dir={root}", "--trainer.deterministic=true"]
        cnnzoo(["fit", *train("resnet20", extra)], tmp_path)
        saved[name] = last_checkpoint(root, "resnet20")
    assert_same_steps(saved["one"], saved["sync"])
    # Without SyncBatchNorm each process normalises by its own 16 images: other steps.
    key = "model.conv2_x.0.bn1.running_var"
    apart, one = saved["apart"]["state_dict"][key], saved["one"]["state_dict"][key]
    assert not torch.allclose(apart, one, atol=1e-4)
