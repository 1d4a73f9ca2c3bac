"""The shipped recipes: each parses through the real CLI, names a registered model at an input
size it takes, and holds its paper's numbers, checked by building and stepping the optimiser
and schedule it describes; the new training augmentations; one short real run."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
import yaml
from cnnzoo import list_models, model_card
from cnnzoo.optim import (
    OptimizerSpec,
    ScheduleSpec,
    build_optimizer,
    build_scheduler,
    step_scheduler,
)
from cnnzoo.recipes import list_recipes
from cnnzoo_data import CIFAR10DataModule
from cnnzoo_data.sampling import TransformedDataset
from cnnzoo_data.transforms import build_transform
from conftest import run_cnnzoo
from torch import nn

RECIPES = sorted(list_recipes())
CIFAR_TRAIN = 50_000


def parsed(name: str, capsys, tmp_path, *extra: str) -> dict:
    """The config `cnnzoo fit --config NAME --print_config` prints: what LightningCLI read."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_cnnzoo(["fit", "--config", name, *extra, "--print_config"], tmp_path)
    assert exit_info.value.code == 0
    return yaml.safe_load(capsys.readouterr().out)


def optimisation(config: dict, steps_per_epoch: int):
    """The optimiser and scheduler the config describes, on a small stand-in model."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    batch = config["data"]["init_args"]["batch_size"]
    optimizer = build_optimizer(model, OptimizerSpec(**config["model"]["optimizer"]), batch)
    schedule = ScheduleSpec(**config["model"]["schedule"])
    max_epochs = config["trainer"]["max_epochs"]
    built = build_scheduler(
        optimizer, schedule, max(max_epochs, 1), steps_per_epoch, "val/top1_error"
    )
    return optimizer, schedule, built


def rate_after(optimizer, schedule, built, *, epoch: int = 0, step: int = 0) -> float:
    """The rate of the given epoch (or iteration, for a per-step schedule), as
    `ImageClassifier.lr_scheduler_step` sets it."""
    step_scheduler(built["scheduler"], schedule.interval, epoch=epoch - 1, global_step=step)
    return optimizer.param_groups[0]["lr"]


def decayed_group(optimizer) -> dict:
    return next(group for group in optimizer.param_groups if group["weight_decay"] > 0)


def train_batches(config: dict) -> int:
    init = config["data"]["init_args"]
    held_out = round(CIFAR_TRAIN * init["val_fraction"])
    return math.ceil((CIFAR_TRAIN - held_out) / init["batch_size"])


@pytest.fixture(scope="module")
def fit_parser(tmp_path_factory):
    """The `cnnzoo fit` parser, built once (about 2 s a build on 2 busy cores; a parse with it
    takes 0.4 s): the CnnzooCLI of a run that is set up but not started."""
    from cnnzoo import ImageClassifier
    from cnnzoo_classify.trainer import CnnzooCLI
    from cnnzoo_data import ClassificationDataModule

    root = tmp_path_factory.mktemp("runs")
    args = ["--config", str(list_recipes()["lenet5_digits"]), f"--trainer.default_root_dir={root}"]
    cli = CnnzooCLI(
        ImageClassifier, ClassificationDataModule, subclass_mode_data=True, run=False, args=args
    )
    return cli.parser


@pytest.mark.slow
def test_every_recipe_parses_and_names_a_model_at_a_size_it_takes(fit_parser):
    assert len(RECIPES) >= 60
    models = set(list_models())
    for name in RECIPES:
        path = list_recipes()[name]
        config = fit_parser.parse_args(["--config", str(path)])  # fails on any unknown key
        arch = config.model.arch
        assert arch in models, name
        assert name.startswith(arch), f"{name} trains {arch}: name it <model>_<dataset>"
        card = model_card(arch)
        size = config.data.init_args.get("image_size") or card.input_size[-1]
        assert size >= (card.min_input_size or 1), name
        dataset = {"CIFAR10DataModule": "_cifar10", "ImageFolderDataModule": "_imagenet"}
        suffix = dataset.get(config.data.class_path.rsplit(".", 1)[-1])
        assert suffix is None or name.endswith(suffix), name
        assert f"cnnzoo fit --config {name}" in path.read_text(), f"{name}: say how to run it"


def test_a_recipe_parses_through_the_cnnzoo_command(capsys, tmp_path):
    config = parsed("vgg16_imagenet", capsys, tmp_path)
    init = config["data"]["init_args"]
    assert (init["augmentation"], init["test_crops"]) == ("vgg", "multiscale")
    assert config["trainer"]["max_epochs"] == 74


def test_every_cifar_resnet_of_the_paper_has_a_recipe():
    for depth in (20, 32, 44, 56, 110, 1202):
        assert f"resnet{depth}_cifar10" in RECIPES
    for depth in (20, 32, 44, 56):
        assert f"plain{depth}_cifar10" in RECIPES
    for name in ("vgg16_imagenet", "googlenet_imagenet", "resnet50_imagenet", "nin_cifar10"):
        assert name in RECIPES


def test_resnet20_cifar10_is_section_4_2(capsys, tmp_path):
    config = parsed("resnet20_cifar10", capsys, tmp_path)
    assert config["trainer"]["max_steps"] == 64_000
    assert config["test_ckpt"] == "last"
    init = config["data"]["init_args"]
    assert init["batch_size"] == 128
    assert round(CIFAR_TRAIN * init["val_fraction"]) == 5_000  # the 45k/5k split
    assert init["augmentation"] == "cifar"
    optimizer, schedule, built = optimisation(config, train_batches(config))
    group = decayed_group(optimizer)
    assert (group["momentum"], group["weight_decay"]) == (0.9, 1e-4)
    rates = {
        step: rate_after(optimizer, schedule, built, step=step)
        for step in (0, 31_999, 32_000, 47_999, 48_000, 63_999)
    }
    assert rates == pytest.approx(
        {0: 0.1, 31_999: 0.1, 32_000: 0.01, 47_999: 0.01, 48_000: 0.001, 63_999: 0.001}
    )


def test_resnet110_warms_up_for_400_iterations_without_moving_the_milestones(capsys, tmp_path):
    config = parsed("resnet110_cifar10", capsys, tmp_path)
    optimizer, schedule, built = optimisation(config, train_batches(config))
    rate = {
        s: rate_after(optimizer, schedule, built, step=s) for s in (0, 200, 400, 31_999, 32_000)
    }
    assert rate[0] == pytest.approx(0.01)
    assert 0.01 < rate[200] < 0.1
    assert (rate[400], rate[31_999], rate[32_000]) == pytest.approx((0.1, 0.1, 0.01))


def test_inception_v3_is_section_8(capsys, tmp_path):
    config = parsed("inception_v3_imagenet", capsys, tmp_path)
    assert config["trainer"]["gradient_clip_val"] == 2.0
    assert config["model"]["label_smoothing"] == 0.1
    assert config["trainer"]["max_epochs"] == 100
    optimizer, schedule, built = optimisation(config, steps_per_epoch=100)
    assert type(optimizer).__name__ == "RMSpropTF"
    group = optimizer.param_groups[0]
    assert (group["eps"], group["alpha"]) == (1.0, 0.9)
    rates = [rate_after(optimizer, schedule, built, epoch=e) for e in range(7)]
    expected = [0.045 * 0.94 ** (e // 2) for e in range(7)]  # "every two epochs ... 0.94"
    assert rates == pytest.approx(expected)


def test_densenet_bc100_k12_is_section_4_2(capsys, tmp_path):
    config = parsed("densenet_bc100_k12_cifar10", capsys, tmp_path)
    assert config["data"]["init_args"]["batch_size"] == 64
    assert config["trainer"]["max_epochs"] == 300
    optimizer, schedule, built = optimisation(config, steps_per_epoch=782)
    assert decayed_group(optimizer)["nesterov"] is True
    rates = {e: rate_after(optimizer, schedule, built, epoch=e) for e in (0, 149, 150, 224, 225)}
    assert rates == pytest.approx({0: 0.1, 149: 0.1, 150: 0.01, 224: 0.01, 225: 0.001})


def test_shufflenet_decays_linearly_to_zero_and_scales_the_rate_to_the_batch(capsys, tmp_path):
    config = parsed("shufflenet_v1_g3_imagenet", capsys, tmp_path)
    optimizer, schedule, built = optimisation(config, steps_per_epoch=10)
    total = 240 * 10
    first = rate_after(optimizer, schedule, built, step=0)
    assert first == pytest.approx(0.5 * 256 / 1024)  # batches of 256: the linear scaling rule
    assert rate_after(optimizer, schedule, built, step=total // 2) == pytest.approx(first / 2)
    assert rate_after(optimizer, schedule, built, step=total) == pytest.approx(0.0, abs=1e-9)


def test_an_iteration_milestone_needs_a_per_step_multistep_schedule():
    optimizer = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    with pytest.raises(ValueError, match="milestone_steps"):
        build_scheduler(optimizer, ScheduleSpec(name="multistep", milestone_steps=[10]), 5, 4, "m")


# --- the training augmentations ----------------------------------------------------------
@pytest.fixture(scope="module")
def cat() -> torch.Tensor:
    """Chelsea the cat, a 300x451 photo, as a uint8 tensor."""
    from skimage import data

    return torch.from_numpy(data.chelsea()).permute(2, 0, 1).contiguous()


@pytest.mark.parametrize("augmentation", ["vgg", "resnet", "inception"])
def test_augmentation_gives_the_input_size_and_is_seeded_per_image_and_epoch(augmentation, cat):
    transform = build_transform(augmentation, train=True, image_size=224)
    assert transform.random
    dataset = TransformedDataset([(cat, 0)] * 2, transform.geometry, seed=7, random=True)
    first = dataset[0][0]
    assert first.shape == (3, 224, 224) and first.dtype == torch.uint8
    assert torch.equal(dataset[0][0], first)  # same (seed, epoch, index): same image
    assert not torch.equal(dataset[1][0], first)  # another index
    dataset.epoch = 1
    assert not torch.equal(dataset[0][0], first)  # another epoch
    evaluated = build_transform(augmentation, train=False, image_size=224)
    assert not evaluated.random
    assert evaluated.geometry(cat).shape == (3, 224, 224)


@pytest.mark.parametrize(("augmentation", "low", "high"), [("vgg", 256, 512), ("resnet", 256, 480)])
def test_scale_jittering_draws_the_shorter_side_from_the_paper_range(augmentation, low, high, cat):
    resize = build_transform(augmentation, train=True, image_size=224).geometry.transforms[0]
    small = cat[:, ::10, ::10]  # 30x46: resizing it is cheap, the drawn side the same
    torch.manual_seed(0)
    sides = [min(resize(small).shape[-2:]) for _ in range(400)]
    assert low <= min(sides) < low + 10
    assert high - 10 < max(sides) <= high
    assert len(set(sides)) > 150  # uniform over the range, not a few fixed scales


def test_inception_crops_cover_8_to_100_percent_at_aspects_3_4_to_4_3(cat):
    crop = build_transform("inception", train=True, image_size=224).geometry.transforms[0]
    torch.manual_seed(0)
    areas, aspects = [], []
    for _ in range(400):
        params = crop.make_params([cat])
        areas.append(params["height"] * params["width"] / (300 * 451))
        aspects.append(params["width"] / params["height"])
    assert 0.075 <= min(areas) < 0.15 and max(areas) > 0.85
    assert max(areas) <= 1.0
    assert min(aspects) > 0.74 and max(aspects) < 1.35


def test_vgg_and_resnet_add_the_colour_shift_and_inception_does_not():
    assert CIFAR10DataModule(augmentation="vgg").normalize.lighting is not None
    assert CIFAR10DataModule(augmentation="resnet").normalize.lighting is not None
    assert CIFAR10DataModule(augmentation="inception").normalize.lighting is None


# --- a real run ----------------------------------------------------------------------------
@pytest.mark.slow
def test_resnet20_cifar10_recipe_trains_on_real_cifar10(shared_data, tmp_path):
    archive = shared_data / "cifar10-jpg.tar.gz"
    if not archive.is_file():
        pytest.skip(f"CIFAR-10 is not at {archive}")
    root = tmp_path / "runs"
    args = [
        "fit",
        "--config=resnet20_cifar10",
        f"--data.root={archive}",
        "--data.num_workers=0",
        "--trainer.max_steps=8",
        "--trainer.log_every_n_steps=1",
        "--test_after_fit=false",
        "--wandb.enabled=false",
        f"--trainer.default_root_dir={root}",
    ]
    run_cnnzoo(args, tmp_path)
    saved = torch.load(
        root / "resnet20" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False
    )
    assert saved["global_step"] == 8
    assert saved["hyper_parameters"]["schedule"]["milestone_steps"] == [32_000, 48_000]
    # the run's own scheduler: divided at iterations 32k and 48k (timm's m + 1 convention)
    assert saved["lr_schedulers"][0]["decay_t"] == [32_001, 48_001]
    (metrics,) = (root / "resnet20").glob("version_*/metrics.csv")

    with open(metrics, newline="") as file:
        rows = list(csv.DictReader(file))
    losses = [float(r["train/loss_step"]) for r in rows if r.get("train/loss_step")]
    assert len(losses) == 8 and np.isfinite(losses).all()
    assert 1.5 < losses[0] < 4.0  # about ln 10 = 2.3 for a fresh 10-way classifier
    rates = [float(r[k]) for r in rows for k in r if k.startswith("lr-") and r[k]]
    assert rates and all(rate == pytest.approx(0.1) for rate in rates)
