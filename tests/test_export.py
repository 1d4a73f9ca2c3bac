"""`cnnzoo export`: every family in every format gives the eager model's logits on real
images at two batch sizes; a trained checkpoint exports with its facts and normalisation;
bad input gets a clear error and writes nothing."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import cnnzoo
import numpy as np
import onnx
import pytest
import torch
from cnnzoo import ImageClassifier
from cnnzoo_classify.export import (
    FORMATS,
    ExportError,
    ExportMetadata,
    check_round_trip,
    export_model,
    exported_program,
    load_exported,
    main,
    model_metadata,
    read_metadata,
)
from cnnzoo_data.digits import digit_fields
from cnnzoo_data.transforms import LENET_MEAN, LENET_STD
from conftest import run_cnnzoo, skimage_data
from PIL import Image

# One variant a family, at the smallest input its card allows (32 where it names none).
FAMILIES = {
    "lenet": ("lenet5", 32),
    "alexnet": ("alexnet", 63),
    "zfnet": ("zfnet", 47),
    "vgg": ("vgg11", 32),
    "nin": ("nin_cifar10", 32),
    "googlenet": ("googlenet", 79),
    "inception_v3": ("inception_v3", 107),
    "resnet": ("resnet20", 32),
    "densenet": ("densenet40_k12", 32),
    "senet": ("se_resnet18", 32),
    "mobilenet": ("mobilenet_v1_025", 32),
    "shufflenet": ("shufflenet_v1_g3_x0_25", 32),
    "mnasnet": ("mnasnet_b1_050", 32),
}
PHOTOS = ("chelsea", "coffee", "rocket", "astronaut")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
RTOL = 1e-4
QUICK_FIT = [
    "fit",
    "--config=lenet5_digits",
    "--trainer.max_epochs=1",
    "--trainer.limit_train_batches=5",
    "--trainer.limit_val_batches=2",
    "--data.num_workers=0",
    "--test_after_fit=false",
]


def normalised(pixels: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 (N, C, H, W) -> floats as the data modules feed them to the model."""
    mean, std = torch.tensor(mean).view(-1, 1, 1), torch.tensor(std).view(-1, 1, 1)
    return (pixels.float() / 255 - mean) / std


