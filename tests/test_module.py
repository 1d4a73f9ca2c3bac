"""The core LightningModule: its loss, multi-crop evaluation, the papers' optimisers and
schedules, top-k error, checkpoints that know their model, and runs that resume exactly."""

from __future__ import annotations

import importlib.metadata
import math
import sys
from pathlib import Path

import cnnzoo
import lightning as L
import pytest
import torch
import torch.nn.functional as F
from cnnzoo import AuxLogits, CnnzooError, ImageClassifier
from cnnzoo.metrics import TopKError
from cnnzoo.optim import OptimizerSpec, ScheduleSpec, build_optimizer, build_scheduler
from cnnzoo.resume import ExactResume
from cnnzoo_data import DigitsDataModule
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger


class StillClassifier(ImageClassifier):
    """Trains with a zero loss: the weights, and so the validation error, never change,
    which leaves the learning-rate schedule as the only thing that moves."""

    def _loss(self, output, target):
        return super()._loss(output, target) * 0


class LearningRates(L.Callback):
    """The learning rate at the start of every epoch and of every training step."""

    def __init__(self) -> None:
        self.per_epoch: list[float] = []
        self.per_step: list[float] = []

    def on_train_epoch_start(self, trainer, module) -> None:
        self.per_epoch.append(trainer.optimizers[0].param_groups[0]["lr"])

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.per_step.append(trainer.optimizers[0].param_groups[0]["lr"])


@pytest.fixture
def logits_and_target() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(8, 10, generator=generator) * 3, torch.randint(
        0, 10, (8,), generator=generator
    )


@pytest.fixture
def lr_schedule(make_trainer, make_digits):
    """Fit a StillClassifier on a few digits batches and return the learning rates it used."""

    def fit(schedule: ScheduleSpec, epochs: int, lr: float = 0.1) -> LearningRates:
        rates = LearningRates()
        module = StillClassifier("lenet5", optimizer=OptimizerSpec(lr=lr), schedule=schedule)
        trainer = make_trainer(
            max_epochs=epochs, limit_train_batches=2, limit_val_batches=1, callbacks=[rates]
        )
        trainer.fit(module, make_digits(batch_size=16))
        return rates

    return fit


def test_label_smoothing_mixes_in_the_uniform_distribution(logits_and_target):
    # lenet5_relu trains with cross-entropy (lenet5 with its paper's own criterion).
    logits, target = logits_and_target
    smoothing = 0.1
    plain = ImageClassifier("lenet5_relu")._loss(logits, target)
    smoothed = ImageClassifier("lenet5_relu", label_smoothing=smoothing)._loss(logits, target)
    log_probs = logits.log_softmax(dim=-1)
    uniform = -log_probs.mean(dim=-1).mean()
    torch.testing.assert_close(plain, F.nll_loss(log_probs, target))
    torch.testing.assert_close(smoothed, (1 - smoothing) * plain + smoothing * uniform)
    assert not torch.isclose(smoothed, plain)


def test_auxiliary_losses_are_weighted_into_the_loss(logits_and_target):
    logits, target = logits_and_target
    aux = (logits.flip(0), logits * 0.5)
    module = ImageClassifier("lenet5_relu", aux_loss_weight=0.3)
    expected = F.cross_entropy(logits, target) + 0.3 * sum(F.cross_entropy(a, target) for a in aux)
    torch.testing.assert_close(module._loss(AuxLogits(logits, aux), target), expected)
    # Without an explicit weight the card's is used: LeNet-5 has no auxiliary classifiers.
    assert ImageClassifier("lenet5").aux_loss_weight == cnnzoo.model_card("lenet5").aux_loss_weight
    # A model that returns AuxLogits while training goes through training_step the same way.
    images = torch.zeros(8, 1, 32, 32)
    module._compiled = lambda x: AuxLogits(logits, aux)  # the training forward
    with pytest.warns(UserWarning, match="self.log"):  # no trainer attached: nothing logged
        loss = module.training_step((images, target), 0)
    torch.testing.assert_close(loss, expected)