def photos(size: int, views: bool = False) -> torch.Tensor:
    """scikit-image's photographs, squashed to size x size, ImageNet-normalised; with
    `views`, eight of each (four shifted crops, and their mirror images)."""
    data = skimage_data()
    pictures = []
    for name in PHOTOS:
        image = Image.fromarray(getattr(data, name)()).convert("RGB")
        if not views:
            pictures.append(np.asarray(image.resize((size, size))))
            continue
        image, shift = image.resize((size * 5 // 4, size * 5 // 4)), size // 4
        for dx, dy in ((0, 0), (shift, 0), (0, shift), (shift, shift)):
            crop = np.asarray(image.crop((dx, dy, dx + size, dy + size)))
            pictures += [crop, crop[:, ::-1]]
    pixels = torch.from_numpy(np.stack(pictures)).permute(0, 3, 1, 2)
    return normalised(pixels, IMAGENET_MEAN, IMAGENET_STD)


def digits(count: int = 4) -> torch.Tensor:
    """scikit-learn's handwritten digits laid out as LeNet-5 reads them (§III.A)."""
    from sklearn.datasets import load_digits

    fields = digit_fields(torch.from_numpy(load_digits().images[:count]))  # (N, 1, 28, 28)
    return normalised(torch.nn.functional.pad(fields, (2, 2, 2, 2)), LENET_MEAN, LENET_STD)


def real_batches(in_chans: int, size: int) -> list[torch.Tensor]:
    """Real images in batches of 1 and 3: neither is the export example's 2."""
    images = digits() if in_chans == 1 else photos(size)
    return [images[:1], images[1:]]


def with_real_statistics(model: torch.nn.Module, images: torch.Tensor) -> torch.nn.Module:
    """The model in eval mode with its batch-norm statistics measured on real images.

    At initialisation they are 0 and 1, with which a deep network in eval mode shrinks the
    signal to nothing (MobileNet's logits are about 1e-17) or blows it up (Inception-v3's
    about 1e7), and a round trip would compare zeros or overflow; measured ones also check
    that the file uses them. 32 images, so that statistics over 1x1 maps are not degenerate."""
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # a plain average over the batches seen: here, one
    with torch.no_grad():
        model.train()(images)
    return model.eval()


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_family_exports_to_every_format_with_the_eager_logits(family, tmp_path):
    name, size = FAMILIES[family]
    model = cnnzoo.create_model(name, num_classes=7)
    batches = real_batches(model.in_chans, size)
    views = digits(32) if model.in_chans == 1 else photos(size, views=True)
    model = with_real_statistics(model, views)
    example = torch.randn(2, model.in_chans, size, size, generator=torch.Generator().manual_seed(0))
    meta = model_metadata(model, size, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    program = exported_program(model, example)  # made once for the .pt2 and the .onnx
    with torch.no_grad():
        eager = model(batches[1])
    # Two real images' logits differ by far more than any file's error may: the check tells
    # images apart (randomly initialised logits are mostly the biases' doing).
    spread = (eager[0] - eager[1]).abs().max().item()
    differences, failures = {}, {}
    for format, suffix in FORMATS.items():
        path = tmp_path / f"{name}{suffix}"
        try:
            export_model(model, format, path, example, meta, program=program)
            differences[format] = check_round_trip(model, path, batches, rtol=RTOL)
        except ExportError as exc:
            failures[format] = str(exc)
            continue
        assert read_metadata(path) == meta, format
        assert spread > 10 * differences[format], (format, spread, differences[format])
    scale = eager.abs().max().item()
    print(
        f"\n{family} ({name} at {size}, max |logit| {scale:.3g}, image spread {spread:.3g}): "
        + ", ".join(f"{f} {d:.2g}" for f, d in differences.items())
    )
    assert not failures, failures
    props = {p.key: p.value for p in onnx.load(tmp_path / f"{name}.onnx").metadata_props}
    assert props["cnnzoo.arch"] == name  # plain text for other ONNX tools
    assert props["cnnzoo.mean"] == "[0.485, 0.456, 0.406]"


def test_metadata_survives_onnx_text_properties():
    meta = model_metadata(cnnzoo.create_model("resnet20", num_classes=4), 40, weights="x.ckpt")
    assert (meta.arch, meta.year, meta.num_classes, meta.in_chans) == ("resnet20", 2015, 4, 3)
    assert meta.input_size == (3, 40, 40) and meta.card_input_size == (3, 32, 32)
    assert meta.paper == "Deep Residual Learning for Image Recognition"
    assert ExportMetadata.from_props(meta.to_props()) == meta
    assert meta.to_props()["cnnzoo.input_size"] == "[3, 40, 40]"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A LeNet-5 trained for five steps on the digits by `cnnzoo fit`."""
    cwd = tmp_path_factory.mktemp("fit")
    run_cnnzoo([*QUICK_FIT, f"--trainer.default_root_dir={cwd / 'runs'}"], cwd)
    return cwd / "runs" / "lenet5" / "checkpoints" / "last.ckpt"


@pytest.mark.slow
@pytest.mark.parametrize("format", list(FORMATS))
def test_a_trained_checkpoint_exports_with_its_logits_and_normalisation(
    format, checkpoint, tmp_path, capsys
):
    output = tmp_path / f"lenet5{FORMATS[format]}"
    assert main(["--checkpoint", str(checkpoint), "--format", format, "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {output}" in printed
    assert "(N, 1, 32, 32)" in printed and "round trip: max |exported - eager|" in printed
    meta = read_metadata(output)
    assert (meta.arch, meta.num_classes, meta.in_chans) == ("lenet5", 10, 1)
    assert meta.paper == "Gradient-Based Learning Applied to Document Recognition"
    # lenet5_digits trains with LeNet-5's own scaling, background -0.1 and ink 1.175.
    assert meta.mean == pytest.approx(LENET_MEAN) and meta.std == pytest.approx(LENET_STD)
    assert str(checkpoint) in meta.weights
    assert meta.class_names == tuple(str(digit) for digit in range(10))  # the data's names
    trained = ImageClassifier.from_checkpoint(str(checkpoint)).model.eval()
    images = digits()
    with torch.no_grad():
        eager = trained(images)
    assert torch.allclose(load_exported(output)(images), eager, rtol=RTOL, atol=1e-5)
    random_init = cnnzoo.create_model("lenet5").eval()
    with torch.no_grad():
        assert not torch.allclose(random_init(images), eager, atol=1e-3)  # the trained weights


def test_the_default_output_lies_beside_the_checkpoint_or_in_the_current_folder(
    checkpoint, tmp_path, monkeypatch, capsys
):
    copy = tmp_path / "elsewhere" / "model.ckpt"
    copy.parent.mkdir()
    shutil.copy(checkpoint, copy)  # without the run's config.yaml beside it
    assert main(["lenet5", "--checkpoint", str(copy), "--format", "torchscript"]) == 0
    assert read_metadata(copy.with_suffix(".pt")).mean is None
    assert "input normalisation unknown" in capsys.readouterr().out
    monkeypatch.chdir(tmp_path)
    assert main(["nin_cifar10", "--format", "torchscript", "--num-classes", "3"]) == 0
    assert "weights: random init" in capsys.readouterr().out
    meta = read_metadata(tmp_path / "nin_cifar10.pt")
    assert (meta.num_classes, meta.input_size, meta.weights) == (3, (3, 32, 32), "random init")


def test_normalisation_recorded_in_the_checkpoint_is_preferred(checkpoint, tmp_path):
    contents = torch.load(checkpoint, weights_only=False)
    contents["datamodule_hyper_parameters"] = {"mean": [0.5], "std": [0.25]}
    edited = tmp_path / "edited.ckpt"
    torch.save(contents, edited)
    assert main(["--checkpoint", str(edited), "--format", "torchscript", "--no-check"]) == 0
    meta = read_metadata(edited.with_suffix(".pt"))
    assert (meta.mean, meta.std) == ((0.5,), (0.25,))


def errors_of(argv: list[str], capsys) -> str:
    """The message `cnnzoo export ARGV` fails with (exit status 2, no traceback; torch may
    log its own warnings before it)."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    message = err.strip().splitlines()[-1]
    assert message.startswith("cnnzoo export: error: ")
    return message


@pytest.mark.bad_input
def test_export_of_an_unknown_model_suggests_close_names(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    err = errors_of(["resnet21", "--format", "onnx"], capsys)
    assert "no model named 'resnet21'" in err and "resnet20" in err
    assert not list(tmp_path.iterdir())


@pytest.mark.bad_input
def test_export_to_an_unknown_format_lists_the_formats(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["lenet5", "--format", "tflite"])
    assert exit_info.value.code == 2
    assert "onnx" in capsys.readouterr().err
    with pytest.raises(ExportError, match="onnx, torchscript, exported-program"):
        export_model(
            cnnzoo.create_model("lenet5"), "tflite", tmp_path / "x", torch.zeros(2, 1, 32, 32)
        )


@pytest.mark.bad_input
def test_export_of_a_missing_truncated_or_foreign_checkpoint_names_it(tmp_path, capsys):
    missing = tmp_path / "no.ckpt"
    assert "no checkpoint at" in errors_of(
        ["--checkpoint", str(missing), "--format", "onnx"], capsys
    )
    truncated = tmp_path / "cut.ckpt"
    truncated.write_bytes(b"PK\x03\x04 a write cut short")
    err = errors_of(["--checkpoint", str(truncated), "--format", "onnx"], capsys)
    assert "not a readable checkpoint" in err
    foreign = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(3)}, foreign)
    assert zipfile.is_zipfile(foreign)
    err = errors_of(["--checkpoint", str(foreign), "--format", "onnx"], capsys)
    assert "not a cnnzoo checkpoint" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.ckpt", "weights.pt"]


@pytest.mark.bad_input
def test_export_with_options_that_contradict_the_checkpoint_is_refused(checkpoint, capsys):
    err = errors_of(["resnet20", "--checkpoint", str(checkpoint), "--format", "onnx"], capsys)
    assert "holds a 'lenet5' model, not 'resnet20'" in err
    argv = ["--checkpoint", str(checkpoint), "--format", "onnx", "--num-classes", "5"]
    assert "num_classes=10, not 5" in errors_of(argv, capsys)


@pytest.mark.bad_input
def test_export_at_an_image_size_the_model_cannot_take_names_the_sizes(tmp_path, capsys):
    err = errors_of(
        ["alexnet", "--format", "onnx", "--image-size", "32", "--output", str(tmp_path / "a.onnx")],
        capsys,
    )
    assert "at least 63x63" in err and "got 32x32" in err
    err = errors_of(
        ["lenet5", "--format", "onnx", "--image-size", "28", "--output", str(tmp_path / "l.onnx")],
        capsys,
    )
    assert "only takes 32x32" in err
    assert not list(tmp_path.iterdir())


BRANCHING_PLUGIN = """
    import torch
    from torch import nn
    import cnnzoo

    CARD = cnnzoo.ModelCard(
        paper="A network that branches on its data", authors="A. Tester", year=2024, url="",
        input_size=(1, 8, 8), num_classes=3,
    )

    class Branching(cnnzoo.ClassifierNet):
        def __init__(self, num_classes=3, in_chans=1):
            super().__init__()
            self.num_classes, self.in_chans = num_classes, in_chans
            self.feature_info = [cnnzoo.FeatureInfo("conv", 4, 1)]
            self.conv = nn.Conv2d(in_chans, 4, 3, padding=1)
            self.fc = nn.Linear(4, num_classes)

        def forward_features(self, x):
            x = self.conv(x)
            return x.relu() if x.mean() > 0 else -x  # a branch on the values: no one graph

        def forward_head(self, x, pre_logits=False):
            x = x.mean(dim=(2, 3))
            return x if pre_logits else self.fc(x)

    @cnnzoo.variant(CARD)
    def branchnet(num_classes=3, in_chans=1):
        return Branching(num_classes, in_chans)
"""


@pytest.mark.bad_input
def test_export_a_model_the_exporter_cannot_handle_names_model_and_format(
    fake_plugins, tmp_path, capsys
):
    fake_plugins(
        "cnnzoo-branch",
        {"branchnet": "cnnzoo_branch_plugin:branchnet"},
        {"cnnzoo_branch_plugin": BRANCHING_PLUGIN},
    )
    output = tmp_path / "b.pt2"
    err = errors_of(["branchnet", "--format", "exported-program", "--output", str(output)], capsys)
    assert "branchnet could not be exported to exported-program" in err
    assert err.endswith("Try --format torchscript.")  # ONNX goes through torch.export too
    assert not output.exists()


@pytest.mark.bad_input
def test_a_file_that_does_not_reproduce_the_model_is_caught(tmp_path):
    model = cnnzoo.create_model("nin_cifar10", num_classes=3).eval()
    path = export_model(model, "torchscript", tmp_path / "nin.pt", torch.zeros(2, 3, 32, 32))
    batches = real_batches(3, 32)
    assert check_round_trip(model, path, batches) < 1e-5
    with torch.no_grad():
        next(model.parameters()).mul_(1.01)  # the eager model moves on; the file does not
    with pytest.raises(ExportError, match="does not reproduce the eager model"):
        check_round_trip(model, path, batches)