def test_multi_crop_batches_average_the_softmax_over_crops():
    torch.manual_seed(0)
    module = ImageClassifier("lenet5_relu").eval()
    crops = torch.randn(3, 4, 1, 32, 32)  # 3 images, 4 crops each
    with torch.no_grad():
        log_probs = module.predict_log_probs(crops)
        per_crop = torch.stack([module(crops[:, c]).softmax(dim=-1) for c in range(4)], dim=1)
        single = module.predict_log_probs(crops[:, 0])
    assert log_probs.shape == (3, 10)
    torch.testing.assert_close(log_probs, per_crop.mean(dim=1).log())
    torch.testing.assert_close(single, per_crop[:, 0].log())
    # Averaging probabilities is not averaging logits.
    assert not torch.allclose(log_probs, per_crop.log().mean(dim=1), atol=1e-3)


@pytest.mark.parametrize("decay_norm_and_bias", [False, True])
def test_weight_decay_stays_off_biases_and_1d_parameters(decay_norm_and_bias):
    model = cnnzoo.create_model("lenet5")
    spec = OptimizerSpec(
        lr=0.01, momentum=0.9, weight_decay=5e-4, decay_norm_and_bias=decay_norm_and_bias
    )
    optimizer = build_optimizer(model, spec)
    decay = {
        id(p): group["weight_decay"] for group in optimizer.param_groups for p in group["params"]
    }
    assert len(decay) == len(list(model.parameters()))
    one_d = {name for name, p in model.named_parameters() if p.ndim <= 1}
    # The biases and the subsampling coefficients of S2 and S4 are the 1-D parameters.
    assert {n for n in one_d if not n.endswith("bias")} == {
        "features.s2.coefficient",
        "features.s4.coefficient",
    }
    for name, param in model.named_parameters():
        expected = 5e-4 if decay_norm_and_bias or name not in one_d else 0.0
        assert decay[id(param)] == expected, name
    assert isinstance(optimizer, torch.optim.SGD)
    assert all(
        g["lr"] == 0.01 and g["momentum"] == 0.9 and not g["nesterov"]
        for g in optimizer.param_groups
    )


def test_optimizer_names_and_unsupported_combinations():
    model = cnnzoo.create_model("lenet5_relu")
    nesterov = build_optimizer(model, OptimizerSpec(nesterov=True))
    assert all(group["nesterov"] for group in nesterov.param_groups)
    adamw = build_optimizer(model, OptimizerSpec(name="adamw", lr=1e-3, betas=(0.8, 0.99)))
    assert isinstance(adamw, torch.optim.AdamW)
    assert adamw.param_groups[0]["betas"] == (0.8, 0.99)
    rmsprop = build_optimizer(model, OptimizerSpec(name="rmsprop_tf", eps=1.0, alpha=0.9))
    assert rmsprop.param_groups[0]["eps"] == 1.0
    assert rmsprop.param_groups[0]["alpha"] == 0.9
    with pytest.raises(ValueError, match="not supported"):
        build_optimizer(model, OptimizerSpec(name="adamw", nesterov=True))
    with pytest.raises(ValueError, match="no warm-up"):
        build_scheduler(nesterov, ScheduleSpec(name="plateau", warmup_epochs=1), 10, 5, "val/x")


def test_step_schedule(lr_schedule):
    rates = lr_schedule(ScheduleSpec(name="step", decay_epochs=2, decay_rate=0.1), epochs=5)
    assert rates.per_epoch == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001])


def test_multistep_schedule(lr_schedule):
    rates = lr_schedule(ScheduleSpec(name="multistep", milestones=[1, 3], decay_rate=0.5), epochs=5)
    assert rates.per_epoch == pytest.approx([0.1, 0.05, 0.05, 0.025, 0.025])


def test_multistep_schedule_per_step_at_fractional_epochs(lr_schedule):
    schedule = ScheduleSpec(name="multistep", milestones=[1.5], interval="step")
    rates = lr_schedule(schedule, epochs=2)  # 2 steps an epoch: the rate falls after step 3
    assert rates.per_step == pytest.approx([0.1, 0.1, 0.1, 0.01])


def test_cosine_schedule_with_linear_warmup(lr_schedule):
    epochs, warmup, lr, warmup_lr = 6, 2, 0.1, 0.001
    schedule = ScheduleSpec(name="cosine", warmup_epochs=warmup, warmup_lr=warmup_lr)
    rates = lr_schedule(schedule, epochs=epochs, lr=lr)
    expected = [warmup_lr + e * (lr - warmup_lr) / warmup for e in range(warmup)]
    expected += [lr / 2 * (1 + math.cos(math.pi * e / epochs)) for e in range(warmup, epochs)]
    assert rates.per_epoch == pytest.approx(expected)
    assert rates.per_epoch[warmup] > rates.per_epoch[-1] > 0


def test_cosine_schedule_per_step(lr_schedule):
    """interval "step": the rate changes at every iteration, over fractional epochs."""
    schedule = ScheduleSpec(name="cosine", warmup_epochs=0.5, warmup_lr=0.0, interval="step")
    rates = lr_schedule(schedule, epochs=3)  # 2 steps an epoch
    assert len(rates.per_step) == 6
    assert rates.per_step[0] == pytest.approx(0.0)  # warm-up of one step from 0
    expected = [0.05 * (1 + math.cos(math.pi * step / 6)) for step in range(1, 6)]
    assert rates.per_step[1:] == pytest.approx(expected)


def test_plateau_divides_by_ten_when_validation_error_stops_improving(lr_schedule):
    """AlexNet §5: divide the rate by 10 when the validation error stops improving. The
    error never moves here, so after `patience` epochs without improvement the rate falls."""
    rates = lr_schedule(ScheduleSpec(name="plateau", patience=1), epochs=6)
    assert rates.per_epoch == pytest.approx([0.1, 0.1, 0.1, 0.01, 0.01, 0.001])


def test_top_k_error_metric_on_a_known_ranking():
    # The true class (0) ranks 1st, 3rd and 6th of 6 in the three samples.
    logits = torch.tensor([[9.0, 5, 4, 3, 2, 1], [7.0, 9, 8, 3, 2, 1], [0.0, 9, 8, 7, 6, 5]])
    target = torch.zeros(3, dtype=torch.long)
    errors = TopKError(ks=(1, 3, 5))
    errors.update(logits[:2], target[:2])
    errors.update(logits[2:], target[2:])  # counts accumulate over updates
    assert errors.compute().tolist() == pytest.approx([2 / 3, 1 / 3, 1 / 3])
    errors.reset()
    errors.update(logits[:1], target[:1])
    assert errors.compute().tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="positive ranks"):
        TopKError(ks=(0, 5))


def test_logged_top_k_errors_equal_a_manual_count(make_trainer, make_digits):
    torch.manual_seed(0)
    module = ImageClassifier("lenet5_relu")  # untrained: errors well inside (0, 1)
    datamodule = make_digits(batch_size=50)
    logged = make_trainer().test(module, datamodule, verbose=False)[0]
    module.eval()
    logits, targets = [], []
    with torch.no_grad():
        for images, target in datamodule.test_dataloader():
            logits.append(module(datamodule.normalize(images)))
            targets.append(target)
    logits, targets = torch.cat(logits), torch.cat(targets)
    assert len(targets) == 359  # every test digit once
    top1 = (logits.argmax(dim=1) != targets).float().mean().item()
    top5 = 1 - (logits.topk(5).indices == targets[:, None]).any(dim=1).float().mean().item()
    assert 0 < top5 < top1 < 1
    assert logged["test/top1_error"] == pytest.approx(top1, abs=1e-6)
    assert logged["test/top5_error"] == pytest.approx(top5, abs=1e-6)


def test_logged_training_loss_and_errors_equal_a_manual_count(make_trainer, make_digits):
    """The training steps sum their losses and top-k counts on the device and hand them to
    the metrics at each loss log and at the epoch's end: the logged figures are still the
    epoch's. With a rate of 0 the model stays as it started, so a count over the same
    batches afterwards sees what the steps saw."""
    from cnnzoo.optim import OptimizerSpec

    torch.manual_seed(0)
    module = ImageClassifier("lenet5_relu", optimizer=OptimizerSpec(lr=0.0, momentum=0.0))
    datamodule = make_digits(batch_size=50)
    trainer = make_trainer(max_epochs=1, log_every_n_steps=7, limit_val_batches=0)
    trainer.fit(module, datamodule)
    logged = trainer.callback_metrics
    losses, wrong1, wrong5, count = [], 0, 0, 0
    with torch.no_grad():
        for images, target in datamodule.train_dataloader():
            logits = module.model(datamodule.normalize(images, train=True))
            losses.append(module.model.criterion(logits, target))
            wrong1 += (logits.argmax(dim=1) != target).sum().item()
            wrong5 += (~(logits.topk(5).indices == target[:, None]).any(dim=1)).sum().item()
            count += len(target)
    assert trainer.global_step == len(losses) > 7  # more than one fold in the epoch
    assert logged["train/loss_epoch"] == pytest.approx(torch.stack(losses).mean().item(), rel=1e-5)
    assert logged["train/top1_error"] == pytest.approx(wrong1 / count, abs=1e-6)
    assert logged["train/top5_error"] == pytest.approx(wrong5 / count, abs=1e-6)


@pytest.mark.bad_input
def test_a_nan_loss_stops_training_naming_the_step(make_trainer, make_digits):
    class PoisonAfterTwoSteps(L.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if trainer.global_step == 2:
                module.model.f6[0].weight.data.fill_(float("nan"))

    module = ImageClassifier("lenet5")
    trainer = make_trainer(max_epochs=1, limit_train_batches=5, callbacks=[PoisonAfterTwoSteps()])
    # Found at the epoch's end (5 steps, fewer than a loss log's 50), where the host reads the
    # device anyway: the error names the steps between that check and the last.
    with pytest.raises(FloatingPointError, match=r"became nan between steps 0 and 5 \(epoch 0\)"):
        trainer.fit(module, make_digits(batch_size=16))


@pytest.fixture(scope="module")
def lenet_checkpoint(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A LeNet-5 checkpoint after a few steps, with the weights it holds."""
    root = tmp_path_factory.mktemp("checkpoint")
    module = ImageClassifier("lenet5")
    trainer = L.Trainer(
        accelerator="cpu",
        default_root_dir=root,
        max_epochs=1,
        limit_train_batches=3,
        limit_val_batches=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[ModelCheckpoint(dirpath=root, save_last=True), ExactResume()],
    )
    trainer.fit(module, DigitsDataModule(batch_size=16, num_workers=0))
    return root / "last.ckpt", {k: v.clone() for k, v in module.state_dict().items()}


def test_checkpoint_records_arch_card_and_versions(lenet_checkpoint):
    path, _ = lenet_checkpoint
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    saved = checkpoint["cnnzoo"]
    assert saved["arch"] == "lenet5"
    assert saved["card"] == cnnzoo.model_card("lenet5").to_dict()
    for dist in ("cnnzoo", "torch", "lightning"):
        assert saved["versions"][dist] == importlib.metadata.version(dist)
    resume = checkpoint["callbacks"]["ExactResume"]  # the callback that owns resuming
    assert {"torch", "numpy", "python"} <= set(resume["rng_states"])


def test_state_dict_holds_each_weight_once_compiled_or_not():
    plain = ImageClassifier("lenet5").state_dict()
    assert {k for k in plain if not k.startswith("metrics.")} == {
        f"model.{k}" for k in cnnzoo.create_model("lenet5").state_dict()
    }
    assert ImageClassifier("lenet5", compile=True).state_dict().keys() == plain.keys()


def test_from_checkpoint_restores_the_trained_weights(lenet_checkpoint):
    path, weights = lenet_checkpoint
    restored = ImageClassifier.from_checkpoint(str(path))
    assert restored.hparams.arch == "lenet5"
    assert restored.state_dict().keys() == weights.keys()
    assert all(torch.equal(restored.state_dict()[k], v) for k, v in weights.items())
    assert not all(
        torch.equal(ImageClassifier("lenet5").state_dict()[k], v) for k, v in weights.items()
    )


@pytest.mark.bad_input
def test_a_checkpoint_of_another_arch_is_refused(lenet_checkpoint, make_trainer, make_digits):
    path, _ = lenet_checkpoint
    with pytest.raises(CnnzooError, match=r"holds a 'lenet5' model, not 'lenet5_relu'"):
        make_trainer(limit_test_batches=1).test(
            ImageClassifier("lenet5_relu"), make_digits(), ckpt_path=str(path), verbose=False
        )


@pytest.mark.parametrize("num_workers", [0, 1])
def test_a_resumed_run_ends_with_the_same_weights(tmp_path, make_trainer, make_digits, num_workers):
    """Two epochs straight, or one epoch and a resume from its last checkpoint: the same
    weights bit for bit. Random crops and flips (the AlexNet augmentation) and a step
    schedule make the augmentation RNG and the scheduler state part of what must resume."""

    def fit(max_epochs: int, root: Path, ckpt_path: Path | None = None) -> dict:
        L.seed_everything(0)
        module = ImageClassifier(
            "lenet5",
            optimizer=OptimizerSpec(lr=0.003, momentum=0.9, weight_decay=5e-4),
            schedule=ScheduleSpec(name="step", decay_epochs=1, decay_rate=0.5),
        )
        datamodule = make_digits(batch_size=32, num_workers=num_workers, augmentation="alexnet")
        trainer = make_trainer(
            default_root_dir=root,
            max_epochs=max_epochs,
            limit_train_batches=6,
            limit_val_batches=2,
            deterministic=True,
            enable_checkpointing=True,
            callbacks=[
                ModelCheckpoint(dirpath=root / "checkpoints", save_last=True),
                ExactResume(),
            ],
        )
        trainer.fit(module, datamodule, ckpt_path=ckpt_path)
        return module.state_dict()

    straight = fit(2, tmp_path / "straight")
    after_one_epoch = fit(1, tmp_path / "resumed")
    resumed = fit(2, tmp_path / "resumed", ckpt_path=tmp_path / "resumed/checkpoints/last.ckpt")
    assert straight.keys() == resumed.keys()
    different = [k for k in straight if not torch.equal(straight[k], resumed[k])]
    assert not different, f"resumed weights differ in {different}"
    assert not torch.equal(after_one_epoch["model.f6.0.weight"], resumed["model.f6.0.weight"])


def test_lenet5_learns_the_digits(make_trainer, make_digits):
    L.seed_everything(0)
    module = ImageClassifier("lenet5", optimizer=OptimizerSpec(lr=0.003, momentum=0.9))
    datamodule = make_digits(batch_size=32)
    trainer = make_trainer(max_epochs=2, limit_val_batches=0)
    trainer.fit(module, datamodule)
    result = trainer.test(module, datamodule, verbose=False)[0]
    assert result["test/top1_error"] < 0.4  # chance is 0.9


@pytest.mark.parametrize(("batch", "accumulate", "lr"), [(16, 1, 0.05), (16, 2, 0.1), (64, 1, 0.2)])
def test_the_rate_follows_the_global_batch_by_the_linear_scaling_rule(
    batch, accumulate, lr, make_trainer, make_digits
):
    """A rate stated for a global batch of 32 (Goyal et al. 2017): halved for 16 images a
    step, kept for 16 accumulated twice, doubled for 64 (DDP: tests/test_ddp.py)."""
    module = ImageClassifier("lenet5", optimizer=OptimizerSpec(lr=0.1, batch_size=32))
    trainer = make_trainer(max_steps=1, accumulate_grad_batches=accumulate, limit_val_batches=0)
    trainer.fit(module, make_digits(batch_size=batch))
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(lr)


def test_a_rate_for_a_global_batch_needs_a_batch_size():
    from cnnzoo.optim import scaled_lr

    assert scaled_lr(OptimizerSpec(lr=0.1), None) == 0.1  # stated for no batch: as it is
    with pytest.raises(ValueError, match="no batch_size to scale it by"):
        scaled_lr(OptimizerSpec(lr=0.1, batch_size=256), None)


@pytest.mark.parametrize("chunk", [1, 4])
def test_a_training_step_reads_nothing_back_from_the_device(
    make_trainer, make_digits, tmp_path, chunk
):
    """Between two loss logs a step makes no host read (`.item()`, `bool(tensor)`, ...): on a
    GPU each would stall the next step's launches. Counted with the progress bar, a logger
    and the checkpoints on, as `cnnzoo fit` has them; the loss logs themselves read once.
    A chunked step (four optimiser steps) reads no more."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from cnnzoo.callbacks import ProgressBar
    from host_syncs import CountSteps

    counter = CountSteps(first=12, last=40, trace=True)  # the loss is logged at step 19 and 39
    trainer = make_trainer(
        max_steps=41,
        log_every_n_steps=20,
        limit_val_batches=1,
        logger=CSVLogger(tmp_path),
        enable_progress_bar=True,
        enable_checkpointing=True,
        callbacks=[counter, ProgressBar()],
    )
    # The fast path: the loader yields indices, and the images never leave the device.
    trainer.fit(
        ImageClassifier("lenet5", chunk=chunk),
        make_digits(batch_size=16, on_device=True, chunk=chunk),
    )
    reads = counter.mode.calls
    # The two loss logs: each reads the logged loss and whether the running loss is finite.
    assert sum(reads.values()) == 4, "\n".join(f"{n} x {where}" for where, n in reads.items())


def trainer_with_a_bar(make_trainer, folder, bar, epochs: int, steps: int, log_every: int):
    """A trainer with a progress bar and a CSV log (the logged loss is what bars show)."""
    return make_trainer(
        max_epochs=epochs,
        limit_train_batches=steps,
        limit_val_batches=1,
        log_every_n_steps=log_every,
        logger=CSVLogger(folder),
        enable_progress_bar=True,
        callbacks=[bar],
    )


@pytest.mark.parametrize(("per_second", "drawn"), [(1e9, 30), (1e-9, 2)])
def test_the_progress_bar_shows_the_logged_loss_and_draws_at_most_so_often(
    per_second, drawn, make_trainer, make_digits, tmp_path, monkeypatch
):
    """The bar shows the step loss the loggers last wrote (the module keeps it off the bar,
    which would read it from the device at every step), and redraws at most `per_second`
    times a second: the first step and the epoch's last always."""
    from cnnzoo.callbacks import ProgressBar

    lightnings_bar = ProgressBar.__mro__[1]  # Rich's, or TQDM's where Rich is missing
    draws = []
    draw = lightnings_bar.on_train_batch_end
    monkeypatch.setattr(
        lightnings_bar, "on_train_batch_end", lambda *args: draws.append(1) or draw(*args)
    )
    bar = ProgressBar(per_second=per_second)
    trainer = trainer_with_a_bar(make_trainer, tmp_path, bar, epochs=1, steps=30, log_every=10)
    module = ImageClassifier("lenet5")
    trainer.fit(module, make_digits(batch_size=16))
    assert len(draws) == drawn
    logged = trainer.logged_metrics["train/loss_step"]
    assert bar.get_metrics(trainer, module)["train/loss_step"] == logged


def test_output_to_a_file_gets_plain_progress_lines(make_trainer, make_digits, tmp_path, capsys):
    """A run whose output is not a terminal prints a plain line at a steady interval and at
    each epoch's end (every step here, interval 0): the step of the total, images a second,
    the logged loss, the validation error, time gone and left; `cnnzoo fit` picks these
    lines when its output is not a terminal, as under pytest."""
    from cnnzoo.callbacks import ProgressLines
    from cnnzoo_classify.trainer import make_cli

    bar = ProgressLines(every_s=0)
    trainer = trainer_with_a_bar(make_trainer, tmp_path, bar, epochs=2, steps=10, log_every=5)
    trainer.fit(ImageClassifier("lenet5"), make_digits(batch_size=16))
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 * (10 + 1)  # each step, and each epoch's end
    assert lines[0].startswith("epoch 1/2 | step 1/20 | ") and " img/s | " in lines[0]
    assert "loss " not in lines[0] and "loss " in lines[5]  # logged from the 5th step on
    assert "val top-1 error " in lines[10] and "about " in lines[10] and " left" in lines[10]
    assert lines[-1].startswith("epoch 2/2 | step 20/20 | ")

    cli = make_cli(
        [
            "fit",
            "--trainer.max_steps=1",
            "--trainer.limit_val_batches=0",
            f"--trainer.default_root_dir={tmp_path}",
            "--wandb.enabled=false",
            "--test_after_fit=false",
        ]
    )
    assert isinstance(cli.trainer.progress_bar_callback, ProgressLines)


@pytest.mark.parametrize("arch", ["lenet5", "resnet20"])
def test_the_model_summary_counts_twice_our_multiply_adds_as_flops(arch):
    """Lightning's summary counts the FLOPs of one image at the paper's size (it printed
    "Total FLOPs: 0" without an example input): a multiply-add is two FLOPs."""
    from cnnzoo.complexity import count_macs
    from lightning.pytorch.utilities.model_summary import ModelSummary

    module = ImageClassifier(arch)
    assert ModelSummary(module).total_flops == 2 * count_macs(module.model, module.card.input_size)


def test_cnnzoo_fit_into_a_file_logs_progress_lines(tmp_path):
    """`cnnzoo fit` with its output in a file (as under nohup or a batch queue) prints the
    plain progress lines, not a live bar that shows nothing until the epoch ends."""
    from conftest import cnnzoo_process

    result = cnnzoo_process(
        [
            "fit",
            "--config=lenet5_digits",
            "--trainer.max_epochs=1",
            "--trainer.limit_train_batches=5",
            "--trainer.limit_val_batches=1",
            "--wandb.enabled=false",
        ],
        tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("epoch ")]
    assert lines and lines[-1].startswith("epoch 1/1 | step 5/5 | ")
    assert "val top-1 error " in lines[-1]
    assert "Epoch 0/" not in result.stdout  # Rich's live bar ("Epoch 0/0 ━━━ 5/5 ...")
